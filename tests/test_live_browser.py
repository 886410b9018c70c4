"""Notebook 08's panel in a real browser: Voila serves the notebook on 127.0.0.1, Debian's
chromium (headless, through chromedriver and Selenium) moves one slider, and a new run must
appear in the panel.

The notebook runs in the smoke configuration on synthetic data, so that it is quick. The
test is skipped, with the reason, where chromium, chromedriver, Voila or Selenium is
missing (CI installs chromium and chromedriver: ``.ci/run``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "08_live_exploration.ipynb"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Voila answers once every cell has run: data, two runs and the panel's first draw.
SERVE_SECONDS = 300
TRAIN_SECONDS = 120

pytestmark = [
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason="no chromium (on Debian: apt-get install chromium chromium-driver)",
    ),
    pytest.mark.skipif(
        not os.access(CHROMEDRIVER, os.X_OK),
        reason="no chromedriver (on Debian: apt-get install chromium-driver)",
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def voila_url(tmp_path):
    """Notebook 08 served by Voila in the smoke configuration; yields its address."""
    pytest.importorskip("voila", reason="Voila is not installed (requirements/*-lock.txt)")
    port = free_port()
    log = (tmp_path / "voila.log").open("w")
    env = dict(
        os.environ,
        FEDRECON_DATASET="synthetic",
        FEDRECON_CONFIG="smoke",
        FEDRECON_OUTPUT_DIR=str(tmp_path / "figures"),
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voila",
            str(NOTEBOOK),
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
        ],
        cwd=NOTEBOOK.parent,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60  # until Voila listens
        while True:
            assert server.poll() is None, (tmp_path / "voila.log").read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "Voila did not start within 60 s"
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # Voila and the kernel it started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture
def browser():
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="Selenium is not installed (requirements/*-lock.txt)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,2400",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options
    )
    driver.set_page_load_timeout(SERVE_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def test_moving_a_slider_trains_a_new_run(voila_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(voila_url)
    wait = WebDriverWait(browser, TRAIN_SECONDS)
    status = wait.until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".live-status"))
    )
    wait.until(lambda _: "Run 1" in status.text)
    rounds_slider = (
        "//div[contains(@class, 'widget-slider')][.//label[normalize-space()='rounds']]"
        "//div[contains(@class, 'noUi-handle')]"
    )
    handle = wait.until(expected_conditions.element_to_be_clickable((By.XPATH, rounds_slider)))
    before = int(float(handle.get_attribute("aria-valuenow")))
    first_figure = browser.find_element(By.CSS_SELECTOR, "img.widget-image").get_attribute("src")
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)
    try:
        wait.until(lambda _: "Run 2" in status.text)
    finally:
        browser.execute_script("arguments[0].scrollIntoView();", handle)
        browser.save_screenshot(str(tmp_path / "08_live_browser.png"))
    after = int(float(handle.get_attribute("aria-valuenow")))
    assert after > before
    assert status.text.startswith(f"Run 2: {after} rounds of")
    runs = browser.find_elements(By.CSS_SELECTOR, ".live-runs tbody tr")
    assert len(runs) == 2 and f"rounds {after}" in runs[1].text
    figure = browser.find_element(By.CSS_SELECTOR, "img.widget-image").get_attribute("src")
    assert figure != first_figure  # the learning curves were redrawn
