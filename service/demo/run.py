"""`prompter demo`: Label Studio and Prompter on loopback, with a "Finance Support Chats" project ready to label.

Installs Label Studio into its own virtual environment if needed (scripts/install_label_studio.sh), starts
it and `prompter serve` as child processes, creates the project with the sample chats
(service/sample_data/) and Prompter connected for interactive preannotation, prints the URL and the login,
and runs until Ctrl-C, which stops both. Everything lives under one folder (`--dir`), so a second run
finds the same project, annotations and prompt versions; `--fresh` starts over.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import time
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from service.demo import labelstudio
from service.demo.labelstudio import Credentials, LabelStudioAPI, LabelStudioServer
from service.demo.processes import PrompterServer
from service.settings import settings

PROJECT_TITLE = "Finance Support Chats"
DEMO_USER = "demo@prompter.local"
# Label Studio gives one /predict 100 s. On a CPU a "Retrieve predictions" over all 20 chats (after a
# prompt is accepted, say) can take longer, and LS then stores nothing; 300 s covers it on 2 busy cores.
# A webhook gets 1 s, and a late answer loses the annotation for the agent without a word; 10 s.
LABEL_STUDIO_ENV = {"ML_TIMEOUT_PREDICT": "300", "WEBHOOK_TIMEOUT": "10"}
PREDICT_CHUNK = 5  # tasks per "Retrieve predictions" while the demo labels its sample chats
ANNOTATE_DEFAULT = 40  # 20 chats were too few to prove the 270M model's gain from retrieval (p = 0.09)
SCREENSHOT_PROMPT = "Which intents does the customer express? Name every one that applies."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", type=Path, default=settings.home / "demo", help="folder for both servers' databases and logs"
    )
    parser.add_argument("--ls-port", type=int, default=8080, help="Label Studio's port (default 8080)")
    parser.add_argument("--port", type=int, default=9090, help="Prompter's port (default 9090)")
    parser.add_argument("--fresh", action="store_true", help="delete the demo's databases first and start over")
    parser.add_argument(
        "--screenshot", type=Path, default=None, metavar="PATH",
        help="save a PNG of the labeling screen with a prediction (headless Chromium) once ready",
    )  # fmt: skip
    parser.add_argument(
        "--no-predict", action="store_true", help="do not label the sample chats before the demo is ready"
    )
    parser.add_argument(
        "--exit-when-ready", action="store_true", help="stop both servers once the project is ready (and screenshot)"
    )
    parser.add_argument(
        "--annotate", type=int, nargs="?", const=ANNOTATE_DEFAULT, default=0, metavar="N",
        help=f"play the annotator: submit N sample chats' intents in Label Studio (default {ANNOTATE_DEFAULT}; past "
        "20 more sample chats are imported), press Start Training, and wait for the refinement (a proposal to "
        "accept at /review, or how many more annotations it needs)",
    )  # fmt: skip
    parser.set_defaults(run=run)


def sample_tasks() -> list[dict[str, Any]]:
    return json.loads((resources.files("service") / "sample_data" / "finance_chats.json").read_text())


def sample_config() -> str:
    return (resources.files("service") / "sample_data" / "finance_chats.xml").read_text()


def forget(folder: Path) -> None:
    """Delete what the demo keeps in `folder` (and nothing else that may be there)."""
    for name in ("label-studio", "prompter"):
        shutil.rmtree(folder / name, ignore_errors=True)
    for name in ("prompter.sqlite3", "credentials.json"):
        (folder / name).unlink(missing_ok=True)


def more_sample_tasks() -> list[dict[str, Any]]:
    """40 more chats made the same way (scripts/make_finance_chats.py), for `--annotate` past the first 20."""
    return json.loads((resources.files("service") / "sample_data" / "finance_chats_more.json").read_text())


def sample_answers() -> dict[str, list[str]]:
    """The sample chats' intents, by ``source_ids`` (kept out of the task data)."""
    return json.loads((resources.files("service") / "sample_data" / "finance_chats_answers.json").read_text())


def demo_credentials(folder: Path) -> Credentials:
    """The demo's Label Studio login, made once per demo folder (the password never leaves it)."""
    path = folder / "credentials.json"
    if path.exists():
        return Credentials(**json.loads(path.read_text()))
    password = secrets.token_urlsafe(9)
    while password.startswith("-"):  # `label-studio start --password -x...` takes it for an option
        password = secrets.token_urlsafe(9)
    credentials = Credentials(DEMO_USER, password, secrets.token_hex(20))
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(credentials.__dict__))
    path.chmod(0o600)
    return credentials


def ensure_project(api: LabelStudioAPI) -> tuple[dict[str, Any], list[int]]:
    """The demo project and its task ids: found by title, or created with the sample chats imported."""
    project = api.find_project(PROJECT_TITLE)
    if project is None:
        project = api.create_project(
            PROJECT_TITLE,
            sample_config(),
            description="Sample customer chats (DSTC11 insurance turns, CDLA-Permissive-2.0). "
            "Type a prompt and press Shift+Enter, or accept Prompter's prediction and correct it.",
        )
        api.import_tasks(project["id"], sample_tasks())
    return project, api.task_ids(project["id"])


def ensure_backend(api: LabelStudioAPI, project_id: int, url: str) -> dict[str, Any]:
    """Prompter connected to the project with interactive preannotation on (the URL updated if it moved)."""
    for backend in api.ml_backends(project_id):
        if backend.get("title") == "Prompter":
            if backend.get("url") != url or not backend.get("is_interactive"):
                backend = api.update_ml_backend(backend["id"], url=url, is_interactive=True)
            return backend
    return api.connect_ml_backend(project_id, url, title="Prompter", is_interactive=True)


def _say(message: str) -> None:
    print(message, flush=True)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    folder: Path = args.dir.expanduser().resolve()
    if args.fresh:
        forget(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Ctrl-C and a kill stop the children; SIGINT explicitly, as a shell's background job starts with it ignored.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)

    prompter: PrompterServer | None = None
    ls: LabelStudioServer | None = None
    try:
        if not labelstudio.is_installed():
            _say("Installing Label Studio into its own virtual environment (once; a few minutes)...")
            result = labelstudio.install()
            if result.returncode != 0:
                _say(f"Installing Label Studio failed:\n{result.stdout}\n{result.stderr}")
                return 1

        prompter = PrompterServer(
            folder / "prompter", port=args.port, database_path=folder / "prompter.sqlite3", ready_timeout=900
        )
        _say(f"Starting Prompter on {prompter.url} (log: {prompter.log_path}); the model loads in the background")
        prompter.launch()

        ls = LabelStudioServer(
            folder / "label-studio", port=args.ls_port, credentials=demo_credentials(folder), extra_env=LABEL_STUDIO_ENV
        )
        _say(f"Starting Label Studio on port {args.ls_port} (log: {ls.log_path})")
        ls.start()
        _say(f"Label Studio is up in {ls.startup_seconds:.0f} s")

        api = LabelStudioAPI(ls)
        project, task_ids = ensure_project(api)
        _say(f'Project "{PROJECT_TITLE}" has {len(task_ids)} tasks; waiting for the model...')
        prompter.wait_ready()
        _say(f"The model is ready ({prompter.startup_seconds:.0f} s after start)")
        # Connect only now: LS gives /setup 3 s, and a loading model can starve the server of CPU that long.
        backend = ensure_backend(api, project["id"], prompter.url)
        _say("Prompter is connected to the project (interactive preannotation on)")
        if not args.no_predict:
            predict_all(api, project["id"], task_ids)
        if args.annotate:
            task_ids = play_annotator(api, project["id"], backend["id"], task_ids, prompter.url, args.annotate)

        if args.screenshot:
            _screenshot(api, ls, project["id"], task_ids[0], args.screenshot)

        credentials = ls.credentials
        _say(
            "\n"
            f"Label Studio: {ls.url}/projects/{project['id']}/data\n"
            f"Login:        {credentials.username}  password: {credentials.password}\n"
            f"API token:    {credentials.token}  (header Authorization: Token ...)\n"
            f"              the login and token are kept in {folder / 'credentials.json'}\n"
            f"Prompter:     {prompter.url}  (prompt proposals: {prompter.url}/review)\n"
            "Open a task: Prompter's prediction is filled in. To ask in your own words, switch on\n"
            "Auto-Annotation (bottom bar), click the pencil on the Prompt box, type, press Shift+Enter.\n"
            "Correct the intents and Submit: Prompter learns prompts from your corrections.\n"
            "Press Ctrl-C to stop both servers.\n"
        )
        if args.exit_when_ready:
            return 0
        while True:
            for name, process in (("Prompter", prompter.process), ("Label Studio", ls.process)):
                if process is None or process.poll() is not None:
                    _say(f"{name} stopped unexpectedly; see its log")
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        _say("\nStopping...")
        return 0
    except (RuntimeError, TimeoutError, labelstudio.LabelStudioError) as exc:
        _say(f"The demo could not start: {exc}")
        return 1
    finally:
        # Ctrl-C again must not interrupt the shutdown half way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if ls is not None:
            ls.stop()
        if prompter is not None:
            prompter.stop()
        _say("Label Studio and Prompter stopped.")


def predict_all(api: LabelStudioAPI, project_id: int, task_ids: list[int]) -> None:
    """ "Retrieve predictions" for the tasks that have none, a few at a time, so the user sees progress and
    opening a task never waits for the model (LS would ask for that one task's prediction on the spot)."""
    todo = [t for t in task_ids if not api.list_predictions(t)]
    started = time.monotonic()
    for i in range(0, len(todo), PREDICT_CHUNK):
        api.retrieve_predictions(project_id, todo[i : i + PREDICT_CHUNK])
        _say(f"Prompter labeled {min(i + PREDICT_CHUNK, len(todo))}/{len(todo)} sample chats")
    missing = [t for t in todo if not api.list_predictions(t)]
    if missing:
        raise RuntimeError(f"Label Studio stored no prediction for tasks {missing}; see its log")
    if todo:
        _say(f"Predictions for {len(todo)} chats in {time.monotonic() - started:.0f} s")


ANNOTATE_TIMEOUT_S = 1800.0  # the refinement scores every strategy on every chat, five folds, on a busy CPU


def play_annotator(
    api: LabelStudioAPI, project_id: int, ml_id: int, task_ids: list[int], prompter_url: str, count: int
) -> list[int]:
    """Annotate ``count`` chats with their intents in Label Studio (the webhooks teach Prompter; more sample
    chats are imported if the project has fewer), press Start Training, wait for the refinement, print its
    outcome. Returns the project's task ids."""
    answers = sample_answers()
    base = f"{prompter_url}/projects/{project_id}"
    if count > len(task_ids):
        known = {str(api.get_task(t).get("data", {}).get("source_ids")) for t in task_ids}
        extra = [t for t in more_sample_tasks() if t["data"]["source_ids"] not in known][: count - len(task_ids)]
        if extra:
            api.import_tasks(project_id, extra)
            task_ids = api.task_ids(project_id)
            _say(f"Imported {len(extra)} more sample chats ({len(task_ids)} in the project)")
    task_ids = task_ids[:count]
    done = 0
    for task_id in task_ids:
        task = api.get_task(task_id)
        intents = answers.get(str(task.get("data", {}).get("source_ids")))
        if not intents or task.get("total_annotations"):
            continue
        result = [{"from_name": "intent", "to_name": "chat", "type": "choices", "value": {"choices": intents}}]
        api.create_annotation(task_id, result)
        done += 1
    _say(f"Annotated {done} chats with their intents (as an annotator would, in Label Studio)")
    deadline = time.monotonic() + ANNOTATE_TIMEOUT_S

    def runs() -> list[dict[str, Any]]:
        return httpx.get(f"{base}/refinements", timeout=30).json()

    def wait_idle() -> None:  # enough disagreements start a refinement on their own: let it finish first
        last = ""
        time.sleep(3)
        while (activity := httpx.get(f"{base}/activity", timeout=30).json())["running"] or activity[
            "corrections"
        ] < len(task_ids):
            progress = (activity["running"] or {}).get("progress") or {}
            doing = progress.get("strategy", "recording corrections")
            line = f"  {doing}: {progress.get('scored', '')}/{progress.get('total', '')}"
            if line != last:
                _say(line)
                last = line
            if time.monotonic() > deadline:
                raise TimeoutError("Prompter did not finish in time; see its log")
            time.sleep(2)

    wait_idle()
    activity = httpx.get(f"{base}/activity", timeout=30).json()
    _say(f"Prompter compared {activity['corrections']} annotations with its predictions: "
         f"{activity['disagreements']} disagreements")  # fmt: skip
    seen = {r["id"] for r in runs()}
    api.train(ml_id)
    _say("Pressed Start Training: Prompter refines the prompt, every chat validated (five folds)...")
    while not (new := [r for r in runs() if r["id"] not in seen]):
        if time.monotonic() > deadline:
            raise TimeoutError("Start Training started no refinement; see Prompter's log")
        time.sleep(1)
    wait_idle()
    run = next(r for r in runs() if r["id"] == new[0]["id"])
    summary = run.get("summary") or {}
    for c in summary.get("candidates", []):
        figures = f"{c['accuracy']['before']:.0%} -> {c['accuracy']['after']:.0%}, p = {c['p_value']:.2g}" if c.get(
            "accuracy") else c.get("reason", "")  # fmt: skip
        _say(f"  {c['strategy']}: {c['verdict']} {figures}")
    pending = httpx.get(f"{base}/proposals", params={"status": "pending"}, timeout=30).json()
    if pending:  # this run's, or an earlier one's that this run would have repeated (then skipped)
        p, m = pending[0], pending[0]["metrics"]
        _say(
            f"Proposal #{p['id']} ({p['strategy']}) is waiting: accuracy {m['accuracy']['before']:.0%} -> "
            f"{m['accuracy']['after']:.0%} on {m['validation_tasks']} annotated chats, p = {m['p_value']:.2g}; "
            f"accept it at {prompter_url}/review/{project_id}"
        )
    elif summary.get("tasks_needed"):
        _say(f"Nothing proven yet: about {summary['tasks_needed']} annotated chats would let the best gain count")
    else:
        _say(f"The refinement proposed nothing: {run.get('error') or 'no candidate beat the prompt'}")
    return task_ids


def _screenshot(api: LabelStudioAPI, ls: LabelStudioServer, project_id: int, task_id: int, path: Path) -> None:
    from service.demo.screenshot import labeling_screenshot  # selenium, a dev dependency: only with --screenshot

    if not api.list_predictions(task_id):
        _say(f"Asking Prompter for task {task_id}'s prediction...")
        api.retrieve_predictions(project_id, [task_id])
    if not api.list_predictions(task_id):
        raise RuntimeError(f"Label Studio stored no prediction for task {task_id}; see {ls.log_path}")
    url = f"{ls.url}/projects/{project_id}/data?task={task_id}"
    seconds = labeling_screenshot(ls.url, ls.credentials, url, path, prompt=SCREENSHOT_PROMPT)
    _say(f"Saved a screenshot of {url} to {path} ({seconds:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="prompter demo")
    configure(parser)
    sys.exit(run(parser.parse_args()))
