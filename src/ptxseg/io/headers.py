"""What an uploaded file's header declares, read without decoding its pixels — and without inflating more of a
deflated DICOM than its header.

A deflated DICOM (transfer syntax 1.2.840.10008.1.2.1.99) compresses its whole dataset with zlib, and pydicom
inflates all of it to read even one tag: a 8 MB upload of zeros declaring 65535 × 65535 pixels inflates to
8.6 GB. A service checks what a file declares here first; a deflated one is inflated at most
:data:`HEADER_WINDOW` bytes for that, and :func:`inflated_size_exceeds` says whether the whole would inflate
beyond a bound, holding at most that bound in memory.
"""

from __future__ import annotations

import io
import struct
import zlib

import pydicom
from pydicom.tag import Tag

#: the deflated explicit-VR little-endian transfer syntax
DEFLATED = "1.2.840.10008.1.2.1.99"
#: bytes of a deflated dataset inflated to read its header (the image attributes come long before the pixels)
HEADER_WINDOW = 1 << 20
_IMAGE_TAGS = [Tag(0x00280008), Tag(0x00280010), Tag(0x00280011)]  # NumberOfFrames, Rows, Columns


def is_dicom_bytes(data: bytes) -> bool:
    """A DICOM Part 10 file: ``DICM`` after the 128-byte preamble."""
    return data[128:132] == b"DICM"


def _dataset_start(data: bytes) -> tuple[int, str]:
    """(offset of the dataset after the file meta information, its transfer syntax UID)."""
    # the group length element (0002,0000) UL: 4 tag bytes, 2 VR, 2 length, 4 value, after preamble and magic
    if data[132:138] != b"\x02\x00\x00\x00UL":
        raise ValueError("the file meta information has no group length first")
    (group_length,) = struct.unpack("<I", data[140:144])
    meta = pydicom.filereader.read_dataset(io.BytesIO(data[132 : 144 + group_length]), False, True)
    return 144 + group_length, str(meta.get("TransferSyntaxUID", ""))


def _inflater() -> zlib._Decompress:
    return zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as the standard (PS3.5 A.5) specifies


def dicom_image_header(data: bytes) -> pydicom.Dataset:
    """Rows, Columns and NumberOfFrames of a DICOM file's bytes, read from the header alone (a deflated dataset
    inflated at most :data:`HEADER_WINDOW` bytes). Raises whatever pydicom or zlib raise on a broken header."""
    start, syntax = _dataset_start(data)
    if syntax != DEFLATED:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=_IMAGE_TAGS)
    head = _inflater().decompress(data[start:], HEADER_WINDOW)
    return pydicom.filereader.read_dataset(
        io.BytesIO(head), False, True, stop_when=lambda tag, vr, length: tag > 0x00280011, specific_tags=_IMAGE_TAGS
    )


def inflated_size_exceeds(data: bytes, limit: int) -> bool:
    """Whether a deflated DICOM's dataset inflates to more than ``limit`` bytes (False for any other file); at
    most ``limit`` bytes are ever inflated at once."""
    if not is_dicom_bytes(data):
        return False
    start, syntax = _dataset_start(data)
    if syntax != DEFLATED:
        return False
    inflater, pending, total = _inflater(), data[start:], 0
    while pending:
        chunk = inflater.decompress(pending, 1 << 22)
        total += len(chunk)
        if total > limit:
            return True
        pending = inflater.unconsumed_tail
        if not chunk:
            break
    return False


def declared_pixels(data: bytes) -> int:
    """The pixels a DICOM, PNG or JPEG file's header declares (rows × columns × frames), read without decoding;
    0 when its header cannot be read (the reader then refuses the file with its own reason)."""
    try:
        if is_dicom_bytes(data):
            ds = dicom_image_header(data)
            return int(ds.Rows) * int(ds.Columns) * max(1, int(ds.get("NumberOfFrames") or 1))
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return int(im.size[0]) * int(im.size[1])
    except Exception:  # noqa: BLE001 - an unreadable header is the reader's to report, with its reason
        return 0
