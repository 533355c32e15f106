"""The review page shows `prompter eval`'s results: the history's accuracy / macro-F1 / ECE per version, and a
version's latest evaluation (per-label scores, confusion matrix, reliability, accuracy vs coverage) when viewed."""

from __future__ import annotations

import json
from pathlib import Path

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from service.offline import eval as evaluate
from tests.browser.conftest import Served
from tests.offline.conftest import LABELS, texts, write_jsonl

WAIT_S = 60


def run_eval(engine, tmp_path: Path) -> dict:
    """`prompter eval` in-process on the served app's database: two prompts scored on 9 labeled tasks."""
    data = write_jsonl(tmp_path / "gold.jsonl", texts(9))
    out = tmp_path / "eval.json"
    argv = ["--input", str(data), "--labels", ",".join(LABELS), "--target-accuracy", "0.3"]
    argv += ["--prompt", "Product: {text}", "--prompt", "Topic of: {text}", "--json", str(out), "--no-report"]
    assert evaluate.main([*argv, "--no-progress"], engine) == 0
    return json.loads(out.read_text())


def cells(driver: WebDriver, selector: str) -> list[list[str]]:
    """The text of each row's cells, read in one script call (the history may re-render between two calls)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), r => Array.from(r.cells, c => c.textContent));",
        selector,
    )


def test_review_page_shows_evaluations(served: Served, browser: WebDriver, tiny_engine, tmp_path: Path) -> None:
    report = run_eval(tiny_engine, tmp_path)
    project = report["project_id"]
    evaluated = {run["prompt_version_id"]: run for run in report["versions"]}
    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))

    browser.get(served.page(f"/review/{project}"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#history tbody tr"))
    history = {
        row[0]: row
        for row in browser.execute_script(
            "return Array.from(document.querySelectorAll('#history tbody tr'), r => [r.dataset.id,"
            " r.querySelector('.eval-accuracy').textContent, r.querySelector('.eval-macro-f1').textContent,"
            " r.querySelector('.eval-ece').textContent]);"
        )
    }
    assert len(history) == 3  # the default prompt, never evaluated, and the two scored prompts
    for version_id, row in history.items():
        run = evaluated.get(int(version_id))
        if run is None:
            assert row[1:] == ["", "", ""]
        else:
            assert row[1:] == [f"{100 * run['accuracy']:.1f}%", f"{100 * run['macro_f1']:.1f}%", f"{run['ece']:.3f}"]

    version_id, run = next(iter(evaluated.items()))
    browser.find_element(By.CSS_SELECTOR, f'#history tr[data-id="{version_id}"] button.view').click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#version-view details.eval-per-label tbody tr"))
    view = browser.find_element(By.ID, "version-view")
    assert view.find_element(By.CSS_SELECTOR, "tr.eval-accuracy td").text == f"{100 * run['accuracy']:.1f}%"
    assert view.find_element(By.CSS_SELECTOR, "tr.eval-tasks td").text == "9"
    per_label = {row[0]: row[1:] for row in cells(browser, "#version-view details.eval-per-label tbody tr")}
    assert set(per_label) == set(LABELS)
    for label, s in run["per_label"].items():
        expected = [f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"])]
        assert per_label[label] == [*expected, str(s["predicted"])]
    matrix = [[int(c) for c in row[1:]] for row in cells(browser, "#version-view table.confusion tbody tr")]
    assert matrix == run["confusion"]["matrix"]
    bins = [b for b in run["reliability"] if b["count"]]
    assert len(view.find_elements(By.CSS_SELECTOR, "svg.reliability circle.dot")) == len(bins)
    assert len(cells(browser, "#version-view .eval-reliability tbody tr")) == len(bins)
    assert view.find_elements(By.CSS_SELECTOR, "svg.coverage polyline.curve")
    assert cells(browser, "#version-view .eval-coverage tbody tr")[0][0] == "100.0% (9 tasks)"

    default_id = next(v for v in history if int(v) not in evaluated)
    browser.find_element(By.CSS_SELECTOR, f'#history tr[data-id="{default_id}"] button.view').click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#version-view .eval-none"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#version-view .eval-per-label")

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]  # no script error, no CSP violation
    assert errors == [], errors
