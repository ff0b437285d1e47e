"""The annotation app in a real headless Chromium: rate three images by clicking, draw a mask
stroke, reload (the annotator resumes at image 4), export, check the files.

Skipped with a reason when Chromium or its driver is missing, except where
``GAZE_REQUIRE_BROWSER=1`` (``.ci/run`` sets it after installing them): there it fails.
``GAZE_SCREENSHOT_DIR=examples python -m pytest tests/annotate/test_browser.py`` also writes
screenshots of both pages (``examples/annotate_rate.png``, ``examples/annotate_mask.png``).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gaze.annotate.app import create_app
from gaze.annotate.cli import files_folder
from gaze.annotate.cli import main as annotate_main
from gaze.annotate.store import Store
from tests.annotate.helpers import tiny_gradia_study

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
REQUIRED = os.environ.get("GAZE_REQUIRE_BROWSER") == "1"
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")

pytestmark = pytest.mark.usefixtures("one_thread")


def browser(tmp_path: Path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM and CHROMEDRIVER):
        message = "no Chromium: apt-get install chromium chromium-driver (Debian)"
        if REQUIRED:
            pytest.fail(message + " — GAZE_REQUIRE_BROWSER=1 needs it")
        pytest.skip(message)
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def prepared_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("study")
    tiny_gradia_study(base, image_size=(150, 200))
    return base / "gradia" / "annotations" / "annotations.sqlite"


def test_rate_draw_reload_export_in_chromium(prepared_run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait
    from werkzeug.serving import make_server

    db = prepared_run
    server = make_server("127.0.0.1", 0, create_app(db, files_folder(db)), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    driver = browser(tmp_path)
    shots = os.environ.get("GAZE_SCREENSHOT_DIR")
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(url + "/")
        driver.find_element(By.ID, "name").send_keys("ann")
        driver.find_element(By.ID, "start").click()
        for k in range(3):
            wait.until(until.text_to_be_present_in_element((By.TAG_NAME, "h1"), f"Image {k + 1} of 6"))
            submit = driver.find_element(By.ID, "submit")
            assert not submit.is_enabled()  # nothing pre-selected
            if k == 0 and shots:
                driver.find_element(By.CSS_SELECTOR, 'input[name="q1_0"][value="yes"]').click()
                driver.save_screenshot(str(Path(shots) / "annotate_rate.png"))
            driver.find_element(By.CSS_SELECTOR, f'input[name="q1_0"][value="{"yes" if k != 1 else "no"}"]').click()
            driver.find_element(By.CSS_SELECTOR, 'input[name="q2_0"][value="no"]').click()
            assert not submit.is_enabled()
            driver.find_element(By.CSS_SELECTOR, f'input[name="q3_0"][value="{5 - k}"]').click()
            assert submit.is_enabled()
            submit.click()
        wait.until(until.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Image 4 of 6"))

        driver.get(url + "/mask/1")
        canvas = wait.until(until.presence_of_element_located((By.ID, "view")))
        ActionChains(driver).move_to_element_with_offset(canvas, -80, -10).click_and_hold() \
            .move_by_offset(60, 10).move_by_offset(60, 10).release().perform()
        driver.find_element(By.ID, "save").click()
        wait.until(until.text_to_be_present_in_element((By.ID, "status"), "saved"))
        if shots:
            driver.save_screenshot(str(Path(shots) / "annotate_mask.png"))

        driver.get(url + "/")  # a new visit resumes at the first unrated image
        wait.until(until.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Image 4 of 6"))
    finally:
        driver.quit()
        server.shutdown()

    store = Store(db)
    masks = store.latest_masks("ann")
    assert len(masks) == 1 and masks[0]["item"] == store.item_at(1).item
    with Image.open(__import__("io").BytesIO(masks[0]["png"])) as stored:
        drawn = np.asarray(stored) > 0
    assert drawn.shape == (store.item_at(1).height, store.item_at(1).width) and 0.002 < drawn.mean() < 0.5  # one brush stroke
    out = tmp_path / "export"
    assert annotate_main(["export", "--db", str(db), "--out", str(out)]) == 0
    ratings = json.loads((out / "reasonablity_val.json").read_text())
    assert len(ratings) == 3 and ratings[store.item_at(1).item].startswith("Unreasonable")
    assert (out / "masks" / f"{store.item_at(1).item}.png").is_file()
    assert len(json.loads((out / "attention_val_update.json").read_text())) == 1
