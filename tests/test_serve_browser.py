"""The web viewer in a real headless browser: Debian's chromium driven by Selenium against a real ``ptxseg serve``.

Uploads the shared real DICOM (MONOCHROME1 CR) and a phantom, waits for the results, checks that the panel shows
the numbers of the JSON, that the list is in triage order, that the overlay toggles and the opacity act on the
pneumothorax pixels only, and that a token-protected server asks for its token. Screenshots go to the test's folder
(and to ``$PTXSEG_SCREENSHOTS`` when set, which is how the picture in docs/serve.md is made)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import httpx
import numpy as np
import pandas as pd
import pytest

from ptxseg.artifacts.shipped import SHIPPED_LUNG_MODEL

from .conftest import shared_path, tiny_models
from .serving import Server

REAL_CR = "dicom/chest_pa_cr_mono1.dcm"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SEVERITY_RANK = {"severe": 3, "moderate": 2, "mild": 1, "none": 0}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (make test installs them as root with apt-get)",
    ),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A one-epoch phantom model whose operating point is lowered to 0.45 so that it outlines something (the fill
    and outline then have pixels to act on). Its own lung model is removed so the lung fields come from the real
    lung model that ships with ptxseg."""
    root = tmp_path_factory.mktemp("browser")
    data, run = tiny_models(12, seed=41)
    model = root / "model"
    shutil.copytree(run, model, ignore=shutil.ignore_patterns("lungs"))
    card = json.loads((model / "best.json").read_text())
    card["operating_point"] = {**card["operating_point"], "threshold": 0.45, "min_mask_px": 0, "min_component_px": 0}
    (model / "best.json").write_text(json.dumps(card))
    return data, model


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ptxseg-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
        "--window-size=1440,900", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers on the network
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except Exception as err:  # pragma: no cover - a broken browser installation
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"chromium does not start: {str(err).splitlines()[0]}")
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition, timeout: float = 120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def _phantom(data: Path, tmp_path: Path) -> Path:
    image_id = pd.read_csv(data / "manifest.csv", dtype={"id": str})["id"][0]
    out = tmp_path / "phantom.png"
    shutil.copy(data / "images" / f"{image_id}.png", out)
    return out


def _canvas(driver) -> np.ndarray:
    """The canvas as drawn, RGB uint8 H×W×3."""
    url = driver.execute_script("return document.getElementById('canvas').toDataURL('image/png')")
    png = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _labels(url: str, result_id: str) -> np.ndarray:
    png = httpx.get(f"{url}/v1/results/{result_id}/view_labels.png", timeout=30).content
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)


def _shots(tmp_path: Path, driver, name: str) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))
    if os.environ.get("PTXSEG_SCREENSHOTS"):
        Path(os.environ["PTXSEG_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / f"{name}.png", Path(os.environ["PTXSEG_SCREENSHOTS"]) / f"{name}.png")


def _select(driver, result_id: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f'#results li[data-id="{result_id}"]').click()
    _wait(driver, lambda d: d.find_element(By.ID, "canvas").get_attribute("data-drawn") == result_id)


def _panel(driver) -> dict[str, str | None]:
    from selenium.webdriver.common.by import By

    return {
        el.get_attribute("data-field"): el.get_attribute("data-value") for el in driver.find_elements(By.CSS_SELECTOR, "[data-field]")
    }


def _num(text: str | None) -> float | None:
    return None if text in (None, "") else float(text)


@pytest.fixture(scope="module")
def session(model, browser, tmp_path_factory):
    """The viewer after the real DICOM and a phantom were uploaded together: (server, driver, documents by id)."""
    from selenium.webdriver.common.by import By

    data, weights = model
    tmp = tmp_path_factory.mktemp("session")
    server = Server(weights, tmp / "store")
    try:
        browser.get(server.url + "/")
        _wait(browser, lambda d: d.find_element(By.ID, "model").text.startswith("ptxseg "))
        files = [shared_path(REAL_CR), _phantom(data, tmp)]
        browser.find_element(By.ID, "file-input").send_keys("\n".join(str(f) for f in files))
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) == 2)
        _wait(browser, lambda d: d.find_element(By.ID, "canvas").get_attribute("data-drawn"))
        ids = [li.get_attribute("data-id") for li in browser.find_elements(By.CSS_SELECTOR, "#results li")]
        docs = {i: httpx.get(f"{server.url}/v1/results/{i}", timeout=30).json() for i in ids}
        yield server, browser, docs, ids
    finally:
        server.stop()


def test_the_page_loads_its_model_and_says_it_is_not_a_medical_device(session):
    from selenium.webdriver.common.by import By

    server, driver, _, _ = session
    version = httpx.get(f"{server.url}/version", timeout=30).json()
    assert version["model_warnings"]  # a phantom-trained model: the page's top line says so too
    assert (
        driver.find_element(By.ID, "model").text
        == f"ptxseg {version['ptxseg']} · {version['model']['name']} · {version['model']['backend']}"
        " · TRAINED ON SYNTHETIC DATA: not for patients"
    )
    assert "Not a medical device" in driver.find_element(By.CLASS_NAME, "notice").text
    assert not driver.find_element(By.ID, "token-form").is_displayed()  # this server has no token
    assert driver.find_element(By.ID, "status").text == "2 analysed"


def test_the_session_list_is_in_triage_order(session):
    _, _, docs, ids = session
    keys = [(-SEVERITY_RANK.get(docs[i]["max_severity"] or "", -1), -docs[i]["pneumothorax"]["probability"]) for i in ids]
    assert keys == sorted(keys)
    assert sorted(d["input"]["path"] for d in docs.values()) == sorted(["chest_pa_cr_mono1.dcm", "phantom.png"])


@pytest.mark.parametrize("name", ["chest_pa_cr_mono1.dcm", "phantom.png"])
def test_the_panel_shows_the_numbers_of_the_json(session, name, tmp_path):
    from selenium.webdriver.common.by import By

    server, driver, docs, _ = session
    rid, doc = next((i, d) for i, d in docs.items() if d["input"]["path"] == name)
    _select(driver, rid)
    panel = _panel(driver)
    p = doc["pneumothorax"]
    assert _num(panel["probability"]) == pytest.approx(p["probability"], abs=0)
    assert _num(panel["probability_std"]) == pytest.approx(doc["uncertainty"]["probability_std"], abs=0)
    assert _num(panel["area"]) == p["area_px"]
    for side in ("right", "left"):
        assert _num(panel[f"{side}_ratio"]) == pytest.approx(doc[side]["ratio_pct"], abs=0)
        assert panel[f"{side}_severity"] == (doc[side]["severity"] or "")
    assert panel["qc"] == doc["qc"]["verdict"]
    assert driver.find_element(By.ID, "f-title").text == name
    assert driver.find_element(By.ID, "f-headline").get_attribute("data-present") == str(p["present"]).lower()
    # the model's warning (trained on synthetic data) stands above the findings, in the document's words
    warning = driver.find_element(By.ID, "f-model-warning")
    assert warning.is_displayed() and warning.text == " ".join(f"Warning: {w}." for w in doc["model_warnings"])
    # the text beside each number is the same number, as the reader sees it
    shown = driver.find_element(By.CSS_SELECTOR, '[data-field="probability"]').text
    assert shown == f"{p['probability']:.3f}"
    for key in ("mask", "overlay", "seg", "result"):
        link = {"mask": "dl-mask", "overlay": "dl-overlay", "seg": "dl-seg", "result": "dl-json"}[key]
        assert driver.find_element(By.ID, link).get_attribute("data-url") == (doc["urls"][key] or "")
    _shots(tmp_path, driver, f"viewer_{Path(name).stem}")


def test_the_real_radiograph_gets_real_lung_fields_and_side_markers(session):
    server, driver, docs, _ = session
    rid, doc = next((i, d) for i, d in docs.items() if d["input"]["path"] == "chest_pa_cr_mono1.dcm")
    _select(driver, rid)
    labels = _labels(server.url, rid)
    h, w = labels.shape
    right, left = (labels & 2) > 0, (labels & 4) > 0
    # the patient's right lung is on the image's left (radiological convention), each a sizeable field
    assert right.mean() > 0.05 and left.mean() > 0.05
    assert np.argwhere(right)[:, 1].mean() < w / 2 < np.argwhere(left)[:, 1].mean()
    assert Path(doc["lung_model"]["path"]) == SHIPPED_LUNG_MODEL  # the real lung model, not a phantom one


def test_the_overlay_toggles_and_the_opacity_act_on_the_pneumothorax_pixels_only(session, tmp_path):
    from selenium.webdriver.common.by import By

    server, driver, docs, _ = session
    rid, doc = next((i, d) for i, d in docs.items() if d["input"]["path"] == "chest_pa_cr_mono1.dcm")
    _select(driver, rid)
    ptx = (_labels(server.url, rid) & 1) > 0
    assert doc["pneumothorax"]["area_px"] > 0 and ptx.any(), "the lowered operating point must outline something"
    canvas = driver.find_element(By.ID, "canvas")
    shown = _canvas(driver)
    assert shown.shape[:2] == ptx.shape
    for box in ("show-fill", "show-outline"):
        driver.find_element(By.ID, box).click()
    assert (canvas.get_attribute("data-fill"), canvas.get_attribute("data-outline")) == ("false", "false")
    bare = _canvas(driver)
    changed = np.any(shown != bare, axis=2)
    # the fill and outline paint every pneumothorax pixel and nothing else
    assert changed[ptx].mean() > 0.99 and not changed[~ptx].any()
    # red fill: the red channel rises over the bare radiograph inside the outline
    inside = ptx & ~np.all(shown == [255, 211, 61], axis=2)  # the outline is drawn opaque in yellow
    assert (shown[inside, 0].astype(int) - bare[inside, 0]).mean() > 10
    _shots(tmp_path, driver, "viewer_overlay_off")
    driver.find_element(By.ID, "show-fill").click()
    driver.find_element(By.ID, "show-outline").click()
    # the opacity slider: more opacity, stronger fill, same pixels
    driver.execute_script("const o = document.getElementById('opacity'); o.value = 90; o.dispatchEvent(new Event('input'))")
    strong = _canvas(driver)
    assert not np.any(strong != shown, axis=2)[~ptx].any()
    assert (strong[inside, 0].astype(int) - bare[inside, 0]).mean() > (shown[inside, 0].astype(int) - bare[inside, 0]).mean()
    driver.execute_script("const o = document.getElementById('opacity'); o.value = 35; o.dispatchEvent(new Event('input'))")
    # lung fields off: only lung outline pixels change
    driver.find_element(By.ID, "show-lungs").click()
    no_lungs = _canvas(driver)
    driver.find_element(By.ID, "show-lungs").click()
    lung_edges = np.any(no_lungs != _canvas(driver), axis=2)
    labels = _labels(server.url, rid)
    assert lung_edges.any() and not lung_edges[(labels & 6) == 0].any()


def test_a_protected_server_asks_the_viewer_for_its_token(model, browser, tmp_path):
    from selenium.webdriver.common.by import By

    data, weights = model
    secret = "browser-test-token-0123456789"
    (tmp_path / "token").write_text(secret + "\n")
    server = Server(weights, tmp_path / "store", "--token-file", str(tmp_path / "token"))
    try:
        browser.get(server.url + "/")
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
        form = _wait(
            browser, lambda d: d.find_element(By.ID, "token-form") if d.find_element(By.ID, "token-form").is_displayed() else None
        )
        assert "access token" in browser.find_element(By.ID, "model").text
        browser.find_element(By.ID, "token").send_keys(secret)
        form.find_element(By.TAG_NAME, "button").click()
        _wait(browser, lambda d: d.find_element(By.ID, "model").text.startswith("ptxseg "))
        browser.find_element(By.ID, "file-input").send_keys(str(_phantom(data, tmp_path)))
        _wait(browser, lambda d: d.find_element(By.ID, "canvas").get_attribute("data-drawn"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#results li")) == 1
        assert httpx.get(f"{server.url}/version", timeout=30).status_code == 401  # the page did not open the door
    finally:
        browser.execute_script("sessionStorage.clear()")
        server.stop()
