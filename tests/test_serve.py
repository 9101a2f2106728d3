"""``ptxseg serve`` in process (FastAPI's TestClient): the answers, the limits and their status codes, the token,
the result store, metrics and logs. The real server (uvicorn, SIGTERM, a client leaving mid-upload) is in
tests/test_serve_server.py."""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from fastapi.testclient import TestClient

from ptxseg.clinical.pipeline import ClinicalPipeline
from ptxseg.io.dicom import write_dicom
from ptxseg.serve import ServeOptions, build_app, read_token
from ptxseg.serve.app import ServeSettings, create_app, route_label
from ptxseg.serve.service import InferenceService
from ptxseg.serve.store import ResultStore, is_result_id
from ptxseg.tasks.predict import predict_batch

from .conftest import shared_path, tiny_models

pytestmark = pytest.mark.slow  # module-wide: its fixtures train models or start real servers

REAL_CR = "dicom/chest_pa_cr_mono1.dcm"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(16, seed=11)


@pytest.fixture(scope="module")
def pipeline(models):
    return ClinicalPipeline(models[1])


def _client(pipeline, tmp_path, **kw) -> tuple[TestClient, InferenceService]:
    store = ResultStore(tmp_path / "store", kw.pop("max_results", 100), kw.pop("max_age_s", 3600))
    service = InferenceService(pipeline, store, workers=1, queue=kw.pop("queue", 4), timeout_s=kw.pop("timeout_s", 60))
    return TestClient(create_app(service, ServeSettings(**kw))), service


def _phantom_dicom(models, tmp_path, k: int = 0, **kw) -> bytes:
    data = models[0]
    image_id = pd.read_csv(data / "manifest.csv", dtype={"id": str})["id"][k]
    pixels = cv2.imread(str(data / "images" / f"{image_id}.png"), cv2.IMREAD_GRAYSCALE)
    path = write_dicom(
        tmp_path / f"ph{k}.dcm", pixels, sop_instance_uid=f"1.2.826.0.1.3680043.8.498.7{k}", pixel_spacing=(0.5, 0.5), **kw
    )
    return path.read_bytes()


def _png(models, k: int = 1) -> bytes:
    data = models[0]
    image_id = pd.read_csv(data / "manifest.csv", dtype={"id": str})["id"][k]
    return (data / "images" / f"{image_id}.png").read_bytes()


def test_a_dicom_gets_the_predict_document_with_urls_to_its_files(pipeline, tmp_path):
    client, _ = _client(pipeline, tmp_path)
    real = shared_path(REAL_CR)
    r = client.post("/v1/predict", files={"file": ("chest.dcm", real.read_bytes(), "application/dicom")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert is_result_id(doc["id"]) and doc["format"] == "ptxseg-prediction/1"
    assert doc["urls"] == {
        "result": f"/v1/results/{doc['id']}",
        "overlay": f"/v1/results/{doc['id']}/overlay.png",
        "mask": f"/v1/results/{doc['id']}/mask.png",
        "seg": f"/v1/results/{doc['id']}/seg.dcm",
    }
    # the same analysis `ptxseg predict` writes for the same file
    expected = predict_batch(pipeline, [real], tmp_path / "cli", seg=True)
    cli = json.loads((tmp_path / "cli" / f"{expected['id'][0]}.json").read_text())
    for block in ("pneumothorax", "right", "left", "qc", "lungs", "max_severity", "model", "lung_model", "operating_point"):
        assert doc[block] == cli[block], block
    assert doc["input"]["SOPInstanceUID"] == cli["input"]["SOPInstanceUID"] and doc["input"]["path"] == "chest.dcm"
    assert client.get(doc["urls"]["result"]).json() == doc
    mask = cv2.imdecode(np.frombuffer(client.get(doc["urls"]["mask"]).content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (doc["input"]["rows"], doc["input"]["columns"]) == (1955, 1841)
    assert int((mask > 0).sum()) == doc["pneumothorax"]["area_px"]
    overlay = client.get(doc["urls"]["overlay"])
    assert overlay.headers["content-type"] == "image/png" and cv2.imdecode(np.frombuffer(overlay.content, np.uint8), 1).ndim == 3
    seg = pydicom.dcmread(io.BytesIO(client.get(doc["urls"]["seg"]).content))
    assert (
        seg.Modality == "SEG"
        and seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == (doc["input"]["SOPInstanceUID"])
    )
    view = cv2.imdecode(np.frombuffer(client.get(f"{doc['urls']['result']}/view.png").content, np.uint8), cv2.IMREAD_UNCHANGED)
    labels = cv2.imdecode(
        np.frombuffer(client.get(f"{doc['urls']['result']}/view_labels.png").content, np.uint8), cv2.IMREAD_UNCHANGED
    )
    assert view.shape == labels.shape and max(view.shape) == 1024  # the viewer's picture, longest side 1024
    assert (labels & 2).any() and (labels & 4).any()  # both lung fields, as the bits the viewer outlines


def test_an_image_upload_has_no_seg(pipeline, models, tmp_path):
    client, _ = _client(pipeline, tmp_path)
    doc = client.post("/v1/predict", files={"file": ("phantom.png", _png(models), "image/png")}).json()
    assert doc["urls"]["seg"] is None and doc["input"]["kind"] == "image"
    assert client.get(f"/v1/results/{doc['id']}/seg.dcm").status_code == 404


def test_refusals_carry_their_status_and_reason(pipeline, models, tmp_path):
    client, service = _client(pipeline, tmp_path, max_upload_bytes=200_000)
    big = client.post("/v1/predict", files={"file": ("big.dcm", b"\0" * 300_000, "application/dicom")})
    assert big.status_code == 413 and "maximum" in big.json()["detail"]
    text = client.post("/v1/predict", files={"file": ("notes.txt", b"hello, not an image" * 20, "text/plain")})
    assert text.status_code == 415 and text.json()["detail"] == "notes.txt: not a DICOM, PNG or JPEG file"
    broken = b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00abcd" * 10  # a DICOM preamble, then garbage
    corrupt = client.post("/v1/predict", files={"file": ("broken.dcm", broken, "application/dicom")})
    assert corrupt.status_code == 422 and corrupt.json()["detail"].startswith("broken.dcm: ")
    assert client.post("/v1/predict").status_code == 422  # no file field at all
    assert service.store.count() == 0 and not list(service.store.staging.iterdir())  # nothing kept of a refusal


def test_a_corrupt_upload_among_good_ones_leaves_them_answered(pipeline, models, tmp_path):
    client, _ = _client(pipeline, tmp_path)
    files = [
        ("file", ("a.dcm", _phantom_dicom(models, tmp_path, 0), "application/dicom")),
        ("file", ("bad.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")),
        ("file", ("c.png", _png(models, 2), "image/png")),
    ]
    r = client.post("/v1/predict", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["file"] for x in results] == ["a.dcm", "bad.png", "c.png"] and [x["status"] for x in results] == [200, 422, 200]
    assert "bad.png" in results[1]["detail"]
    for good in (results[0], results[2]):
        assert client.get(good["urls"]["result"]).json()["pneumothorax"] == good["pneumothorax"]


def test_a_full_queue_answers_503_with_retry_after(pipeline, models, tmp_path):
    client, service = _client(pipeline, tmp_path, queue=1)
    service._admit(1)  # a radiograph in progress fills the one place
    try:
        r = client.post("/v1/predict", files={"file": ("x.png", _png(models), "image/png")})
    finally:
        service._release()
    assert r.status_code == 503 and r.headers["retry-after"] == "5" and "busy" in r.json()["detail"]
    assert client.post("/v1/predict", files={"file": ("x.png", _png(models), "image/png")}).status_code == 200
    metrics = client.get("/metrics").text
    assert 'ptxseg_requests_total{route="/v1/predict",status="503"} 1.0' in metrics and "ptxseg_busy_rejections_total 1.0" in metrics


def test_more_files_than_the_queue_ever_holds_is_413_naming_the_limit_not_503(pipeline, models, tmp_path):
    client, service = _client(pipeline, tmp_path, queue=2)
    three = [("file", (f"{k}.png", _png(models, k), "image/png")) for k in range(3)]
    r = client.post("/v1/predict", files=three)  # an idle server: waiting would never help
    assert r.status_code == 413 and "retry-after" not in r.headers, r.status_code
    assert "at most 2" in r.json()["detail"] and service.depth == 0
    two = [("file", (f"{k}.png", _png(models, k), "image/png")) for k in range(2)]
    assert client.post("/v1/predict", files=two).status_code == 200


def test_a_slow_answer_times_out_with_504_and_leaves_no_result(pipeline, models, tmp_path):
    client, service = _client(pipeline, tmp_path, timeout_s=0.001)
    r = client.post("/v1/predict", files={"file": ("x.png", _png(models), "image/png")})
    assert r.status_code == 504 and "no answer within" in r.json()["detail"]
    deadline = time.monotonic() + 30

    def settled() -> bool:  # its thread finishes in the background, then its staged files go
        return service.depth == 0 and service.store.count() == 0 and not list(service.store.staging.iterdir())

    while not settled() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert settled()


def test_the_token_guards_every_endpoint_but_health_and_the_page(pipeline, models, tmp_path):
    secret = "s3cret-token-for-tests"
    client, _ = _client(pipeline, tmp_path, token=secret)
    auth = {"Authorization": f"Bearer {secret}"}
    for path in ("/version", "/metrics", "/docs", "/openapi.json", "/v1/results/AAAAAAAAAAAAAAAAAAAAAA"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
    assert client.post("/v1/predict", files={"file": ("x.png", _png(models), "image/png")}).status_code == 401
    assert client.get("/health").status_code == 200 and client.get("/").status_code == 200
    assert client.get("/static/viewer.js").status_code == 200  # the page's code holds no data
    doc = client.post("/v1/predict", files={"file": ("x.png", _png(models), "image/png")}, headers=auth).json()
    assert client.get(doc["urls"]["mask"]).status_code == 401 and client.get(doc["urls"]["mask"], headers=auth).status_code == 200
    assert client.get("/version", headers=auth).status_code == 200


def test_evicted_and_unknown_results_answer_404(pipeline, models, tmp_path):
    client, service = _client(pipeline, tmp_path, max_results=2)
    ids = [client.post("/v1/predict", files={"file": (f"{k}.png", _png(models, k), "image/png")}).json()["id"] for k in range(3)]
    assert len(set(ids)) == 3 and all(is_result_id(i) for i in ids)
    assert client.get(f"/v1/results/{ids[0]}").status_code == 404  # the oldest, beyond the count
    assert all(client.get(f"/v1/results/{i}").status_code == 200 for i in ids[1:])
    for bad in ("..", "..%2F..%2Fstore", "A" * 21, "..%2F" + ids[2], ids[1] + "/result.json", ids[1] + "%2F..%2F" + ids[2]):
        assert client.get(f"/v1/results/{bad}").status_code == 404, bad
    aged = ResultStore(tmp_path / "aged", max_results=10, max_age_s=0.05)
    rid = aged.new_id()
    aged.stage(rid)
    aged.commit(rid)
    assert aged.folder(rid) is not None
    deadline = time.monotonic() + 10
    while aged.folder(rid) is not None and time.monotonic() < deadline:  # until it is older than 0.05 s
        time.sleep(0.01)
    assert aged.folder(rid) is None and aged.evict() == 1  # too old: gone, then removed


def test_health_version_and_metrics(pipeline, models, tmp_path):
    client, _ = _client(pipeline, tmp_path)
    client.post("/v1/predict", files={"file": ("x.png", _png(models), "image/png")})
    health = client.get("/health").json()
    assert health == {"status": "ok", "model_loaded": True, "queue_depth": 0, "queue_limit": 4, "workers": 1}
    version = client.get("/version").json()
    assert version["model"]["version"] == pipeline.model_info["version"] and version["lung_model"] == pipeline.lung_info
    assert version["model_card"]["model"]["name"] == "unet"
    metrics = client.get("/metrics").text
    assert 'ptxseg_requests_total{route="/v1/predict",status="200"} 1.0' in metrics
    assert 'ptxseg_requests_total{route="/health",status="200"} 1.0' in metrics
    assert "ptxseg_inference_seconds_count 1.0" in metrics and "ptxseg_queue_depth 0.0" in metrics
    assert 'ptxseg_request_seconds_bucket{le="60.0",route="/v1/predict"} 1.0' in metrics
    assert client.get("/docs").status_code == 200 and "/v1/predict" in client.get("/openapi.json").json()["paths"]
    assert route_label("/v1/results/abc/mask.png") == "/v1/results/{id}/mask.png" and route_label("/x/y") == "other"


def test_logs_hash_uids_and_name_no_patient(pipeline, models, tmp_path, caplog):
    client, _ = _client(pipeline, tmp_path)
    ds = pydicom.dcmread(io.BytesIO(_phantom_dicom(models, tmp_path, 3, patient_id="PID-123456")))
    ds.PatientName = "Doe^Jane"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    data = buffer.getvalue()
    with caplog.at_level(logging.INFO, logger="ptxseg.serve"):
        doc = client.post("/v1/predict", files={"file": ("jane.dcm", data, "application/dicom")}).json()
    text = caplog.text
    assert doc["id"] in text and "sop " in text
    assert "Doe" not in text and "PID-123456" not in text and ds.SOPInstanceUID not in text


def test_the_result_id_is_random_not_from_the_patient(pipeline, models, tmp_path):
    client, _ = _client(pipeline, tmp_path)
    data = _phantom_dicom(models, tmp_path, 4)
    first, second = (client.post("/v1/predict", files={"file": ("a.dcm", data, "application/dicom")}).json() for _ in range(2))
    assert first["id"] != second["id"] and first["input"]["SOPInstanceUID"] == second["input"]["SOPInstanceUID"]
    assert first["input"]["SOPInstanceUID"] not in first["id"]


def test_start_up_refuses_a_model_that_does_not_load_and_a_bad_token_file(tmp_path):
    from ptxseg.errors import PtxsegError

    with pytest.raises(PtxsegError, match="missing"):
        build_app(ServeOptions(model=tmp_path / "missing", store=tmp_path / "s"))
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(PtxsegError, match="at least 16"):
        read_token(tmp_path / "short")
    (tmp_path / "good").write_text("a-long-enough-token\n# comment\n")
    assert read_token(tmp_path / "good") == "a-long-enough-token"


def test_start_up_warms_the_pipeline_and_refuses_one_that_cannot_answer(models, tmp_path, monkeypatch):
    from ptxseg.errors import PtxsegError
    from ptxseg.serve import service as service_module

    monkeypatch.setattr(tempfile, "tempdir", tempfile.gettempdir())  # build_app points it at the store's spool
    app, service = build_app(ServeOptions(model=models[1], store=tmp_path / "s"))
    try:
        assert service.warm_up() > 0  # the whole pipeline ran once more, SEG included
        assert not list(service.store.staging.iterdir()) and not list(service.store.results.iterdir())  # and left nothing
    finally:
        service.close()

    def broken(*args, **kwargs):
        raise PtxsegError("probability map", "is NaN or infinite")

    monkeypatch.setattr(service_module, "write_outputs", broken)
    with pytest.raises(PtxsegError, match="fails on a synthetic radiograph at start-up: is NaN or infinite"):
        build_app(ServeOptions(model=models[1], store=tmp_path / "t"))


def test_an_unforeseen_failure_of_one_file_is_its_own_500_and_the_others_keep_their_ids(
    pipeline, models, tmp_path, monkeypatch, caplog
):
    import ptxseg.serve.service as service_module

    real = service_module.load_radiograph
    poison = _png(models, 2)

    def flaky(path, **kw):
        if path.read_bytes() == poison:  # what highdicom once raised on a bad birth date, value and all
            raise ValueError("Unable to convert '19700101-SECRET' to 'DA' object")
        return real(path, **kw)

    monkeypatch.setattr(service_module, "load_radiograph", flaky)
    client, _ = _client(pipeline, tmp_path)
    files = [
        ("file", ("a.png", _png(models, 0), "image/png")),
        ("file", ("b.png", poison, "image/png")),
        ("file", ("c.png", _png(models, 1), "image/png")),
    ]
    with caplog.at_level(logging.ERROR, logger="ptxseg.serve"):
        r = client.post("/v1/predict", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == [200, 500, 200]
    assert "ValueError" in results[1]["detail"] and "SECRET" not in results[1]["detail"]
    assert "SECRET" not in caplog.text and "ValueError" in caplog.text
    for good in (results[0], results[2]):
        assert client.get(good["urls"]["result"]).status_code == 200
