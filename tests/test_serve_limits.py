"""What one upload may cost the service (issue 26): a file declaring more pixels than a chest detector has is 413
from its header, before decoding; a request whose files declare more than the request budget is 413; a large
JPEG or PNG is decoded straight at 1/2, 1/4 or 1/8 and the answer says at which scale."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from ptxseg.clinical.inputs import load_radiograph
from ptxseg.clinical.pipeline import ClinicalPipeline
from ptxseg.io.headers import declared_pixels
from ptxseg.io.images import read_image, reduction
from ptxseg.limits import SERVICE_MAX_PIXELS, max_pixels, pixel_limit
from ptxseg.serve.app import ServeSettings, create_app
from ptxseg.serve.service import InferenceService, PixelLimits
from ptxseg.serve.store import ResultStore

from .conftest import tiny_models


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return ClinicalPipeline(tiny_models(12, seed=41)[1])


def _client(pipeline, tmp_path, limits: PixelLimits | None = None) -> tuple[TestClient, InferenceService]:
    service = InferenceService(pipeline, ResultStore(tmp_path / "store", 100, 3600), queue=8, limits=limits)
    return TestClient(create_app(service, ServeSettings())), service


def _chest_like(rows: int, cols: int, dtype=np.uint8) -> np.ndarray:
    """A smooth gradient with a darker oval per lung: compresses to a few kB at any size."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    lungs = ((x / cols - 0.3) ** 2 / 0.03 + (y / rows - 0.5) ** 2 / 0.12 < 1) | (
        (x / cols - 0.7) ** 2 / 0.03 + (y / rows - 0.5) ** 2 / 0.12 < 1
    )
    image = 0.8 - 0.3 * y / rows - 0.4 * lungs
    top = np.iinfo(dtype).max
    return np.round(image * top).astype(dtype)


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def test_reduction_keeps_the_longest_side_at_least_the_target():
    assert reduction(1024, 1024, 2048) == 1 and reduction(4300, 4300, 2048) == 2
    assert reduction(8192, 8000, 1024) == 8 and reduction(5000, 3000, None) == 1


@pytest.mark.parametrize("ext, dtype", [(".jpg", np.uint8), (".png", np.uint16)])
def test_a_large_raster_is_decoded_reduced_and_matches_the_full_decode(tmp_path, ext, dtype):
    path = tmp_path / f"big{ext}"
    path.write_bytes(_encode(_chest_like(4400, 4200, dtype), ext))
    full, half = read_image(path), read_image(path, reduce_to=2048)
    assert half.shape == (2200, 2100) and half.dtype == np.float32
    expected = cv2.resize(full, (2100, 2200), interpolation=cv2.INTER_AREA)
    assert float(np.abs(half - expected).mean()) < 0.01
    rad = load_radiograph(path, reduce_to=2048)
    assert rad.decoded_scale == 0.5 and rad.image.shape == (2200, 2100)


def test_the_scoped_pixel_limit_is_the_threads_own(tmp_path):
    outside = max_pixels()
    with pixel_limit(1000):
        assert max_pixels() == 1000
    assert max_pixels() == outside
    with pytest.raises(ValueError):
        with pixel_limit(0):
            pass


def test_an_upload_larger_than_a_chest_detector_is_413_from_its_header(pipeline, tmp_path):
    client, service = _client(pipeline, tmp_path)
    big = _encode(_chest_like(6000, 6000), ".png")  # 36 MP in a few kB
    assert declared_pixels(big) == 36_000_000 > SERVICE_MAX_PIXELS
    r = client.post("/v1/predict", files={"file": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "25,000,000-pixel limit" in r.json()["detail"] and "--max-pixels" in r.json()["detail"]
    assert service.depth == 0 and list((tmp_path / "store" / "results").iterdir()) == []
    assert list((tmp_path / "store" / ".staging").iterdir()) == []


def test_a_request_over_the_pixel_budget_is_413_and_a_large_jpeg_is_answered_at_its_decoded_scale(pipeline, tmp_path):
    client, _ = _client(pipeline, tmp_path, PixelLimits(per_file=20_000_000, per_request=30_000_000))
    film = _encode(_chest_like(4300, 4300), ".jpg")  # the largest chest detector, 18.5 MP
    two = [("file", (f"{k}.jpg", film, "image/jpeg")) for k in range(2)]
    r = client.post("/v1/predict", files=two)
    assert r.status_code == 413 and "36,980,000 pixels together" in r.json()["detail"], r.text
    r = client.post("/v1/predict", files={"file": ("film.jpg", film, "image/jpeg")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["input"]["decoded_scale"] == 0.5 and (doc["input"]["rows"], doc["input"]["columns"]) == (2150, 2150)
    mask = cv2.imdecode(np.frombuffer(client.get(doc["urls"]["mask"]).content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (2150, 2150)


def _deflated(tmp_path, rows: int, cols: int, extra_zeros: int = 0) -> bytes:
    import io

    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from ptxseg.io.dicom import write_dicom

    path = write_dicom(tmp_path / "d.dcm", np.zeros((rows, cols), np.uint16), pixel_spacing=(0.2, 0.2))
    ds = pydicom.dcmread(path)
    if extra_zeros:
        ds.add_new(0x00091010, "OB", b"\0" * extra_zeros)  # a private element: zeros compress 1000:1
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_deflated_dicom_is_sized_from_its_header_and_a_deflate_bomb_is_413(pipeline, tmp_path):
    from ptxseg.io.headers import dicom_image_header, inflated_size_exceeds

    big = _deflated(tmp_path, 6000, 6000)
    assert len(big) < 200_000 and declared_pixels(big) == 36_000_000
    assert int(dicom_image_header(big).Rows) == 6000 and not inflated_size_exceeds(big, 8 * 36_000_000)
    bomb = _deflated(tmp_path, 512, 512, extra_zeros=64 << 20)
    assert len(bomb) < 200_000 and inflated_size_exceeds(bomb, 32 << 20)
    client, _ = _client(pipeline, tmp_path)
    r = client.post("/v1/predict", files={"file": ("big.dcm", big, "application/dicom")})
    assert r.status_code == 413 and "36,000,000 pixels" in r.json()["detail"]
    r = client.post("/v1/predict", files={"file": ("bomb.dcm", bomb, "application/dicom")})
    assert r.status_code == 413 and "inflates" in r.json()["detail"], r.text
    good = _deflated(tmp_path, 512, 512)
    assert client.post("/v1/predict", files={"file": ("ok.dcm", good, "application/dicom")}).status_code == 200
