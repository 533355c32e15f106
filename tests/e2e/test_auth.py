"""Basic auth on both sides: Prompter with BASIC_AUTH_USER/PASS, Label Studio's connection with BASIC_AUTH.

Label Studio sends the connection's credentials on /health, /setup, /predict and START_TRAINING, but the
project webhook it creates for the backend carries no credentials: annotations reach an auth-protected
Prompter only once the webhook has an Authorization header (README, "Use it with Label Studio").
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import pytest
from dstc11 import dialogue_task, intents, one_per_intent, prompt_centric_config
from ls_api import LabelStudioAPI, LabelStudioError
from ls_server import LabelStudioServer
from prompter_server import PrompterServer
from sqlmodel import Session, create_engine, select

from service.store.models import Annotation

pytestmark = pytest.mark.e2e

USER, PASSWORD = "labelstudio", "s3cret-for-e2e"


@pytest.fixture(scope="module")
def protected_prompter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrompterServer]:
    """A second `prompter serve` with basic auth (warm-up off: this module makes one bulk /predict)."""
    server = PrompterServer(
        tmp_path_factory.mktemp("prompter-auth"),
        extra_env={"BASIC_AUTH_USER": USER, "BASIC_AUTH_PASS": PASSWORD, "PROMPTER_WARMUP": "false"},
    )
    try:
        server.start()
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(f"`prompter serve` with basic auth did not become ready: {exc}")
    print(f"\n[e2e] prompter serve with basic auth ready in {server.startup_seconds:.1f} s", flush=True)
    try:
        yield server
    finally:
        server.stop()
    errors = server.log_errors()
    assert not errors, f"the protected Prompter logged errors ({server.log_path}):\n" + "\n".join(errors[:40])


def _project(ls_api: LabelStudioAPI, utterances: list, title: str) -> tuple[dict, list[int]]:
    labels = intents(utterances)
    project = ls_api.create_project(title, prompt_centric_config(labels))
    return project, ls_api.import_tasks(project["id"], [dialogue_task(u) for u in one_per_intent(utterances, 1)])


def _stored_annotation_ids(server: PrompterServer, project_id: int) -> set[int]:
    engine = create_engine(f"sqlite:///{server.database_path}")
    try:
        with Session(engine) as session:
            rows = session.exec(select(Annotation.id).where(Annotation.project_id == str(project_id)))
            return set(rows)
    finally:
        engine.dispose()


def test_prompter_refuses_requests_without_the_password(protected_prompter: PrompterServer) -> None:
    url = protected_prompter.url
    assert httpx.get(f"{url}/health", timeout=10).status_code == 401
    assert httpx.get(f"{url}/health", auth=(USER, "wrong"), timeout=10).status_code == 401
    assert httpx.post(f"{url}/predict", json={"tasks": []}, timeout=10).status_code == 401
    assert httpx.get(f"{url}/health", auth=(USER, PASSWORD), timeout=10).json()["status"] == "UP"


def test_label_studio_with_basic_auth_connects_predicts_and_delivers_annotations(
    label_studio: LabelStudioServer,
    ls_api: LabelStudioAPI,
    protected_prompter: PrompterServer,
    dstc11_utterances: list,
) -> None:
    project, task_ids = _project(ls_api, dstc11_utterances, "prompter e2e basic auth")
    ml = ls_api.connect_ml_backend(
        project["id"], protected_prompter.url,
        auth_method="BASIC_AUTH", basic_auth_user=USER, basic_auth_pass=PASSWORD,
    )  # fmt: skip
    assert ml["auth_method"] == "BASIC_AUTH" and ml["basic_auth_pass_is_set"], ml
    assert "basic_auth_pass" not in ml, "Label Studio must not echo the password"

    started = time.monotonic()
    ls_api.retrieve_predictions(project["id"], task_ids)
    print(f"[e2e] retrieve predictions with basic auth: {time.monotonic() - started:.1f} s", flush=True)
    stored = ls_api.list_predictions(task_ids[0])
    assert len(stored) == 1 and 0.0 < stored[0]["score"] <= 1.0, stored

    # The webhook Label Studio made for the backend has no credentials: Prompter refuses it (LS logs nothing).
    [hook] = ls_api.webhooks(project["id"])
    offset = protected_prompter.log_size()
    result = [{"from_name": "intent", "to_name": "chat", "type": "choices", "value": {"choices": ["GetQuote"]}}]
    first = ls_api.create_annotation(task_ids[0], result)
    assert '"POST /webhook HTTP/1.1" 401' in protected_prompter.log_text(offset)
    assert first["id"] not in _stored_annotation_ids(protected_prompter, project["id"])

    # With the header set on the webhook, the next event arrives and is stored.
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    ls_api.update_webhook(hook["id"], headers={"Authorization": f"Basic {token}"})
    ls_api.update_annotation(first["id"], result)
    assert first["id"] in _stored_annotation_ids(protected_prompter, project["id"])


def test_label_studio_with_a_wrong_password_is_refused(
    label_studio: LabelStudioServer,
    ls_api: LabelStudioAPI,
    protected_prompter: PrompterServer,
    dstc11_utterances: list,
    allow_backend_errors: None,
) -> None:
    project, _ = _project(ls_api, dstc11_utterances, "prompter e2e wrong password")
    offset = protected_prompter.log_size()
    for fields in (
        {"auth_method": "BASIC_AUTH", "basic_auth_user": USER, "basic_auth_pass": "not-the-password"},
        {},  # no credentials at all
    ):
        with pytest.raises(LabelStudioError) as refused:
            ls_api.connect_ml_backend(project["id"], protected_prompter.url, **fields)
        assert "400" in str(refused.value)
        assert "authentication parameters were either not provided or are incorrect" in str(refused.value)
    assert ls_api.ml_backends(project["id"]) == []
    log = protected_prompter.log_text(offset)
    assert log.count('"GET /health HTTP/1.1" 401') >= 2, log
    assert '"POST /setup' not in log, "a refused health check must stop Label Studio before /setup"
