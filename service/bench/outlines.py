"""`prompter bench`: the engine's trie scoring against outlines-constrained generation, side by side.

One process, the model loaded once, the same tasks for every path. Per labeled set it measures:
interactive latency (one task per call) of (a) the engine's ``decide``, (b) outlines with a reused
Generator, (c) outlines rebuilt per call and (d) a bare prefill of the same prompt tokens (the floor);
batch throughput of (a) on all tasks against the per-task (b) loop; the first request after warm-up;
peak RSS; top-1 agreement of (a) and (b) and their accuracy against the gold labels.
Writes JSON and a markdown table under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from constraints.base import Query
from constraints.labelset import LabelSet
from constraints.loading import load_model
from constraints.local import LocalEngine
from constraints.reference import OutlinesLabeler
from service.bench import engines as bench_engines
from service.bench import fused as bench_fused
from service.bench.common import (
    DEFAULT_SETS,
    PATHS,
    RESULTS_DIR,
    TARGET_BATCH_SPEEDUP,
    TARGET_ENGINE_OVER_PREFILL,
    TARGET_FIRST_OVER_P50,
    TARGET_OUTLINES_OVER_ENGINE,
    TARGET_PEAK_RSS_MB,
    WARMUP_TEXT,
    BenchOptions,
    LabeledSet,
    Samples,
    bench_prompt,
    load_labeled,
    machine_info,
    make_queries,
    percentile,
    prefill,
    prompt_tokens,
    reset_peak_rss,
    rss_mb,
    timed,
    trie_nodes,
)
from service.predictor import Prompt
from service.runtime.warming import warm_prompt
from service.settings import settings

log = logging.getLogger(__name__)


def run_set(engine, labeler, data: LabeledSet, opts: BenchOptions) -> dict[str, Any]:
    """Every measurement for one labeled set; ``engine`` is warm, ``labeler`` an ``OutlinesLabeler`` on it."""
    prompt = bench_prompt(data.labels, data.pool, opts.shots)
    lead = getattr(engine, "lead", "\n")
    label_set, queries = make_queries(data.labels, data.texts, prompt, lead)
    n = len(queries)
    k_inter = max(1, min(opts.interactive, n))
    k_rebuilt = max(1, min(opts.rebuilt, n))
    k_loop = max(k_inter, min(opts.loop_tasks, n))
    gold = list(data.gold)
    log.info("%s: %d labels, %d tasks", data.name, len(label_set), n)

    # first request of a project never set up: its label trie and instruction prefix are cold
    cold = Samples()
    cold.time(lambda: engine.decide([queries[0]], label_set))
    forget = getattr(engine, "forget", None)
    if forget is not None:
        forget()
    # first request after the project was set up: the service warms a project on /setup and at start
    warm_prompt(engine, prompt.schema, Prompt(prompt.template, prompt.examples))
    first = Samples()
    first_label = first.time(lambda: engine.decide([queries[1 % n]], label_set))[0].labels[0]
    _, warm = make_queries(data.labels, [WARMUP_TEXT], prompt, lead)
    labeler.label(warm, label_set)  # builds and warms the reused Generator
    prefill(engine, warm[0])

    lat = {p: Samples() for p in PATHS}
    engine_single: list[str] = []
    outlines: list[str] = []
    for q in queries[:k_inter]:
        engine_single.append(lat["engine"].time(lambda q=q: engine.decide([q], label_set))[0].labels[0])
        outlines.append(lat["outlines_reused"].time(lambda q=q: labeler.label([q], label_set))[0][0])
        lat["prefill"].time(lambda q=q: prefill(engine, q))
    log.info("%s: interactive done", data.name)

    rebuilt = [
        lat["outlines_rebuilt"].time(lambda q=q: labeler.label([q], label_set, rebuild=True))[0][0]
        for q in queries[:k_rebuilt]
    ]
    log.info("%s: rebuilt done", data.name)

    peak_resettable = reset_peak_rss()
    rss_before_batch, _ = rss_mb()
    batch = Samples()
    engine_batch = [d.labels[0] for d in batch.time(lambda: engine.decide(queries, label_set))]
    _, batch_peak = rss_mb()
    log.info("%s: engine batch done", data.name)

    loop = Samples()
    for q in queries[k_inter:k_loop]:
        outlines.append(loop.time(lambda q=q: labeler.label([q], label_set))[0][0])
    loop_s = sum(lat["outlines_reused"].wall) + sum(loop.wall)
    loop_cpu = sum(lat["outlines_reused"].cpu) + sum(loop.cpu)
    log.info("%s: outlines loop done", data.name)

    p50 = {p: percentile(v.wall, 50) for p, v in lat.items()}
    p95 = {p: percentile(v.wall, 95) for p, v in lat.items()}
    cpu50 = {p: percentile(v.cpu, 50) for p, v in lat.items()}
    tasks_per_s = {"engine": n / batch.wall[0], "outlines_reused": k_loop / loop_s}
    compared = engine_batch[:k_loop]
    accuracy = {
        "engine": _share(compared, gold[:k_loop]),
        "outlines_reused": _share(outlines, gold[:k_loop]),
    }
    _, peak = rss_mb()
    summary: dict[str, Any] = {
        "set": data.name,
        "labels": len(label_set),
        "tasks": n,
        "interactive_tasks": k_inter,
        "rebuilt_calls": k_rebuilt,
        "outlines_loop_tasks": k_loop,
        "prompt_tokens": prompt_tokens(engine, queries),
        "trie_nodes": trie_nodes(engine, label_set),
        "engine_batch_size": getattr(engine, "batch_size", None),
        "interactive_p50_s": p50,
        "interactive_p95_s": p95,
        "interactive_mean_s": {p: sum(v.wall) / len(v.wall) for p, v in lat.items()},
        "interactive_cpu_p50_s": cpu50,
        "ratios": {
            "engine_over_prefill": p50["engine"] / p50["prefill"],
            "outlines_reused_over_engine": p50["outlines_reused"] / p50["engine"],
            "outlines_rebuilt_over_engine": p50["outlines_rebuilt"] / p50["engine"],
        },
        "ratios_cpu": {
            "engine_over_prefill": cpu50["engine"] / cpu50["prefill"],
            "outlines_reused_over_engine": cpu50["outlines_reused"] / cpu50["engine"],
            "outlines_rebuilt_over_engine": cpu50["outlines_rebuilt"] / cpu50["engine"],
        },
        "batch_tasks_per_s": tasks_per_s,
        "batch_speedup": tasks_per_s["engine"] / tasks_per_s["outlines_reused"],
        "batch_speedup_cpu": (loop_cpu / k_loop) / (batch.cpu[0] / n),
        "batch_seconds": {"engine": batch.wall[0], "outlines_reused_measured": loop_s},
        "batch_note": (
            f"engine: one decide() over all {n} tasks; outlines_reused: per-task loop measured on "
            f"{k_loop} of the {n} tasks, tasks/s extrapolated"
        ),
        "first_request_s": first.wall[0],
        "first_request_cpu_s": first.cpu[0],
        "first_request_unwarmed_s": cold.wall[0],
        "first_request_over_p50": first.wall[0] / p50["engine"],
        "peak_rss_mb": peak,
        "rss_before_engine_batch_mb": rss_before_batch,
        "engine_batch_peak_rss_mb": batch_peak if peak_resettable else None,
        "accuracy": accuracy,
        "accuracy_tasks": k_loop,
        "engine_accuracy_all_tasks": _share(engine_batch, gold),
        "agreement": _share(compared, outlines),
        "engine_single_vs_batch_agreement": _share(engine_single, engine_batch[:k_inter]),
        "rebuilt_vs_reused_agreement": _share(rebuilt, outlines[:k_rebuilt]),
        "first_request_label_matches_batch": first_label == engine_batch[1 % n],
        "most_predicted": {
            "engine": Counter(engine_batch).most_common(3),
            "outlines_reused": Counter(outlines).most_common(3),
            "gold": Counter(gold).most_common(3),
        },
    }
    summary["targets"] = targets(summary)
    if opts.shots and data.pool:  # the fused decision on the same tasks, the pool as its evidence
        fused = bench_fused.measure(engine, data, opts.interactive, opts.shots, lead)
        fused.update(bench_fused.compare(fused, p50["engine"], tasks_per_s["engine"]))
        summary["fused"] = fused
        log.info("%s: fused decision done", data.name)
    return summary


def _share(a: Sequence[str], b: Sequence[str]) -> float:
    if len(a) != len(b) or not a:
        raise ValueError("compare equal, non-empty lists")
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def targets(s: dict[str, Any]) -> dict[str, bool]:
    p50 = s["interactive_p50_s"]
    return {
        "engine_p50_le_1.3x_prefill": p50["engine"] <= TARGET_ENGINE_OVER_PREFILL * p50["prefill"],
        "outlines_reused_over_engine_ge_1.6": p50["outlines_reused"] >= TARGET_OUTLINES_OVER_ENGINE * p50["engine"],
        "batch_ge_3x_per_task": s["batch_speedup"] >= TARGET_BATCH_SPEEDUP,
        "first_request_le_1.5x_p50": s["first_request_s"] <= TARGET_FIRST_OVER_P50 * p50["engine"],
        "peak_rss_lt_2500_mb": s["peak_rss_mb"] < TARGET_PEAK_RSS_MB,
        "accuracy_engine_ge_outlines": s["accuracy"]["engine"] >= s["accuracy"]["outlines_reused"],
    }


# -- machine and report ----------------------------------------------------------------------------


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: one column per labeled set."""
    sets = list(report["sets"].values())
    m, cfg = report["machine"], report["config"]
    head = "| | " + " | ".join(f"{s['set']}" for s in sets) + " |"
    rule = "|---" * (len(sets) + 1) + "|"

    def row(name: str, cell: Callable[[dict[str, Any]], str]) -> str:
        return f"| {name} | " + " | ".join(cell(s) for s in sets) + " |"

    def lat(path: str) -> Callable[[dict[str, Any]], str]:
        return lambda s: f"{_f(s['interactive_p50_s'][path])} / {_f(s['interactive_p95_s'][path])}"

    rows = [
        row("labels / tasks", lambda s: f"{s['labels']} / {s['tasks']}"),
        row(
            "prompt tokens (prefix + median body) / trie nodes",
            lambda s: f"{s['prompt_tokens']['prefix']} + {s['prompt_tokens']['body_median']} / {s['trie_nodes']}",
        ),
        row("(a) engine p50 / p95 s", lat("engine")),
        row("(b) outlines reused p50 / p95 s", lat("outlines_reused")),
        row("(c) outlines rebuilt p50 / p95 s", lat("outlines_rebuilt")),
        row("(d) prefill p50 / p95 s", lat("prefill")),
        row("a/d (target <= 1.3)", lambda s: _f(s["ratios"]["engine_over_prefill"], 2)),
        row("b/a (target >= 1.6)", lambda s: _f(s["ratios"]["outlines_reused_over_engine"], 2)),
        row("c/a", lambda s: _f(s["ratios"]["outlines_rebuilt_over_engine"], 1)),
        row(
            "CPU-time p50 s: a / b / c / d",
            lambda s: " / ".join(_f(s["interactive_cpu_p50_s"][p], 2) for p in PATHS),
        ),
        row(
            "a/d, b/a on CPU time",
            lambda s: (
                f"{_f(s['ratios_cpu']['engine_over_prefill'], 2)}, "
                f"{_f(s['ratios_cpu']['outlines_reused_over_engine'], 2)}"
            ),
        ),
        row("batch tasks/s: engine (all tasks)", lambda s: _f(s["batch_tasks_per_s"]["engine"], 2)),
        row(
            "batch tasks/s: outlines reused per task (subset, extrapolated)",
            lambda s: f"{_f(s['batch_tasks_per_s']['outlines_reused'], 2)} ({s['outlines_loop_tasks']} tasks)",
        ),
        row(
            "batch speedup (target >= 3); on CPU time",
            lambda s: f"{_f(s['batch_speedup'], 2)}; {_f(s['batch_speedup_cpu'], 2)}",
        ),
        row(
            "first request after set-up s (x p50; target <= 1.5); never set up s",
            lambda s: (
                f"{_f(s['first_request_s'])} ({_f(s['first_request_over_p50'], 2)}); "
                f"{_f(s.get('first_request_unwarmed_s'))}"
            ),
        ),
        row("peak RSS MiB (target < 2500)", lambda s: f"{s['peak_rss_mb']:.0f}"),
        row(
            "RSS before engine batch -> batch peak MiB",
            lambda s: f"{_f(s['rss_before_engine_batch_mb'], 0)} -> {_f(s['engine_batch_peak_rss_mb'], 0)}",
        ),
        row(
            "accuracy engine / outlines (same tasks)",
            lambda s: (
                f"{_f(s['accuracy']['engine'])} / {_f(s['accuracy']['outlines_reused'])} (n={s['accuracy_tasks']})"
            ),
        ),
        row("engine accuracy, all tasks", lambda s: _f(s["engine_accuracy_all_tasks"])),
        row("top-1 agreement engine vs outlines", lambda s: _f(s["agreement"])),
        row(
            "most predicted (engine on all tasks; outlines on its tasks)",
            lambda s: (
                "engine: "
                + ", ".join(f"{lab} {c}" for lab, c in s["most_predicted"]["engine"])
                + "; outlines: "
                + ", ".join(f"{lab} {c}" for lab, c in s["most_predicted"]["outlines_reused"])
            ),
        ),
        row("engine single vs batched agreement", lambda s: _f(s["engine_single_vs_batch_agreement"])),
    ]
    targets_rows = [
        row(name, lambda s, name=name: "met" if s["targets"][name] else "**missed**")
        for name in (sets[0]["targets"] if sets else {})
    ]
    fused_rows = _fused_rows(sets, row) if sets and all("fused" in s for s in sets) else []
    machine = (
        f"{m['cpu']}, {m['cores_logical']} logical cores, {m['memory_gb']} GB; torch {m['torch']} "
        f"({m['torch_threads']} threads), transformers {m['transformers']}, outlines {m['outlines']}, "
        f"xgrammar {m['xgrammar']}; model {m['model']} in {m['dtype']}; load average at start "
        f"{m['load_average']}, at end {report.get('load_average_end')}; commit {m['git_commit']}"
    )
    lines = [
        f"# prompter bench, {report['date']}",
        "",
        f"Machine: {machine}.",
        "",
        f"Config: calibration={cfg['calibration']}, seed={cfg['seed']}, engine batch size={cfg['batch_size']}, "
        f"{cfg['interactive']} interactive tasks, {cfg['rebuilt']} rebuilt calls, outlines loop on "
        f"{cfg['loop_tasks']} tasks. "
        + (
            f"Default prompt with {cfg['shots']} demonstrations retrieved per task (MiniLM) from {cfg['pool']} "
            "other labeled rows (the agent's retrieval template; Text + single Choices)."
            if cfg.get("shots")
            else "Zero-shot default prompt (Text + single Choices)."
        ),
        "",
        head,
        rule,
        *rows,
        "",
        "## Targets (issue 3)",
        "",
        head,
        rule,
        *targets_rows,
        *fused_rows,
        "",
        "Notes: latencies are wall-clock per call, one task per call, the paths interleaved task by task. "
        "Batch throughput of outlines is its per-task loop measured on a subset and extrapolated. Accuracy and "
        "agreement compare the engine's batched decisions with outlines' greedy answers on the same tasks. "
        "Peak RSS is the whole bench process (model, engine and outlines) up to the end of that set. "
        "CPU time is the process's (all threads): other processes on the machine disturb it less than wall time.",
    ]
    cores = m.get("cores_logical") or 1
    if max(m["load_average"][0], (report.get("load_average_end") or [0])[0]) > cores:
        lines += [
            "",
            f"**Warning:** the load average exceeded the {cores} cores during the run: other processes "
            "competed for the CPU and absolute latencies are inflated; ratios measured task by task hold better.",
        ]
    return "\n".join(lines) + "\n"


def _fused_rows(sets: list[dict[str, Any]], row: Callable) -> list[str]:
    """The fused decision (issue 10) beside the engine on the retrieval prompt of the same run."""
    head = "| | " + " | ".join(f"{s['set']}" for s in sets) + " |"
    rows = [
        row("fused p50 / p95 s (one task through label_tasks)",
            lambda s: f"{_f(s['fused']['interactive_p50_s'])} / {_f(s['fused']['interactive_p95_s'])}"),
        row("fused batch tasks/s", lambda s: _f(s["fused"]["batch_tasks_per_s"], 2)),
        row("prefill of the fused decision's zero-shot prompt, p50 s", lambda s: _f(s["fused"]["prefill_p50_s"])),
        row("fused p50 / retrieval engine p50 (target <= 1.2)", lambda s: _f(s["fused"]["p50_over_retrieval"], 2)),
        row("fused tasks/s / retrieval engine tasks/s (target >= 0.8)",
            lambda s: _f(s["fused"]["batch_tasks_per_s_over_retrieval"], 2)),
        row("fused p50 / its own prefill (target <= 1.3)", lambda s: _f(s["fused"]["p50_over_own_prefill"], 2)),
        row("fused accuracy (pool as evidence, default weights)", lambda s: _f(s["fused"]["accuracy"])),
    ]  # fmt: skip
    targets_rows = [
        row(name, lambda s, name=name: "met" if s["fused"]["targets"][name] else "**missed**")
        for name in sets[0]["fused"]["targets"]
    ]
    return ["", "## The fused decision against the retrieval prompt (issue 10)", "", head,
            "|---" * (len(sets) + 1) + "|", *rows, *targets_rows]  # fmt: skip


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``<date>_<sets>_<dtype>_<calibration>[_<k>shots].json`` and ``.md`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "_".join(
        [
            report["date"],
            "+".join(report["sets"]),
            report["machine"]["dtype"],
            report["config"]["calibration"],
        ]
        + ([f"{report['config']['shots']}shots"] if report["config"].get("shots") else [])
    )
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path


def run_bench(engine, labeler, sets: Sequence[LabeledSet], opts: BenchOptions, config: dict[str, Any]) -> dict:
    """The whole report for already-loaded ``engine`` and ``labeler``."""
    machine = machine_info(engine)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine,
        "config": {**config, **asdict(opts), "calibration": getattr(engine, "calibration", None)},
        "sets": {},
    }
    for data in sets:
        report["sets"][data.name] = run_set(engine, labeler, data, opts)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def warm_up(engine) -> float:
    """The engine's own warm-up (what the service runs at start), or a decision on unrelated text and labels."""
    if hasattr(engine, "warmup"):
        return timed(engine.warmup)[0]
    query = Query("Classify the text.\nOptions: alpha, beta\n\n", f"Text:\n{WARMUP_TEXT}\n", "Label:")
    return timed(lambda: engine.decide([query, query], LabelSet(("alpha", "beta"))))[0]


# -- command line ------------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        help="a {text,label} JSON-lines file (repeatable; default: the dstc11-insurance and banking77 slices)",
    )
    parser.add_argument("--json", type=Path, help="also write the JSON summary to this path")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="results folder (default %(default)s)")
    parser.add_argument("--tasks", type=int, default=200, help="tasks per set, for the batch (default 200)")
    parser.add_argument("--interactive", type=int, default=BenchOptions.interactive, help="tasks timed one by one")
    parser.add_argument("--rebuilt", type=int, default=BenchOptions.rebuilt, help="calls of outlines rebuilt")
    parser.add_argument(
        "--loop-tasks", type=int, default=BenchOptions.loop_tasks, help="tasks of the per-task outlines loop"
    )
    parser.add_argument(
        "--dtype", choices=("auto", "float32", "bfloat16"), default="auto", help="default: what the service runs"
    )
    parser.add_argument("--calibration", choices=("none", "content_free"), default="none")
    parser.add_argument("--batch-size", type=int, default=settings.batch_size, help="engine batch size")
    parser.add_argument("--threads", type=int, default=settings.threads, help="torch CPU threads (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="task sampling seed")
    parser.add_argument(
        "--shots", type=int, default=0, help="demonstrations retrieved per task from --pool other rows (default 0)"
    )
    parser.add_argument("--pool", type=int, default=100, help="labeled rows demonstrations come from (default 100)")
    parser.add_argument(
        "--vllm-url",
        default=None,
        help="compare the local engine with this vLLM server on the same prompts instead (as bench-engines does)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.vllm_url:
        return compare_engines(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = args.data or list(DEFAULT_SETS)
    sets = [load_labeled(p, args.tasks, args.seed, args.pool if args.shots else 0) for p in paths]
    torch.manual_seed(args.seed)
    load_s, (model, tokenizer, model_id) = timed(
        lambda: load_model(settings.model, settings.gguf_file, settings.device, args.dtype, settings.home, args.threads)
    )
    engine = LocalEngine(
        model,
        tokenizer,
        model_id,
        batch_size=args.batch_size,
        batch_tokens=settings.batch_tokens,
        multi_label_threshold=settings.multi_label_threshold,
        calibration=args.calibration,
    )
    warmup_s = warm_up(engine)
    labeler = OutlinesLabeler(engine)
    opts = BenchOptions(args.interactive, args.rebuilt, args.loop_tasks, args.shots)
    config = {"tasks": args.tasks, "seed": args.seed, "batch_size": args.batch_size, "data": [str(p) for p in paths]}
    config.update(shots=args.shots, pool=args.pool if args.shots else 0)
    report = run_bench(engine, labeler, sets, opts, config)
    report["load_s"], report["warmup_s"] = load_s, warmup_s
    json_path, md_path = write_report(report, args.out_dir)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


def compare_engines(args: argparse.Namespace) -> int:
    """`prompter bench --vllm-url URL`: the local and the vLLM engine on the same prompts, in one run."""
    parser = argparse.ArgumentParser(prog="prompter bench")
    bench_engines.configure(parser)
    argv = ["--vllm-url", args.vllm_url, "--tasks", str(args.tasks), "--interactive", str(args.interactive)]
    argv += ["--batch-size", str(args.batch_size), "--dtype", args.dtype, "--seed", str(args.seed)]
    argv += ["--out-dir", str(args.out_dir)] + [a for p in args.data or [] for a in ("--data", str(p))]
    return bench_engines.run(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prompter bench", description=__doc__.splitlines()[0])
    configure(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
