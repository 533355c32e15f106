"""Task files in and out: Label Studio task lists, JSONL, plain and labeled ``{"text": ...}`` lines.

Every input item becomes an ``InputTask`` with an integer id (the task's own id, else its line number or
position), the Label Studio task itself, and the ground-truth labels when the line carries them. A line
that cannot be read is kept as an item with an ``error``, so it is counted and reported, not fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from constraints.errors import BadInput
from service.labeling import choices_config
from service.store.models import as_task_id

GOLD_KEYS = ("label", "labels")


class InputError(BadInput):
    """A file or option an offline command cannot use; the message says which and why."""


@dataclass
class InputTask:
    id: int
    task: dict[str, Any]  # a Label Studio task: {"id": ..., "data": {...}, "annotations": [...], ...}
    where: str  # "line 12", "item 3", "task 17": how messages name it
    gold: list[str] | None = None  # labels given on a labeled line (`label` / `labels`)
    error: str | None = None  # why this item cannot be labeled at all (not JSON, not an object...)


def _gold(record: dict[str, Any]) -> list[str] | None:
    if record.get("labels") is not None:
        value = record["labels"]
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if record.get("label") is not None:
        return [str(record["label"])]
    return None


def to_input_task(element: Any, position: int, where: str) -> InputTask:
    """One parsed element: a Label Studio task (has ``data``), a flat record, or a bare string."""
    if isinstance(element, str):
        return InputTask(position, {"id": position, "data": {"text": element}}, where)
    if not isinstance(element, dict):
        kind = type(element).__name__
        return InputTask(position, {}, where, error=f"{where}: expected a JSON object with the task, got a {kind}")
    own_id = as_task_id(element.get("id"))
    ident = own_id if own_id is not None else position
    if "data" in element:
        return InputTask(ident, dict(element), where, gold=_gold(element))
    data = {k: v for k, v in element.items() if k not in ("id", *GOLD_KEYS)}
    return InputTask(ident, {"id": ident, "data": data}, where, gold=_gold(element))


def _with_unique_ids(items: list[InputTask]) -> list[InputTask]:
    first: dict[int, str] = {}
    for item in items:
        if item.error is None and item.id in first:
            item.error = f"{item.where}: duplicate task id {item.id} (first seen at {first[item.id]})"
        elif item.error is None:
            first[item.id] = item.where
    return items


def parse_tasks(text: str) -> list[InputTask]:
    """Tasks from a JSON list (or one JSON object), else from JSON lines."""
    stripped = text.strip()
    if not stripped:
        return []
    if stripped[0] in "[{":
        try:
            whole = json.loads(stripped)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, list):
            return _with_unique_ids([to_input_task(e, i, f"item {i}") for i, e in enumerate(whole, 1)])
        if isinstance(whole, dict):
            return _with_unique_ids([to_input_task(whole, 1, "item 1")])
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            element = json.loads(line)
        except json.JSONDecodeError as exc:
            items.append(InputTask(number, {}, f"line {number}", error=f"line {number}: not valid JSON ({exc.msg})"))
            continue
        items.append(to_input_task(element, number, f"line {number}"))
    return _with_unique_ids(items)


def read_text(path: str | Path, what: str = "file") -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None


def read_tasks(path: str | Path) -> list[InputTask]:
    return parse_tasks(read_text(path, "task file"))


def split_labels(value: str) -> list[str]:
    """``--labels a,b,c`` -> ["a", "b", "c"] (blank entries dropped)."""
    return [part.strip() for part in value.split(",") if part.strip()]


def read_labels_file(path: str | Path) -> list[str]:
    """A JSON list of labels, or one label per line."""
    text = read_text(path, "labels file")
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"labels file {path} looks like JSON but is not valid ({exc.msg})") from None
        if not isinstance(value, list):
            raise InputError(f"labels file {path} must hold a JSON list")
        return [str(v).strip() for v in value if str(v).strip()]
    return [line.strip() for line in text.splitlines() if line.strip()]


def labels_config(labels: Iterable[str], multiple: bool = False) -> str:
    """The ``--labels`` config (control ``label``); InputError when no labels are given."""
    labels = list(labels)
    if not labels:
        raise InputError("no labels given")
    return choices_config(labels, multiple)


def gold_labels(items: Iterable[InputTask]) -> list[str]:
    """Every label given on labeled lines, sorted: a label set for a labeled file without a config."""
    return sorted({label for item in items if item.gold for label in item.gold})


def source_digest(path: str | Path, label_config: str) -> str:
    """A stable key for a task file labeled with a config: a rerun on the same file finds its predictions."""
    digest = hashlib.sha1()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    digest.update(b"\0")
    digest.update(label_config.encode("utf-8"))
    return digest.hexdigest()[:12]


def write_json_atomic(path: str | Path, value: Any, indent: int | None = None) -> Path:
    """Write JSON to a temporary file next to ``path``, fsync it, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, ensure_ascii=False, indent=indent)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def remove_stale_partials(path: str | Path) -> None:
    """Temporary files a killed run left next to ``path``."""
    path = Path(path)
    if path.parent.is_dir():
        for stale in path.parent.glob(f".{path.name}.*.partial"):
            with suppress(OSError):
                stale.unlink()
