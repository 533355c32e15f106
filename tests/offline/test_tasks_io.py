"""Reading task files in every accepted shape; configs from label lists; atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.labeling import parse_config
from service.offline.tasks_io import (
    InputError,
    labels_config,
    parse_tasks,
    read_labels_file,
    read_tasks,
    source_digest,
    split_labels,
    write_json_atomic,
)


def test_plain_and_labeled_lines_get_their_line_number_as_id() -> None:
    text = '{"text": "hello"}\n\n{"text": "bye", "label": "b"}\n{"text": "both", "labels": ["a", "b"]}\n"bare"\n'
    items = parse_tasks(text)
    assert [i.id for i in items] == [1, 3, 4, 5]
    assert items[0].task == {"id": 1, "data": {"text": "hello"}} and items[0].gold is None
    assert items[1].gold == ["b"] and items[1].task["data"] == {"text": "bye"}
    assert items[2].gold == ["a", "b"]
    assert items[3].task["data"] == {"text": "bare"}
    assert [i.where for i in items] == ["line 1", "line 3", "line 4", "line 5"]


def test_label_studio_task_list_keeps_ids_data_and_annotations() -> None:
    tasks = [
        {"id": 17, "data": {"dialogue": "x"}, "annotations": [{"result": []}]},
        {"data": {"dialogue": "y"}},
        {"id": 17, "data": {"dialogue": "z"}},
    ]
    items = parse_tasks(json.dumps(tasks))
    assert [i.id for i in items] == [17, 2, 17]
    assert items[0].task["annotations"] == [{"result": []}]
    assert items[0].error is None and items[1].error is None
    assert items[2].error == "item 3: duplicate task id 17 (first seen at item 1)"


def test_unreadable_lines_are_items_with_an_error_not_a_failure_of_the_file() -> None:
    items = parse_tasks('{"text": "ok"}\nnot json\n[1, 2]\n')
    assert items[0].error is None
    assert items[1].error.startswith("line 2: not valid JSON")
    assert items[2].error == "line 3: expected a JSON object with the task, got a list"


def test_a_single_json_object_is_one_task(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"id": 5, "data": {"text": "x"}}, indent=2))
    items = read_tasks(path)
    assert [(i.id, i.task["data"]) for i in items] == [(5, {"text": "x"})]


def test_missing_or_binary_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_tasks(tmp_path / "nope.jsonl")
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="not UTF-8"):
        read_tasks(binary)


def test_labels_config_round_trips_through_the_service_parser(tmp_path: Path) -> None:
    labels = ["a&b", 'say "hi"', "<x>", "credit card"]
    schema = parse_config(labels_config(labels))
    (control,) = schema.choices
    assert list(control.label_set.labels) == labels
    assert not control.label_set.multiple and not control.label_set.allow_empty
    assert schema.data_keys == ("text",)
    assert parse_config(labels_config(labels, multiple=True)).choices[0].label_set.multiple


def test_label_lists_from_options_and_files(tmp_path: Path) -> None:
    assert split_labels(" a, b ,,c ") == ["a", "b", "c"]
    lines = tmp_path / "labels.txt"
    lines.write_text("a, with comma\n\nb\n")
    assert read_labels_file(lines) == ["a, with comma", "b"]
    as_json = tmp_path / "labels.json"
    as_json.write_text('["x", "y"]')
    assert read_labels_file(as_json) == ["x", "y"]
    with pytest.raises(InputError):
        labels_config([])


def test_source_digest_depends_on_file_and_config(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a"}\n')
    first = source_digest(path, "<View/>")
    assert first == source_digest(path, "<View/>")
    assert first != source_digest(path, "<View></View>")
    path.write_text('{"text": "b"}\n')
    assert first != source_digest(path, "<View/>")


def test_atomic_write_leaves_the_old_file_when_it_fails(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    write_json_atomic(path, [1, 2])
    assert json.loads(path.read_text()) == [1, 2]
    with pytest.raises(TypeError):
        write_json_atomic(path, [object()])
    assert json.loads(path.read_text()) == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left behind
