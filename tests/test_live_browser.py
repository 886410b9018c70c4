"""Notebook 08's panel in a real browser: a Jupyter server on 127.0.0.1 runs the notebook,
Debian's chromium (headless, through chromedriver and Selenium) moves one slider, and a new
run must appear in the panel.

The server is the one that renders this stack's ipywidgets: on the modern stack, Colab's
ipywidgets 7 with the classic Notebook and its widget extension (Colab's versions; Voila
0.5 renders ipywidgets 8 only); on the reference stack, ipywidgets 8 with Voila. The
notebook runs in the smoke configuration on synthetic data, so that it is quick. The test
is skipped, with the reason, where chromium, chromedriver, the server or Selenium is
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


def ipywidgets_major() -> int:
    import ipywidgets

    return int(ipywidgets.__version__.split(".")[0])


def server_command(port: int, folder: Path) -> tuple[list[str], str]:
    """The command that serves notebook 08 from ``folder`` and the address to open."""
    if ipywidgets_major() < 8:
        pytest.importorskip("notebook.notebookapp", reason="no classic Notebook (notebook<7)")
        command = [
            "-m",
            "notebook",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            "--allow-root",
            "--NotebookApp.token=",
            "--NotebookApp.password=",
            f"--notebook-dir={folder}",
        ]
        return command, f"http://127.0.0.1:{port}/notebooks/{NOTEBOOK.name}"
    pytest.importorskip("voila", reason="Voila is not installed (requirements/*-lock.txt)")
    command = [
        "-m",
        "voila",
        str(folder / NOTEBOOK.name),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
    ]
    return command, f"http://127.0.0.1:{port}/"


@pytest.fixture
def notebook_url(tmp_path):
    """Notebook 08 served in the smoke configuration; yields its address."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(NOTEBOOK, folder / NOTEBOOK.name)
    port = free_port()
    command, url = server_command(port, folder)
    log = (tmp_path / "server.log").open("w")
    env = dict(
        os.environ,
        FEDRECON_DATASET="synthetic",
        FEDRECON_CONFIG="smoke",
        FEDRECON_OUTPUT_DIR=str(tmp_path / "figures"),
    )
    server = subprocess.Popen(
        [sys.executable, *command],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60  # until the server listens
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start within 60 s"
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the kernel it started
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


def run_every_cell_if_classic(browser) -> None:
    """The classic Notebook opens a notebook without running it (Voila runs it): run every
    cell once its kernel is connected."""
    if ipywidgets_major() >= 8:
        return
    from selenium.webdriver.support.ui import WebDriverWait

    # The kernel connected and the widget extension listening for widgets, or the panel's
    # widgets would reach a page that cannot draw them.
    connected = (
        "const k = window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel;"
        " return !!(k && k.is_connected() && k.comm_manager"
        " && k.comm_manager.targets['jupyter.widget'])"
    )
    WebDriverWait(browser, SERVE_SECONDS).until(lambda b: b.execute_script(connected))
    browser.execute_script("Jupyter.notebook.execute_all_cells()")


def test_moving_a_slider_trains_a_new_run(notebook_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(notebook_url)
    run_every_cell_if_classic(browser)
    wait = WebDriverWait(browser, TRAIN_SECONDS)
    status = WebDriverWait(browser, SERVE_SECONDS).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".live-status"))
    )
    wait.until(lambda _: "Run 1" in status.text)
    # The rounds slider: ipywidgets 7 draws a jQuery UI handle, 8 a noUiSlider one; both
    # show the value in the slider's readout.
    rounds = "//div[contains(@class, 'widget-slider')][.//label[normalize-space()='rounds']]"
    handle_path = (
        f"{rounds}//*[contains(@class, 'ui-slider-handle') or contains(@class, 'noUi-handle')]"
    )
    handle = wait.until(expected_conditions.element_to_be_clickable((By.XPATH, handle_path)))
    readout = browser.find_element(By.XPATH, f"{rounds}//*[contains(@class, 'widget-readout')]")
    before = int(float(readout.text))
    first_figure = browser.find_element(By.CSS_SELECTOR, "img.widget-image").get_attribute("src")
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)
    try:
        wait.until(lambda _: "Run 2" in status.text)
    finally:
        browser.execute_script("arguments[0].scrollIntoView();", handle)
        browser.save_screenshot(str(tmp_path / "08_live_browser.png"))
    after = int(float(readout.text))
    assert after > before
    assert status.text.startswith(f"Run 2: {after} rounds of")
    runs = browser.find_elements(By.CSS_SELECTOR, ".live-runs tbody tr")
    assert len(runs) == 2 and f"rounds {after}" in runs[1].text
    figure = browser.find_element(By.CSS_SELECTOR, "img.widget-image").get_attribute("src")
    assert figure != first_figure  # the learning curves were redrawn
