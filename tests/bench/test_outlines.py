"""`prompter bench` end to end on the tiny model: every summary key, with sane values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from constraints.local import LocalEngine
from service.bench import outlines as bench
from tests.tiny_model import tiny_model

ROWS = [
    ("I want to cancel my credit card please", "credit card"),
    ("can I borrow money for a house?", "loan"),
    ("my card is lost", "card"),
    ("what is the rate on a loan", "loan"),
    ("credit card limit", "credit card"),
    ("card not working", "card"),
]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "tiny" / "test.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps({"text": t, "label": g}) + "\n" for t, g in ROWS) + "\n")
    return path


def test_load_labeled_samples_tasks_and_keeps_every_label(data_file: Path) -> None:
    data = bench.load_labeled(data_file, tasks=4, seed=1)
    assert data.name == "tiny-test"
    assert data.labels == ("card", "credit card", "loan")
    assert len(data.texts) == len(data.gold) == 4
    assert all((t, g) in ROWS for t, g in zip(data.texts, data.gold, strict=True))
    assert bench.load_labeled(data_file, tasks=4, seed=1) == data
    assert len(bench.load_labeled(data_file, tasks=100, seed=0).texts) == len(ROWS)


def test_demonstrations_come_from_a_pool_apart_from_the_tasks(data_file: Path) -> None:
    data = bench.load_labeled(data_file, tasks=2, seed=3, pool=4)
    assert len(data.pool) == 4 and not set(data.texts) & {t for t, _ in data.pool}
    prompt = bench.bench_prompt(data.labels, data.pool, shots=2)
    label_set, queries = bench.make_queries(data.labels, data.texts, prompt)
    assert len(label_set) == 3 and len(queries) == 2
    for text, query in zip(data.texts, queries, strict=True):
        assert query.body.count("Intent:\n") == 2  # two demonstrations, each answered after the lead
        assert query.body.count(text) == 1  # the task itself, never as its own demonstration
    zero = bench.make_queries(data.labels, data.texts)[1]
    assert all("Intent:" not in q.body for q in zero)


def test_percentile() -> None:
    assert bench.percentile([3.0], 95) == 3.0
    assert bench.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert bench.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)


def test_bench_summary_has_every_required_key(data_file: Path, tmp_path: Path) -> None:
    from constraints.reference import OutlinesLabeler

    model, tokenizer = tiny_model()
    engine = LocalEngine(model, tokenizer, "tiny", batch_size=4)
    assert bench.warm_up(engine) > 0
    data = bench.load_labeled(data_file, tasks=6, seed=0)
    opts = bench.BenchOptions(interactive=3, rebuilt=2, loop_tasks=4)
    report = bench.run_bench(engine, OutlinesLabeler(engine), [data], opts, {"tasks": 6, "seed": 0, "batch_size": 4})
    shots = bench.load_labeled(data_file, tasks=3, seed=0, pool=3)
    few = bench.run_bench(engine, OutlinesLabeler(engine), [shots], bench.BenchOptions(2, 1, 3, shots=2), {"pool": 3})
    assert few["config"]["shots"] == 2 and few["sets"]["tiny-test"]["engine_single_vs_batch_agreement"] == 1.0
    fused = few["sets"]["tiny-test"]["fused"]  # the whole decision path beside the retrieval prompt's engine
    assert fused["pool"] == 3 and fused["interactive_p95_s"] >= fused["interactive_p50_s"] > 0
    assert fused["batch_tasks_per_s"] > 0 and 0 <= fused["accuracy"] <= 1
    assert fused["p50_over_own_prefill"] == pytest.approx(fused["interactive_p50_s"] / fused["prefill_p50_s"])
    assert fused["p50_over_retrieval"] == pytest.approx(
        fused["interactive_p50_s"] / few["sets"]["tiny-test"]["interactive_p50_s"]["engine"]
    )
    assert "fused" not in report["sets"]["tiny-test"]  # zero-shot run: nothing to compare with
    assert "The fused decision against the retrieval prompt" in bench.markdown(
        {**few, "config": {**report["config"], **few["config"]}}
    )

    s = report["sets"]["tiny-test"]
    assert s["labels"] == 3 and s["tasks"] == 6
    assert (s["interactive_tasks"], s["rebuilt_calls"], s["outlines_loop_tasks"]) == (3, 2, 4)
    for path in ("engine", "outlines_reused", "outlines_rebuilt", "prefill"):
        assert s["interactive_p95_s"][path] >= s["interactive_p50_s"][path] > 0, path
    for path in ("engine", "outlines_reused"):
        assert s["batch_tasks_per_s"][path] > 0
        assert 0 <= s["accuracy"][path] <= 1
    assert all(s["interactive_cpu_p50_s"][path] >= 0 for path in s["interactive_p50_s"])
    assert s["first_request_s"] > 0
    assert sum(c for _, c in s["most_predicted"]["engine"]) <= 6
    assert s["peak_rss_mb"] > 0
    assert 0 <= s["agreement"] <= 1
    assert s["engine_single_vs_batch_agreement"] == 1.0  # padding must not change a decision
    assert s["ratios"]["engine_over_prefill"] == pytest.approx(
        s["interactive_p50_s"]["engine"] / s["interactive_p50_s"]["prefill"]
    )
    assert set(s["targets"]) == {
        "engine_p50_le_1.3x_prefill",
        "outlines_reused_over_engine_ge_1.6",
        "batch_ge_3x_per_task",
        "first_request_le_1.5x_p50",
        "peak_rss_lt_2500_mb",
        "accuracy_engine_ge_outlines",
    }
    assert report["machine"]["dtype"] == "float32" and report["machine"]["torch_threads"] >= 1

    json_path, md_path = bench.write_report(report, tmp_path)
    assert json_path.name.endswith("_tiny-test_float32_none.json")
    assert json.loads(json_path.read_text())["sets"]["tiny-test"]["labels"] == 3
    table = md_path.read_text()
    assert "| (a) engine p50 / p95 s |" in table and "tiny-test" in table
