"""The review page from a fresh demo project to an accepted proposal, in headless Chromium, without a reload:
Label Studio's /setup and annotation webhooks arrive over HTTP, the page counts them, "Refine now" shows the
run's progress, the proposal's evidence and pool summary appear, a named reviewer accepts it. Then the same
page at 420 px wide, without horizontal scrolling. Screenshots go to docs/ when PROMPTER_SCREENSHOTS is set."""

from __future__ import annotations

import json
import os
import re
import time
from importlib import resources
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from service.api import project_links
from service.settings import settings
from tests.agent.conftest import CopyEngine
from tests.browser.conftest import Served

PROJECT = "1"
TITLE = "Finance Support Chats"
LS = "http://ls.example:8080"
TOKEN = "f" * 40
REVIEWER = "Dana from labeling"
WAIT_S = 90
SHOTS = Path(os.environ.get("PROMPTER_SCREENSHOTS", "")) if os.environ.get("PROMPTER_SCREENSHOTS") else None


def shot(driver: WebDriver, name: str, width: int = 1400, height: int = 2000) -> None:
    """The top of the page, ``width`` wide, into $PROMPTER_SCREENSHOTS (docs/ for the README's pictures)."""
    if SHOTS is None:
        return
    size = driver.get_window_size()
    driver.set_window_size(width, height)
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    driver.save_screenshot(str(SHOTS / name))
    driver.set_window_size(size["width"], size["height"])


class SlowCopyEngine(CopyEngine):
    """The copying stub, a little slow, so a refinement runs long enough for the page to show its progress."""

    def decide(self, queries, label_set):
        time.sleep(0.2)
        return super().decide(queries, label_set)


@pytest.fixture
def tiny_engine() -> SlowCopyEngine:  # the app in `served` runs on this engine
    return SlowCopyEngine()


def sample() -> tuple[str, list[dict], dict[str, list[str]]]:
    data = resources.files("service") / "sample_data"
    chats = json.loads((data / "finance_chats.json").read_text())
    answers = json.loads((data / "finance_chats_answers.json").read_text())
    return (data / "finance_chats.xml").read_text(), chats, answers


def webhook(config: str, task_id: int, task: dict, intents: list[str]) -> dict:
    """An ANNOTATION_CREATED as Label Studio 1.23 sends it (the fields Prompter reads)."""
    return {
        "action": "ANNOTATION_CREATED",
        "annotation": {
            "id": 500 + task_id,
            "task": task_id,
            "project": int(PROJECT),
            "completed_by": 1,
            "result": [{"from_name": "intent", "to_name": "chat", "type": "choices", "value": {"choices": intents}}],
        },
        "task": {"id": task_id, "project": int(PROJECT), "data": task["data"]},
        "project": {"id": int(PROJECT), "title": TITLE, "label_config": config},
    }


def text(driver: WebDriver, selector: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""


def no_sideways_scroll(driver: WebDriver) -> bool:
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def test_fresh_project_to_an_accepted_proposal(
    served: Served, browser: WebDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings.agent, "disagreements_trigger", 40)  # "Refine now" starts it, not the webhooks
    # the strategies that change what the stub model reads (the weights strategy would not help a stub that
    # copies the last demonstration, and would only make the run longer)
    monkeypatch.setattr(settings.agent, "strategies", ["retrieval", "fixed_demos", "definitions", "rewrite"])
    monkeypatch.setattr(project_links, "_links", {})
    monkeypatch.setattr(project_links, "fetch_title_soon", lambda *args: None)  # the webhook names it
    config, chats, answers = sample()
    api = httpx.Client(base_url=served.url, auth=served.auth, timeout=60)
    setup = {"project": f"{PROJECT}.1700000000", "schema": config, "hostname": LS, "access_token": TOKEN}
    assert api.post("/setup", json=setup).status_code == 200
    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))

    # fresh: nothing annotated, nothing proposed, the Label Studio project one click away
    browser.get(served.page(f"/review/{PROJECT}"))
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    wait.until(lambda d: "0 annotations on 0 tasks" in text(d, "#activity"))
    assert "0 of 40 new disagreements start the next refinement" in text(browser, "#activity")
    link = browser.find_element(By.CSS_SELECTOR, "#project-title a.ls-link")
    assert link.get_attribute("href") == f"{LS}/projects/{PROJECT}/data"
    assert "No proposal is waiting for review." in text(browser, "#pending")
    shot(browser, "review-fresh.png", height=900)

    # the annotator labels all 20 chats in Label Studio: the page counts them without a reload
    for task_id, chat in enumerate(chats, start=1):
        body = webhook(config, task_id, chat, answers[chat["data"]["source_ids"]])
        assert api.post("/webhook", json=body).status_code == 200
    activity = None
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:  # corrections are recorded by the agent's worker, after the webhook
        activity = api.get(f"/projects/{PROJECT}/activity").json()
        if activity["corrections"] == 20:
            break
        time.sleep(0.2)
    assert activity["corrections"] == 20 and activity["disagreements"] > 0
    wait.until(lambda d: "20 annotations on 20 tasks" in text(d, "#activity"))
    wait.until(lambda d: f"{activity['disagreements']} disagreements with the model" in text(d, "#activity"))
    assert text(browser, "#project-title").startswith(TITLE)
    shown = f"{activity['disagreements_since_refinement']} of 40 new disagreements"
    assert shown in text(browser, "#activity")

    # Refine now: disabled while it runs, the progress beside it
    browser.find_element(By.ID, "refine").click()
    wait.until(lambda d: re.search(r"is running: .+, \d+ of \d+ task scorings done", text(d, "#refine-status")))
    assert browser.find_element(By.ID, "refine").get_attribute("disabled") is not None
    progress = text(browser, "#refine-status")
    assert "5-fold cross-validation" in progress, progress
    shot(browser, "review-running.png", height=900)

    # the proposal: the figures that prove it, the pool summarised, task ids linked to Label Studio
    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pending article.proposal"))[0]
    proposal = api.get(f"/proposals/{card.get_attribute('data-id')}").json()
    m = proposal["metrics"]
    assert proposal["strategy"] == "retrieval" and m["significant"] and m["validation_tasks"] == 20
    significance = card.find_element(By.CSS_SELECTOR, "tr.metric-p td").text
    assert re.fullmatch(
        r"significant: p = (\d\.\d+|\d\.\de-\d+) \(exact sign test, one-sided.*α = 0\.05\)", significance
    )
    p_shown = float(re.search(r"p = (\S+)", significance).group(1))
    assert p_shown == pytest.approx(m["p_value"], rel=0.06)
    validation = card.find_element(By.CSS_SELECTOR, "tr.metric-validation td").text
    assert validation.startswith("20 annotated tasks, 5-fold cross-validation")
    pool = card.find_element(By.CSS_SELECTOR, ".pool-summary").text
    assert pool == "0 → 20 examples (20 added, 0 removed), 8 retrieved per task; labels covered 0 → 8"
    card.find_element(By.CSS_SELECTOR, "details.pool-added summary").click()
    examples = card.find_elements(By.CSS_SELECTOR, "details.pool-added li")
    assert len(examples) == 20 and examples[0].find_element(By.TAG_NAME, "a").text == "#1"
    tokens = card.find_element(By.CSS_SELECTOR, "tr.metric-tokens td").text
    assert tokens == f"{m['prompt_tokens']['before']:g} → {m['prompt_tokens']['after']:g}"
    assert "→" in card.find_element(By.CSS_SELECTOR, "tr.metric-latency td").text
    fix = card.find_element(By.CSS_SELECTOR, "details.fixes tbody tr a")
    assert fix.get_attribute("href") == f"{LS}/projects/{PROJECT}/data?task={m['fixes'][0]['task_id']}"
    assert not any("[task " in s.text for s in card.find_elements(By.CSS_SELECTOR, "pre.diff span"))
    status = text(browser, "#refine-status")
    assert status.startswith("Refinement #") and f"proposal #{proposal['id']}" in status
    assert browser.find_element(By.ID, "refine").get_attribute("disabled") is None
    run_log = browser.find_elements(By.CSS_SELECTOR, "#refinements details.run-log li")
    assert len(run_log) == len(settings.agent.strategies)
    shot(browser, "review-proposal.png")

    # a named reviewer accepts: the decision records the name, the chart gains the new version
    browser.find_element(By.ID, "reviewer").send_keys(REVIEWER)
    card.find_element(By.CSS_SELECTOR, "button.accept").click()
    wait.until(lambda d: "accepted" in text(d, "#message"))
    row = f'#decided tr[data-id="{proposal["id"]}"]'
    wait.until(lambda d: text(d, f"{row} .decided-by") == REVIEWER)
    assert text(browser, f"{row} .status") == "accepted"
    assert api.get(f"/proposals/{proposal['id']}").json()["decided_by"] == REVIEWER
    assert len(browser.find_elements(By.CSS_SELECTOR, "#accuracy-chart circle")) == 2
    assert "No proposal is waiting for review." in text(browser, "#pending")
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    assert TOKEN not in browser.page_source
    shot(browser, "review-accepted.png")


def test_narrow_screen_has_no_sideways_scroll(served: Served, browser: WebDriver, monkeypatch) -> None:
    """At 420 px the page with a pending proposal fits: no horizontal scroll, Accept on screen."""
    monkeypatch.setattr(settings.agent, "disagreements_trigger", 40)
    config, chats, answers = sample()
    api = httpx.Client(base_url=served.url, auth=served.auth, timeout=60)
    setup = {"project": f"{PROJECT}.1700000000", "schema": config, "hostname": LS}
    assert api.post("/setup", json=setup).status_code == 200
    for task_id, chat in enumerate(chats, start=1):
        assert api.post("/webhook", json=webhook(config, task_id, chat, answers[chat["data"]["source_ids"]])).is_success
    deadline = time.monotonic() + WAIT_S
    while api.get(f"/projects/{PROJECT}/activity").json()["corrections"] < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    api.post(f"/projects/{PROJECT}/refine").raise_for_status()
    while api.get(f"/projects/{PROJECT}/activity").json()["running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert api.get(f"/projects/{PROJECT}/proposals", params={"status": "pending"}).json()

    browser.set_window_size(420, 1000)
    browser.get(served.page(f"/review/{PROJECT}"))
    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pending article.proposal button.accept"))
    shot(browser, "review-420.png", width=420, height=1600)
    width = browser.execute_script("return window.innerWidth")
    assert width <= 420
    assert no_sideways_scroll(browser), browser.execute_script("return document.documentElement.scrollWidth")
    right = browser.execute_script(
        "return document.querySelector('#pending button.accept').getBoundingClientRect().right"
    )
    assert right <= width
    for details in browser.find_elements(By.CSS_SELECTOR, "#pending details"):  # opened, still no sideways scroll
        if not details.get_attribute("open"):
            details.find_element(By.TAG_NAME, "summary").click()
    assert no_sideways_scroll(browser), browser.execute_script("return document.documentElement.scrollWidth")


def test_too_few_annotations_say_how_many_more_would_prove_the_gain(
    served: Served, browser: WebDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four chats, two intents: at most four fixes, p >= 1/16; the page says how many more would prove it."""
    monkeypatch.setattr(settings.agent, "disagreements_trigger", 40)
    monkeypatch.setattr(settings.agent, "strategies", ["retrieval"])
    config, chats, answers = sample()
    api = httpx.Client(base_url=served.url, auth=served.auth, timeout=60)
    assert api.post("/setup", json={"project": f"{PROJECT}.1", "schema": config}).status_code == 200
    picked = [chats[i] for i in (1, 9, 2, 10)]  # CheckAccountBalance twice, CheckPaymentStatus twice
    for task_id, chat in enumerate(picked, start=1):
        assert api.post("/webhook", json=webhook(config, task_id, chat, answers[chat["data"]["source_ids"]])).is_success
    deadline = time.monotonic() + WAIT_S
    while api.get(f"/projects/{PROJECT}/activity").json()["corrections"] < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    browser.get(served.page(f"/review/{PROJECT}"))
    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda d: "4 annotations on 4 tasks" in text(d, "#activity"))
    browser.find_element(By.ID, "refine").click()
    wait.until(lambda d: text(d, "#pending .tasks-needed"))
    [run] = api.get(f"/projects/{PROJECT}/refinements").json()
    [candidate] = run["summary"]["candidates"]
    assert candidate["verdict"] == "not significant" and candidate["fixes"] > candidate["breaks"], candidate
    needed = run["summary"]["tasks_needed"]
    assert needed == candidate["tasks_needed"] > 4
    note = text(browser, "#pending .tasks-needed")
    assert "validated 4 annotated tasks (4-fold)" in note, note
    assert f"about {needed - 4} more annotated tasks ({needed} in all)" in note, note
    outcome = text(browser, f'#refinements tr[data-id="{run["id"]}"] .outcome')
    assert outcome.startswith(f"no proposal: about {needed - 4} more annotated tasks"), outcome
    assert api.get(f"/projects/{PROJECT}/proposals").json() == []
