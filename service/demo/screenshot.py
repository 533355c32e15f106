"""Label Studio's labeling screen in headless Chromium (Debian's chromium + chromium-driver): a PNG of it.

Selenium drives the system's chromedriver: nothing is downloaded (no Selenium Manager, no browser fetch).
`scripts/install_test_deps.sh` installs both Debian packages. `chromium()`, `log_in()` and
`open_labeling()` are also what browser tests of the labeling screen build on.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.demo.labelstudio import Credentials

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
# The labeling screen has drawn a prediction: a chosen label (not a Data Manager row) and the dialogue.
PREDICTION_SHOWN = """
const checked = document.querySelectorAll("input.ant-checkbox-input:checked, input.ant-radio-input:checked");
const dialogue = document.querySelector('[class*="paragraphs"], [class*="Paragraphs"], [class*="phrase"]');
return checked.length > 0 && dialogue !== null;
"""


@contextmanager
def chromium(timeout: float = 180.0) -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh profile, quit and removed afterwards."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise RuntimeError("the browser needs selenium: pip install -e '.[dev]'") from None
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).exists():
            raise RuntimeError(f"{binary} is missing: scripts/install_test_deps.sh installs chromium, chromium-driver")
    profile = tempfile.mkdtemp(prefix="prompter-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(timeout)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: Any, timeout: float = 180.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout)


def log_in(driver: Any, ls_url: str, credentials: Credentials, timeout: float = 180.0) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{ls_url}/user/login/")
    wait(driver, timeout).until(lambda d: d.find_elements(By.NAME, "email"))
    driver.find_element(By.NAME, "email").send_keys(credentials.username)
    driver.find_element(By.NAME, "password").send_keys(credentials.password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
    wait(driver, timeout).until(lambda d: "/user/login" not in d.current_url)


def open_labeling(driver: Any, page_url: str, failure_png: Path, timeout: float = 180.0) -> None:
    """Open a task's labeling screen and wait until its prediction is drawn (else a PNG of what was)."""
    from selenium.common.exceptions import TimeoutException

    driver.get(page_url)
    try:
        wait(driver, timeout).until(lambda d: d.execute_script(PREDICTION_SHOWN))
    except TimeoutException:
        driver.save_screenshot(str(failure_png))
        raise RuntimeError(f"the prediction did not render within {timeout:.0f} s; the page: {failure_png}") from None


# Counts the labeling screen's interactive-annotating requests (started, finished) as they go by.
_WATCH_INTERACTIVE = """
if (!window.__prompterAsks) {
  window.__prompterAsks = {started: 0, done: 0};
  const original = window.fetch;
  window.fetch = function (...args) {
    const url = String((args[0] && args[0].url) || args[0]);
    const asking = url.includes("interactive-annotating");
    if (asking) window.__prompterAsks.started++;
    const answer = original.apply(this, args);
    return asking ? answer.finally(() => window.__prompterAsks.done++) : answer;
  };
}
return window.__prompterAsks;
"""
_TEXT_REGIONS = """
return Array.from(document.querySelectorAll(`[name^='${arguments[0]}:'][data-testid=htx-textbox-content]`))
  .map(e => e.textContent.trim());
"""


def text_regions(driver: Any, name: str) -> list[str]:
    """The texts a TextArea named `name` shows (its regions, not the input box)."""
    return driver.execute_script(_TEXT_REGIONS, name)


def ask(driver: Any, prompt: str, prompt_name: str = "prompt", timeout: float = 300.0) -> None:
    """What an annotator does in Label Studio 1.23: Auto-Annotation on, the pencil on the Prompt box (the
    prompt in force is filled in), type, Shift+Enter. Returns once the interactive answer is drawn."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    toggle = driver.find_element(By.CSS_SELECTOR, "[data-testid=bottombar-auto-annotation-toggle]")
    if not toggle.is_selected():
        driver.execute_script("arguments[0].click()", toggle)
    shown = driver.find_element(By.CSS_SELECTOR, f"[name^='{prompt_name}:'][data-testid=htx-textbox-content]")
    edit = shown.find_element(By.XPATH, "./ancestor::*[.//button][1]//button[@aria-label='Edit Region']")
    driver.execute_script("arguments[0].click()", edit)
    box = wait(driver, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, f"textarea[name^='{prompt_name}:']"))
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(prompt)
    before = driver.execute_script(_WATCH_INTERACTIVE)["started"]
    box.send_keys(Keys.SHIFT, Keys.ENTER)

    def answered(d: Any) -> bool:
        asks = d.execute_script(_WATCH_INTERACTIVE)
        return (
            asks["started"] > before
            and asks["done"] == asks["started"]
            and text_regions(d, prompt_name) == [prompt.strip()]
            and bool(d.execute_script(PREDICTION_SHOWN))
        )

    wait(driver, timeout).until(answered)


def labeling_screenshot(
    ls_url: str,
    credentials: Credentials,
    page_url: str,
    path: Path,
    prompt: str | None = None,
    response_name: str = "response",
    timeout: float = 180.0,
) -> float:
    """Log into Label Studio, open `page_url` (a task), wait for its prediction to render, save `path`.

    With `prompt`, first ask with it (Shift+Enter) and wait for the model's response in `response_name`.
    Returns the seconds it took; RuntimeError with what is missing when the browser cannot be driven.
    """
    try:
        from selenium.common.exceptions import WebDriverException
    except ImportError:
        raise RuntimeError("the screenshot needs selenium: pip install -e '.[dev]'") from None

    started = time.monotonic()
    try:
        with chromium(timeout) as driver:
            log_in(driver, ls_url, credentials, timeout)
            open_labeling(driver, page_url, path.with_suffix(".timeout.png"), timeout)
            if prompt:
                ask(driver, prompt, timeout=timeout + 120)
                wait(driver, timeout).until(lambda d: any(text_regions(d, response_name)))
            time.sleep(2)  # let the last layout pass and fonts settle
            path.parent.mkdir(parents=True, exist_ok=True)
            if not driver.save_screenshot(str(path)):
                raise RuntimeError(f"Chromium could not save {path}")
    except WebDriverException as exc:
        raise RuntimeError(f"headless Chromium failed: {exc.msg}") from None
    return time.monotonic() - started
