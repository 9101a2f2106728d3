"""Screenshots of the web viewer (docs/serve.md): a real ``ptxseg serve`` on a free loopback port, Debian's
headless chromium through Selenium, the given radiographs uploaded together, one screenshot per selected result.

    .venv/bin/python scripts/viewer_screenshot.py MODEL --out docs/img --select NAME [--select NAME …] FILE…

Each ``--select NAME`` (an uploaded file's name) writes ``OUT/viewer_<stem>.png`` at 1440×900.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--select", action="append", default=[], help="an uploaded file's name to show and capture")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="ptxseg-shot-"))
    cmd = [sys.executable, "-m", "ptxseg", "serve", args.model, "--port", str(port), "--store", str(work / "store")]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--window-size=1440,900", f"--user-data-dir={work / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    driver = None
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
        wait = WebDriverWait(driver, 300, poll_frequency=0.2)
        driver.get(url + "/")
        driver.find_element(By.ID, "file-input").send_keys("\n".join(str(f.resolve()) for f in args.files))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) == len(args.files))
        args.out.mkdir(parents=True, exist_ok=True)
        for name in args.select:
            item = driver.find_element(By.XPATH, f'//ol[@id="results"]/li[span[@class="name" and text()="{name}"]]')
            rid = item.get_attribute("data-id")  # the list is redrawn on a click
            item.click()
            wait.until(lambda d, rid=rid: d.find_element(By.ID, "canvas").get_attribute("data-drawn") == rid)
            shot = args.out / f"viewer_{Path(name).stem}.png"
            driver.save_screenshot(str(shot))
            print(shot)
    finally:
        if driver is not None:
            driver.quit()
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
