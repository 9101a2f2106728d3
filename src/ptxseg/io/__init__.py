"""Readers and writers for the formats of the field: DICOM, RLE CSVs, images."""
