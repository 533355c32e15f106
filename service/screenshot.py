"""A PNG of Label Studio's labeling screen, taken in headless Chromium (Debian's chromium + chromium-driver).

Selenium drives the system's chromedriver: nothing is downloaded (no Selenium Manager, no browser fetch).
`scripts/install_test_deps.sh` installs both Debian packages.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from service.labelstudio import Credentials

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,1300",
]
# The labeling screen has drawn the prediction: a chosen intent and the dialogue are on the page.
_PREDICTION_SHOWN = """
const checked = document.querySelectorAll('input[type=checkbox]:checked, input[type=radio]:checked');
const dialogue = document.querySelector('[class*="paragraphs"], [class*="Paragraphs"], [class*="phrase"]');
return checked.length > 0 && dialogue !== null;
"""


def labeling_screenshot(
    ls_url: str, credentials: Credentials, page_url: str, path: Path, timeout: float = 180.0
) -> float:
    """Log into Label Studio, open `page_url` (a task), wait for its prediction to render, save `path`.

    Returns the seconds it took; RuntimeError with what is missing when the browser cannot be driven.
    """
    try:
        from selenium import webdriver
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        raise RuntimeError("the screenshot needs selenium: pip install -e '.[dev]'") from None
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).exists():
            raise RuntimeError(f"{binary} is missing: scripts/install_test_deps.sh installs chromium, chromium-driver")

    started = time.monotonic()
    profile = tempfile.mkdtemp(prefix="prompter-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(timeout)
        wait = WebDriverWait(driver, timeout)
        driver.get(f"{ls_url}/user/login/")
        wait.until(lambda d: d.find_elements(By.NAME, "email"))
        driver.find_element(By.NAME, "email").send_keys(credentials.username)
        driver.find_element(By.NAME, "password").send_keys(credentials.password)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
        wait.until(lambda d: "/user/login" not in d.current_url)
        driver.get(page_url)
        try:
            wait.until(lambda d: d.execute_script(_PREDICTION_SHOWN))
        except TimeoutException:
            failed = path.with_suffix(".timeout.png")
            driver.save_screenshot(str(failed))
            raise RuntimeError(f"the prediction did not render within {timeout:.0f} s; the page: {failed}") from None
        time.sleep(2)  # let the last layout pass and fonts settle
        path.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(path)):
            raise RuntimeError(f"Chromium could not save {path}")
    except WebDriverException as exc:
        raise RuntimeError(f"headless Chromium failed: {exc.msg}") from None
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return time.monotonic() - started
