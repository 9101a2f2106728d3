"""DICOM reading: display orientation, LUTs, bit depths, compression, refusals and warnings."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

from ptxseg.errors import PtxsegError
from ptxseg.io.dicom import read_dicom, write_dicom
from ptxseg.io.images import read_radiograph

from .conftest import shared_path


def _write(tmp_path, image, name="x.dcm", **kw):
    return write_dicom(tmp_path / name, image, **kw)


def _edit(path, **attrs):
    ds = pydicom.dcmread(path)
    for key, value in attrs.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)
    return path


# ------------------------------------------------------------------ the real MONOCHROME1 radiograph


def test_real_monochrome1_chest():
    image, meta = read_dicom(shared_path("dicom", "chest_pa_cr_mono1.dcm"))
    assert image.shape == (1955, 1841)
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
    assert meta.PhotometricInterpretation == "MONOCHROME1"
    assert (meta.Modality, meta.BodyPartExamined, meta.ViewPosition) == ("CR", "CHEST", "PA")
    assert meta.BitsStored == 15 and meta.warnings == []
    h, w = image.shape

    def roi(r0, r1, c0, c1):
        return float(image[int(r0 * h) : int(r1 * h), int(c0 * w) : int(c1 * w)].mean())

    lungs = (roi(0.25, 0.45, 0.15, 0.32) + roi(0.25, 0.45, 0.68, 0.85)) / 2
    mediastinum = roi(0.30, 0.50, 0.46, 0.54)
    below_diaphragm = roi(0.85, 0.95, 0.30, 0.70)
    # MONOCHROME1 inverted: aerated lung is dark, dense tissue bright
    assert lungs < mediastinum - 0.15
    assert lungs < below_diaphragm - 0.15


def test_real_jpeg_baseline_siim_dicom():
    folder = shared_path("siim", "unlabeled_dicom")
    path = sorted(folder.glob("*.dcm"))[0]
    image, meta = read_dicom(path)
    assert image.shape == (1024, 1024)
    assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert meta.PixelSpacing is not None and meta.PixelSpacing[0] == pytest.approx(0.14, abs=0.04)
    assert meta.Modality == "CR" and meta.BitsStored == 8
    assert image.std() > 0.05  # a real radiograph, not a blank decode


# ------------------------------------------------------------------ photometric and bit depth


@pytest.mark.parametrize("bits_stored", [8, 10, 12, 14, 15, 16])
def test_bits_stored_sets_the_range(tmp_path, bits_stored):
    """Full scale of BitsStored maps to 1.0 even though BitsAllocated is 16."""
    top = 2**bits_stored - 1
    dtype = np.uint8 if bits_stored == 8 else np.uint16
    image = np.zeros((260, 260), dtype)
    image[:, 130:] = top
    image[:, 65:130] = top // 2
    path = _write(tmp_path, image, bits_stored=bits_stored)
    out, _ = read_dicom(path)
    assert out[0, 0] == 0.0 and out[0, -1] == pytest.approx(1.0)
    assert out[0, 100] == pytest.approx((top // 2) / top, abs=1e-6)


def test_monochrome1_is_inverted(tmp_path, gradient_u16):
    m2, _ = read_dicom(_write(tmp_path, gradient_u16, "m2.dcm", bits_stored=12))
    m1, meta = read_dicom(_write(tmp_path, gradient_u16, "m1.dcm", bits_stored=12, photometric="MONOCHROME1"))
    assert meta.PhotometricInterpretation == "MONOCHROME1"
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    assert m2[0, -1] > m2[0, 0] and m1[0, -1] < m1[0, 0]


def test_rescale_slope_intercept(tmp_path, gradient_u16):
    path = _edit(_write(tmp_path, gradient_u16, bits_stored=12), RescaleSlope="2", RescaleIntercept="-1000")
    out, _ = read_dicom(path)
    # linear rescale of both values and range leaves the normalised image unchanged
    ref, _ = read_dicom(_write(tmp_path, gradient_u16, "ref.dcm", bits_stored=12))
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_modality_lut_sequence(tmp_path, gradient_u16):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor, item.ModalityLUTType = [4096, 0, 16], "US"
    item.LUTData = (65535 - np.arange(4096) * 16).astype("<u2").tobytes()  # an inverting table over 16 bits
    path = _edit(_write(tmp_path, gradient_u16, bits_stored=12), ModalityLUTSequence=[item])
    out, _ = read_dicom(path)
    ref, _ = read_dicom(_write(tmp_path, gradient_u16, "ref.dcm", bits_stored=12))
    stored = np.round(ref * 4095)  # the raw 12-bit values
    np.testing.assert_allclose(out, (65535 - stored * 16) / 65535, atol=1e-5)  # the table's output over its 16 bits
    assert out[0, 0] > out[0, -1]  # inverted by the table


def test_window_applied_and_skippable(tmp_path, gradient_u16):
    path = _edit(_write(tmp_path, gradient_u16, bits_stored=12), WindowCenter="1024", WindowWidth="1024")
    windowed, _ = read_dicom(path)
    raw, _ = read_dicom(path, apply_voi=False)
    cols = np.linspace(0, 4095, 280)
    below, inside, above = np.argmax(cols > 400), np.argmax(cols > 1024), np.argmax(cols > 1700)
    assert windowed[0, below] == 0.0 and windowed[0, above] == pytest.approx(1.0)
    assert 0.3 < windowed[0, inside] < 0.7
    assert raw[0, inside] == pytest.approx(1024 / 4095, abs=0.01)


def test_voi_lut_sequence(tmp_path, gradient_u16):
    path = _write(tmp_path, gradient_u16, bits_stored=12)
    ds = pydicom.dcmread(path)
    item = pydicom.Dataset()
    lut = (np.sqrt(np.arange(4096) / 4095) * 255).astype(np.uint16)  # a non-linear display curve
    item.add_new(0x00283002, "US", [4096, 0, 8])  # LUTDescriptor: entries, first value, bits
    item.add_new(0x00283006, "US", lut.tolist())  # LUTData
    ds.VOILUTSequence = [item]
    ds.save_as(path)
    out, _ = read_dicom(path)
    col = 70  # value ≈ 1024 → sqrt(0.25) = 0.5
    expected = lut[gradient_u16[0, col]] / 255
    assert out[0, col] == pytest.approx(expected, abs=1e-3)
    assert out[0, col] == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
def test_compressed_transfer_syntaxes(tmp_path, gradient_u16, syntax):
    path = _write(tmp_path, gradient_u16, bits_stored=16)
    ref, _ = read_dicom(path)
    ds = pydicom.dcmread(path)
    ds.compress(syntax)
    ds.save_as(path)
    out, meta = read_dicom(path)
    assert meta.TransferSyntaxUID == str(syntax)
    np.testing.assert_allclose(out, ref, atol=1e-6)


# ------------------------------------------------------------------ refusals


def test_refuses_non_dicom(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is not an image")
    with pytest.raises(PtxsegError, match="not a DICOM file") as info:
        read_dicom(path)
    assert info.value.code == "not_dicom" and str(path) in str(info.value)


def test_refuses_truncated(tmp_path, gradient_u16):
    path = _write(tmp_path, gradient_u16)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40_000])
    with pytest.raises(PtxsegError, match="truncated") as info:
        read_dicom(path)
    assert info.value.code == "corrupt"


def test_deflated_file_reads_and_a_damaged_stream_is_corrupt_not_imageless(tmp_path, gradient_u16):
    path = _write(tmp_path, gradient_u16)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path)
    image, meta = read_dicom(path)
    assert meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian and image.shape == gradient_u16.shape
    intact = path.read_bytes()
    # zlib stops at the block marked final: a stream that ends early (here: just before the pixel
    # data) decodes to a shorter, well-formed dataset, which pydicom accepts without a word
    start = 128 + 4 + 12 + int(pydicom.dcmread(path).file_meta.FileMetaInformationGroupLength)
    dataset = zlib.decompress(intact[start:], -zlib.MAX_WBITS)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = packer.compress(dataset[: dataset.index(b"\xe0\x7f\x10\x00")]) + packer.flush()
    ended_early = intact[:start] + head + intact[start + len(head) :]
    assert "PixelData" not in pydicom.dcmread(io.BytesIO(ended_early))
    path.write_bytes(ended_early)
    with pytest.raises(PtxsegError, match="deflated stream damaged") as info:
        read_dicom(path)
    assert info.value.code == "corrupt" and str(path) in str(info.value)
    path.write_bytes(intact[:-100])
    with pytest.raises(PtxsegError, match="truncated") as info:
        read_dicom(path)
    assert info.value.code == "corrupt"


def test_refuses_no_pixel_data(tmp_path, gradient_u16):
    path = _edit(_write(tmp_path, gradient_u16), PixelData=None)
    with pytest.raises(PtxsegError, match="no pixel data") as info:
        read_dicom(path)
    assert info.value.code == "no_pixel_data"


def test_refuses_multi_frame(tmp_path):
    frames = np.zeros((3, 64, 64), np.uint8)
    path = _write(tmp_path, frames[0])
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 3
    ds.PixelData = frames.tobytes()
    ds.save_as(path)
    with pytest.raises(PtxsegError, match="multi-frame") as info:
        read_dicom(path)
    assert info.value.code == "multi_frame"


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL"])
def test_refuses_colour(tmp_path, photometric):
    path = _write(tmp_path, np.zeros((64, 64), np.uint8))
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = photometric
    ds.PlanarConfiguration = 0
    ds.PixelData = np.zeros((64, 64, 3), np.uint8).tobytes()
    ds.save_as(path)
    with pytest.raises(PtxsegError, match="colour") as info:
        read_dicom(path)
    assert info.value.code == "colour"


@pytest.mark.parametrize("modality", ["CT", "MR", "NM", "US", "PT", "MG", "XA"])
def test_refuses_other_modalities(tmp_path, modality):
    path = _write(tmp_path, np.zeros((64, 64), np.uint8), modality=modality)
    with pytest.raises(PtxsegError, match=f"modality {modality}") as info:
        read_dicom(path)
    assert info.value.code == "modality"


# ------------------------------------------------------------------ accepted, with or without warnings


@pytest.mark.parametrize("modality", ["CR", "DX", "DR"])
def test_accepts_projection_radiography(tmp_path, modality):
    _, meta = read_dicom(_write(tmp_path, np.zeros((64, 64), np.uint8), modality=modality))
    assert meta.warnings == []


@pytest.mark.parametrize(
    ("kwargs", "warning"),
    [
        ({"modality": "OT"}, "secondary_capture"),
        ({"modality": "SC"}, "secondary_capture"),
        ({"body_part": "KNEE"}, "non_chest_body_part"),
        ({"view_position": "LL"}, "lateral_view"),
    ],
)
def test_warnings(tmp_path, kwargs, warning):
    _, meta = read_dicom(_write(tmp_path, np.zeros((64, 64), np.uint8), **kwargs))
    assert meta.warnings == [warning]


def test_absent_body_part_and_thorax_are_fine(tmp_path):
    for body in (None, "THORAX", "Chest"):
        _, meta = read_dicom(_write(tmp_path, np.zeros((64, 64), np.uint8), body_part=body))
        assert meta.warnings == []


def test_metadata_fields(tmp_path):
    path = _write(
        tmp_path,
        np.zeros((70, 90), np.uint8),
        sop_instance_uid="1.2.3.4.5",
        study_instance_uid="1.2.3.4",
        series_instance_uid="1.2.3.4.6",
        patient_id="P-17",
        patient_sex="F",
        patient_age="064Y",
        pixel_spacing=(0.2, 0.15),
    )
    _, meta = read_dicom(path)
    assert meta.SOPInstanceUID == "1.2.3.4.5" and meta.StudyInstanceUID == "1.2.3.4"
    assert meta.SeriesInstanceUID == "1.2.3.4.6" and meta.PatientID == "P-17"
    assert (meta.PatientSex, meta.PatientAge) == ("F", "064Y")
    assert (meta.Rows, meta.Columns) == (70, 90)
    assert meta.PixelSpacing == (0.2, 0.15)


def test_imager_pixel_spacing_fallback_and_none(tmp_path):
    path = _write(tmp_path, np.zeros((64, 64), np.uint8), pixel_spacing=None)
    assert read_dicom(path)[1].PixelSpacing is None
    path = _edit(path, ImagerPixelSpacing=["0.1", "0.12"])
    assert read_dicom(path)[1].PixelSpacing == (0.1, 0.12)


def test_read_radiograph_dispatches_by_content(tmp_path, gradient_u16):
    import cv2

    dcm = _write(tmp_path, gradient_u16, "scan.bin")  # DICOM without .dcm suffix
    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), gradient_u16)
    a, meta_a = read_radiograph(dcm)
    b, meta_b = read_radiograph(png)
    assert meta_a.Modality == "CR" and meta_b.Modality is None and meta_b.SOPInstanceUID == "scan"
    np.testing.assert_allclose(a, b, atol=1e-6)  # both on the full 16-bit scale
    junk = tmp_path / "scan.txt"
    junk.write_text("hello")
    with pytest.raises(PtxsegError, match="not an image file") as info:
        read_radiograph(junk)
    assert info.value.code == "not_image"
