"""What an offline run works on: its tasks, labeling config, store project, prompt and engine.

Shared by `prompter label` and `prompter eval`, so both read the same inputs the same way.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from constraints.base import Engine, EngineUnavailable
from constraints.engines import load_engine
from constraints.errors import PrompterError
from service.labeling import ConfigError, ProjectSchema, parse_config
from service.offline.studio import StudioError, StudioProject, open_project
from service.offline.tasks_io import (
    InputError,
    InputTask,
    gold_labels,
    labels_config,
    read_labels_file,
    read_tasks,
    read_text,
    source_digest,
    split_labels,
)
from service.projects import ensure_prompt, project_key
from service.settings import settings
from service.store import db, repo
from service.store.models import PromptVersion

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1  # nothing or not everything could run: Label Studio, the store or the model failed
EXIT_USAGE = 2  # bad options, input file or labeling config
EXIT_PARTIAL = 3  # the run finished, but some tasks could not be labeled
EXIT_INTERRUPTED = 130


class StoreError(PrompterError):
    """The prediction store cannot be opened or written."""


class ModelError(PrompterError):
    """The model cannot be loaded."""


def exit_code(exc: BaseException) -> int:
    return EXIT_USAGE if isinstance(exc, InputError | ConfigError) else EXIT_FAILED


OFFLINE_ERRORS = (InputError, ConfigError, StudioError, StoreError, ModelError, EngineUnavailable)


def say(prog: str, message: str) -> None:
    print(f"{prog}: {message}", file=sys.stderr, flush=True)


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops a run like Ctrl-C: between two chunks' commits


def run_command(prog: str, run: Callable[[argparse.Namespace, Any], int], args: argparse.Namespace, engine: Any) -> int:
    """Run a command: known errors become one line on stderr and an exit code, never a traceback."""
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(message)s")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return run(args, engine)
    except OFFLINE_ERRORS as exc:
        if args.debug:
            raise
        say(prog, f"error: {exc}")
        return exit_code(exc)
    except KeyboardInterrupt:
        say(prog, "interrupted; predictions made so far are stored: rerun the same command to continue")
        return EXIT_INTERRUPTED
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


# -- options ---------------------------------------------------------------------------------------


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("tasks (a file, or a Label Studio project)")
    src.add_argument(
        "--input",
        metavar="FILE",
        help='Label Studio tasks (JSON list or JSONL), or {"text": ...} lines, optionally with "label"/"labels"',
    )
    src.add_argument("--ls-url", metavar="URL", help="Label Studio base URL, e.g. http://localhost:8080")
    src.add_argument("--ls-api-key", metavar="KEY", help="Label Studio API token (legacy token or personal JWT)")
    src.add_argument("--project", type=int, metavar="ID", help="Label Studio project id")
    src.add_argument("--limit", type=int, metavar="N", help="only the first N tasks")

    cfg = parser.add_argument_group("labeling config (default: the Label Studio project's)")
    cfg.add_argument("--config", metavar="FILE", help="a Label Studio labeling config (XML)")
    cfg.add_argument("--labels", metavar="A,B,C", help="comma-separated labels: builds a Text + Choices config")
    cfg.add_argument("--labels-file", metavar="FILE", help="labels, one per line or a JSON list")
    cfg.add_argument("--multiple", action="store_true", help="with --labels/--labels-file: multiple choice")

    run = parser.add_argument_group("model and store")
    run.add_argument("--db", metavar="PATH", help="SQLite file of the prediction store (default: PROMPTER_* settings)")
    run.add_argument("--model", metavar="NAME_OR_DIR", help="model to load (default: PROMPTER_MODEL, 'embedded')")
    run.add_argument(
        "--batch-size", type=int, metavar="N", help="tasks per forward pass (default: PROMPTER_BATCH_SIZE)"
    )
    run.add_argument("--chunk-size", type=int, metavar="N", help="tasks per stored chunk (default: the batch size)")
    run.add_argument("--max-chars", type=int, default=None, metavar="N", help="longest task text accepted")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--debug", action="store_true", help="log details and show tracebacks")


def check_source_arguments(args: argparse.Namespace) -> None:
    if bool(args.input) == bool(args.ls_url):
        raise InputError("give either --input FILE or --ls-url URL with --project ID")
    if args.ls_url and args.project is None:
        raise InputError("--ls-url needs --project ID")
    if args.labels and args.labels_file:
        raise InputError("give --labels or --labels-file, not both")
    if args.config and (args.labels or args.labels_file):
        raise InputError("give --config or --labels/--labels-file, not both")
    for name in ("limit", "batch_size", "chunk_size", "max_chars"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")


# -- source ----------------------------------------------------------------------------------------


@dataclass
class Source:
    items: list[InputTask]
    label_config: str
    schema: ProjectSchema
    project_id: str  # the store's project key
    description: str
    studio: StudioProject | None = None
    notes: list[str] = field(default_factory=list)


def _config_from_options(args: argparse.Namespace) -> str | None:
    if args.config:
        return read_text(args.config, "labeling config")
    labels = None
    if args.labels:
        labels = split_labels(args.labels)
    elif args.labels_file:
        labels = read_labels_file(args.labels_file)
    if labels is None:
        return None
    if not labels:
        raise InputError("the label list is empty")
    return labels_config(labels, multiple=args.multiple)


def open_source(args: argparse.Namespace) -> Source:
    """Tasks and labeling config from the options; InputError/ConfigError/StudioError say what is wrong."""
    check_source_arguments(args)
    config = _config_from_options(args)
    notes: list[str] = []
    studio = None
    if args.ls_url:
        studio = open_project(args.ls_url, args.ls_api_key, args.project)
        items = studio.tasks()
        config = config or studio.label_config
        description = f"Label Studio project {args.project} ({studio.title}) at {studio.url}"
        project_id = project_key(args.project, None)
    else:
        items = read_tasks(args.input)
        if config is None:
            labels = gold_labels(items)
            if not labels:
                raise InputError(
                    "no labeling config: give --config FILE, --labels A,B,C or --labels-file FILE "
                    "(or a file whose lines carry labels)"
                )
            multiple = args.multiple or any(len(i.gold or []) > 1 for i in items)
            config = labels_config(labels, multiple=multiple)
            notes.append(f"labeling config built from the {len(labels)} labels found in {args.input}")
        description = f"file {args.input}"
        project_id = f"file-{source_digest(args.input, config)}"
    if args.limit:
        items = items[: args.limit]
    schema = parse_config(config, settings.prompt_prefix, settings.response_name)
    return Source(items, config, schema, project_id, description, studio, notes)


# -- store, prompt, engine -------------------------------------------------------------------------


def open_store(path: str | None) -> Session:
    """A session on the migrated store: ``--db PATH`` or the configured database."""
    url = f"sqlite:///{Path(path).expanduser().resolve()}" if path else settings.resolved_database_url()
    try:
        db.migrate(url)
        return Session(db.sql_engine(url))
    except (SQLAlchemyError, OSError) as exc:
        raise StoreError(f"cannot open the prediction store {url}: {exc}") from None


def project_prompt(session: Session, source: Source, text: str | None) -> PromptVersion:
    """``text`` recorded as a (not active) version of the project, else its active prompt, else the default."""
    try:
        repo.upsert_project(session, source.project_id, source.label_config)
        if text is not None:
            if not text.strip():
                raise InputError("the prompt is empty")
            ensure_prompt(session, source.project_id, source.schema)  # an offline run never changes the active one
            return repo.record_prompt(session, source.project_id, text, "user")
        return ensure_prompt(session, source.project_id, source.schema)
    except SQLAlchemyError as exc:
        session.rollback()
        raise StoreError(f"cannot record the prompt in the store: {exc}") from None


def load_engine_for(args: argparse.Namespace) -> Engine:
    """The model engine the service would load, with ``--model`` / ``--batch-size`` applied."""
    update = {}
    if args.model:
        update["model"] = args.model
    if args.batch_size:
        update["batch_size"] = args.batch_size
    chosen = settings.model_copy(update=update)
    try:
        return load_engine(chosen)
    except (OSError, ValueError, ImportError, EngineUnavailable) as exc:  # missing folder, bad config, package, server
        raise ModelError(f"cannot load the model {chosen.model!r}: {exc}") from None
