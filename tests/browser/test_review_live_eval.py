"""The review page updates as live evaluations arrive, in headless Chromium, without a reload: annotations come by
webhook, an annotator types a prompt at /predict, its evaluation against the active version appears in the
history, flagged because it beats the active one by the McNemar rule; a reviewer makes it active, and /predict
answers with its model version from then on. The copying stub engine, the real store and HTTP."""

from __future__ import annotations

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlmodel import Session

from service.demonstrations import compose, pool_from_tasks
from service.labeling import parse_config
from service.settings import settings
from service.store import db, repo
from service.store.tasks import annotated_tasks
from tests.agent.conftest import CopyEngine, labeled
from tests.browser.conftest import Served
from tests.browser.test_review_flow import SHOTS

PROJECT = "1"
WAIT_S = 90
CONFIG = """<View>
  <Text name="text" value="$text"/>
  <TextArea name="prompt" toName="text" editable="true"/>
  <Choices name="intent" toName="text">
    <Choice value="loan"/>
    <Choice value="card"/>
    <Choice value="credit card"/>
  </Choices>
</View>"""


@pytest.fixture
def tiny_engine() -> CopyEngine:  # the app in `served` runs on this engine
    return CopyEngine()


def webhook(task_id: int, text: str, label: str) -> dict:
    return {
        "action": "ANNOTATION_CREATED",
        "annotation": {
            "id": 700 + task_id,
            "task": task_id,
            "project": int(PROJECT),
            "result": [{"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
        },
        "task": {"id": task_id, "project": int(PROJECT), "data": {"text": text}},
        "project": {"id": int(PROJECT), "title": "Live", "label_config": CONFIG},
    }


def predict(api: httpx.Client, prompt: str | None = None) -> dict:
    body: dict = {"tasks": [{"id": 99, "data": {"text": "my debit card was swallowed"}}], "project": f"{PROJECT}.17"}
    body["label_config"] = CONFIG
    if prompt is not None:
        body["params"] = {"context": {"result": [{"from_name": "prompt", "to_name": "text", "type": "textarea",
                                                  "value": {"text": [prompt]}}]}}  # fmt: skip
    response = api.post("/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


def rows(driver: WebDriver) -> list[dict]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#history tbody tr'), r => ({id: Number(r.dataset.id),"
        " cls: r.className, accuracy: r.querySelector('.eval-accuracy').textContent,"
        " tasks: r.querySelector('.eval-tasks').textContent, vs: r.querySelector('.vs-active').textContent}));"
    )


def test_a_typed_prompt_is_measured_flagged_and_made_active_without_a_reload(
    served: Served, browser: WebDriver, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings.agent, "disagreements_trigger", 1000)  # no refinement: the typed prompt is the news
    api = httpx.Client(base_url=served.url, auth=served.auth, timeout=60)
    setup = {"project": f"{PROJECT}.17", "schema": CONFIG, "hostname": "http://ls.example:8080"}
    assert api.post("/setup", json=setup).status_code == 200
    for task_id, (text, label) in enumerate(labeled()[:24], start=1):
        assert api.post("/webhook", json=webhook(task_id, text, label)).status_code == 200
    schema = parse_config(CONFIG)
    with Session(db.sql_engine(db_url)) as session:  # an active version with a pool its text does not show
        pool = pool_from_tasks(schema, annotated_tasks(session, PROJECT, schema))
        active = repo.record_prompt(
            session, PROJECT, "Which intent is it?\n{text}", "user", activate=True, examples={"pool": pool, "k": 4}
        )
    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    browser.get(served.page(f"/review/{PROJECT}"))
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    wait.until(lambda d: any(r["id"] == active.id for r in rows(d)))
    assert not browser.find_elements(By.CSS_SELECTOR, "#history tr.beats-active")

    typed = compose("Which intent is it? Answer like the examples.", schema, retrieval=True)
    before = predict(api, typed)  # the annotator's Shift+Enter: a new version, measured in the background
    typed_id = int(before["model_version"].split("@")[0].removeprefix("prompt-"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#history tr.beats-active[data-id="{typed_id}"]'))
    shown = {r["id"]: r for r in rows(browser)}
    assert shown[typed_id]["tasks"] == "24" and shown[typed_id]["vs"].startswith(f"#{active.id}: ")
    assert "fixed" in shown[typed_id]["vs"] and "p = " in shown[typed_id]["vs"]
    evaluation = api.get(f"/projects/{PROJECT}/prompts/{typed_id}/evaluations").json()[0]
    assert shown[typed_id]["accuracy"] == f"{100 * evaluation['accuracy']:.1f}%"
    assert evaluation["significant"] and evaluation["compared_with_id"] == active.id
    assert evaluation["accuracy"] > evaluation["compared_accuracy"]

    if SHOTS is not None:
        browser.find_element(By.ID, "history-section").screenshot(str(SHOTS / "review-live-eval.png"))
    browser.find_element(By.CSS_SELECTOR, '#history th[data-sort="eval-accuracy"]').click()  # highest first
    wait.until(lambda d: rows(d)[0]["id"] == typed_id)
    browser.find_element(By.CSS_SELECTOR, '#history th[data-sort="eval-accuracy"]').click()  # lowest first
    wait.until(lambda d: rows(d)[0]["id"] != typed_id and rows(d)[0]["accuracy"] != "")

    for button in ("button.make-active", "button.confirm-make-active"):  # the history scrolls sideways to them
        found = browser.find_element(By.CSS_SELECTOR, f'#history tr[data-id="{typed_id}"] {button}')
        browser.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'})", found)
        found.click()
    wait.until(lambda d: "active" in next(r["cls"] for r in rows(d) if r["id"] == typed_id).split())
    assert f"prompt-{typed_id}@stub-copy" in browser.find_element(By.ID, "message").text
    assert predict(api)["model_version"] == f"prompt-{typed_id}@stub-copy"  # what Label Studio sees now
    decided = api.get(f"/projects/{PROJECT}/proposals", params={"status": "accepted"}).json()
    assert [(p["strategy"], p["result_version_id"], p["base_version_id"]) for p in decided] == [
        ("annotator", typed_id, active.id)
    ]
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#decided tr[data-id="{decided[0]["id"]}"]'))

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]  # no script error, no CSP violation
    assert errors == [], errors
