"""The review page in a real headless Chromium: a proposal made by the agent's own refinement is shown with its
diff and metrics and accepted; a second proposal is rejected with a reason; an older version is rolled back to.
The page is reached through basic auth given in the address, as a browser user would."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlmodel import Session

from agent.corrections import record_corrections
from agent.evaluate import compare, score, split
from agent.loop import project_schema, refine
from service.predictor import Prompt, direct_predictor
from service.settings import AgentSettings
from service.store import db, repo
from service.store.models import AnnotationCreate, Proposal
from service.store.tasks import annotated_tasks
from tests.agent.conftest import CONFIG, CopyEngine, labeled
from tests.browser.conftest import Served

PROJECT = "1"
USER_PROMPT = "Classify the bank customer's request. <i>not markup</i> Answer with one intent."
REASON = "it drops the demonstrations that fixed the card cases"
WAIT_S = 60


def seed(db_url: str, engine: CopyEngine, cfg: AgentSettings) -> tuple[int, int, int]:
    """Through the store and the agent: 30 annotated tasks with corrections, the default prompt (v1), a user
    prompt (v2, active), and the agent's refinement of v2: a pending proposal with its evidence."""
    with Session(db.sql_engine(db_url)) as session:
        repo.upsert_project(session, PROJECT, CONFIG)
        schema = project_schema(session, PROJECT)
        default = repo.record_prompt(session, PROJECT, "Classify the request by intent.", "default")
        user = repo.record_prompt(session, PROJECT, USER_PROMPT, "user", author="ana", parent_id=default.id)
        user = repo.activate_prompt(session, user.id)
        for i, (text, label) in enumerate(labeled()[:30], start=1):
            annotation = repo.upsert_annotation(
                session, AnnotationCreate(id=1000 + i, project_id=PROJECT, task_id=i, choices={"intent": [label]})
            )
            task = {"id": i, "data": {"text": text}}
            record_corrections(session, engine, schema, PROJECT, annotation, task=task)
        outcome = refine(session, engine, PROJECT, "api", cfg)
        assert outcome.proposal is not None, outcome.candidates
        return default.id, user.id, outcome.proposal.id


def second_proposal(db_url: str, engine: CopyEngine, cfg: AgentSettings) -> int:
    """A pending proposal on the active version, its metrics from the agent's scoring on the validation split."""
    with Session(db.sql_engine(db_url)) as session:
        schema = project_schema(session, PROJECT)
        active = repo.active_prompt(session, PROJECT)
        _, validation = split(annotated_tasks(session, PROJECT, schema), cfg.validation_fraction, cfg.seed)
        hidden = {t.task_id for t in validation}
        predict = direct_predictor(engine)
        text = "Classify the request by intent. A lost or stolen debit card is card."
        before = score(predict, engine, schema, Prompt.of(active), validation, hidden)
        after = score(predict, engine, schema, Prompt(text), validation, hidden)
        metrics = compare(before, after, validation, cfg.alpha, {"tokens": 0, "seconds": after.seconds}).metrics
        proposal = Proposal(
            project_id=PROJECT, base_version_id=active.id, strategy="definitions", text=text, metrics=metrics
        )
        session.add(proposal)
        session.commit()
        return proposal.id


def before_after(text: str) -> tuple[float, float]:
    """(before, after) as fractions from the page's "31.3% → 87.5% (+56.3 pts)"."""
    match = re.match(r"([\d.]+)% → ([\d.]+)%", text)
    assert match, text
    return float(match.group(1)) / 100, float(match.group(2)) / 100


def active_row(driver: WebDriver) -> str | None:
    """The active history row's id, read in one script call: the table may be re-rendered between two calls."""
    ids = driver.execute_script(
        "return Array.from(document.querySelectorAll('#history tbody tr.active'), r => r.dataset.id);"
    )
    return ids[0] if len(ids) == 1 else None


def test_review_page_accept_reject_and_rollback(served: Served, browser: WebDriver, db_url: str) -> None:
    engine = CopyEngine()
    cfg = AgentSettings(strategies=["retrieval", "definitions"], demos_k=4, validation_fraction=0.5)
    default_id, user_id, proposal_id = seed(db_url, engine, cfg)
    api = httpx.Client(base_url=served.url, auth=served.auth, timeout=30)
    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))  # re-rendered lists

    browser.get(served.page(f"/review/{PROJECT}"))
    card = wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f'#pending article.proposal[data-id="{proposal_id}"]')
    )[0]

    # the diff, colored, and the evidence as the API has it
    added = [s.text for s in card.find_elements(By.CSS_SELECTOR, "pre.diff span.add")]
    kept = [s.text for s in card.find_elements(By.CSS_SELECTOR, "pre.diff span.ctx")]
    assert any("{examples}" in line for line in added)  # the retrieval template's slot for demonstrations
    pool = card.find_element(By.CSS_SELECTOR, ".pool-summary").text
    assert pool == "0 → 30 examples (30 added, 0 removed), 4 retrieved per task; labels covered 0 → 3"
    assert not any("[task " in line for line in added)  # the pool is summarised, not dumped into the diff
    assert any(USER_PROMPT in line for line in kept)
    green = card.find_element(By.CSS_SELECTOR, "pre.diff span.add").value_of_css_property("background-color")
    assert green == "rgba(230, 255, 236, 1)"
    m = api.get(f"/proposals/{proposal_id}").json()["metrics"]
    for row, key in (("tr.metric-accuracy", "accuracy"), ("tr.metric-macro-f1", "macro_f1")):
        shown = before_after(card.find_element(By.CSS_SELECTOR, f"{row} td").text)
        assert shown == pytest.approx((m[key]["before"], m[key]["after"]), abs=0.0006)
    assert m["accuracy"]["after"] > m["accuracy"]["before"]
    assert m["task_f1"] == m["accuracy"]  # single choice: F1 per task is exact match, so no extra row
    assert not card.find_elements(By.CSS_SELECTOR, "tr.metric-task-f1")
    significance = card.find_element(By.CSS_SELECTOR, "tr.metric-p td").text
    assert significance.startswith("significant: p = ") and "McNemar" in significance
    fixes = card.find_element(By.CSS_SELECTOR, "tr.metric-fixes td").text
    assert fixes == f"{len(m['fixes'])} fixed, {len(m['breaks'])} broken" and m["fixes"]
    assert len(card.find_elements(By.CSS_SELECTOR, "details.fixes tbody tr")) == len(m["fixes"])
    assert len(card.find_elements(By.CSS_SELECTOR, "details.per-label tbody tr")) == len(m["per_label"])
    assert f"{m['cost']['tokens']} tokens" in card.find_element(By.CSS_SELECTOR, "tr.metric-cost td").text

    # history: v2 active; its text is shown as text, not markup
    assert active_row(browser) == str(user_id)
    browser.find_element(By.CSS_SELECTOR, f'#history tr[data-id="{user_id}"] button.view').click()
    shown = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#version-view pre.prompt"))[0]
    assert shown.text == USER_PROMPT and not shown.find_elements(By.TAG_NAME, "i")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#version-view pre.diff span.add"))

    # accept: the page shows the new active version, and the API agrees
    card.find_element(By.CSS_SELECTOR, "button.accept").click()
    wait.until(lambda d: "accepted" in d.find_element(By.ID, "message").text)
    history = api.get(f"/projects/{PROJECT}/prompts").json()
    (active,) = [v for v in history if v["is_active"]]
    assert active["source"] == "agent" and active["parent_id"] == user_id and active["id"] not in (default_id, user_id)
    wait.until(lambda d: active_row(d) == str(active["id"]))
    message = browser.find_element(By.ID, "message").text
    assert f"version #{active['id']} is now active ({active['model_version']})" in message
    assert api.get(f"/proposals/{proposal_id}").json()["status"] == "accepted"
    assert browser.find_element(By.CSS_SELECTOR, f'#decided tr[data-id="{proposal_id}"] .status').text == "accepted"
    assert "No proposal is waiting" in browser.find_element(By.ID, "pending").text

    # a second proposal: rejecting needs a reason, and the reason is kept
    second = second_proposal(db_url, engine, cfg)
    browser.refresh()
    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#pending article.proposal[data-id="{second}"]'))[0]
    assert any(
        line.startswith("+Classify the request by intent. A lost")
        for line in [s.text for s in card.find_elements(By.CSS_SELECTOR, "pre.diff span.add")]
    )
    removed = card.find_elements(By.CSS_SELECTOR, "pre.diff span.del")
    assert card.find_element(By.CSS_SELECTOR, ".pool-summary").text.startswith("30 → 0 examples (0 added, 30 removed)")
    assert removed[0].value_of_css_property("background-color") == "rgba(255, 235, 233, 1)"
    card.find_element(By.CSS_SELECTOR, "button.reject").click()
    card.find_element(By.CSS_SELECTOR, "button.confirm-reject").click()
    assert card.find_element(By.CSS_SELECTOR, ".card-status").text == "A rejection needs a reason."
    assert api.get(f"/proposals/{second}").json()["status"] == "pending"
    card.find_element(By.CSS_SELECTOR, "input.reason").send_keys(REASON)
    card.find_element(By.CSS_SELECTOR, "button.confirm-reject").click()
    row = f'#decided tr[data-id="{second}"]'
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} .status"))
    assert browser.find_element(By.CSS_SELECTOR, f"{row} .status").text == "rejected"
    assert browser.find_element(By.CSS_SELECTOR, f"{row} .reason").text == REASON
    decided = api.get(f"/proposals/{second}").json()
    assert (decided["status"], decided["reason"], decided["decided_by"]) == ("rejected", REASON, served.auth[0])
    assert active_row(browser) == str(active["id"])  # rejecting changes no prompt

    # roll back to the user's version
    browser.find_element(By.CSS_SELECTOR, f'#history tr[data-id="{user_id}"] button.activate').click()
    assert active_row(browser) == str(active["id"])  # nothing happens before the confirmation
    browser.find_element(By.CSS_SELECTOR, f'#history tr[data-id="{user_id}"] button.confirm-activate').click()
    wait.until(lambda d: active_row(d) == str(user_id))
    assert [v["id"] for v in api.get(f"/projects/{PROJECT}/prompts").json() if v["is_active"]] == [user_id]

    # nothing loaded from elsewhere, no script error or policy violation
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    where = {(u.scheme, u.hostname, u.port) for u in map(urlsplit, [served.url, *resources])}
    assert len(resources) >= 6 and len(where) == 1, resources
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
