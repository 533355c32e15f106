"""The local engine against the vLLM engine on the same prompts, in one run.

Per labeled set: the zero-shot default prompt over the set's labels (``service.bench.common.make_queries``), the same
token ids for both engines. Interactive latency: one task per call (p50/p95), each engine timed on its own while
the other is quiet (on a shared CPU, vLLM's OpenMP workers right after its request slowed the local engine 12x
when the two were interleaved task by task). Batch throughput: one ``decide`` over all tasks per engine
(tasks/s). Top-1 agreement of the two engines and accuracy against the gold labels. Writes JSON and markdown
under ``benchmarks/results/``.

    prompter bench-engines --vllm-url http://127.0.0.1:8000      # a server from scripts/serve_vllm.sh serve
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from constraints import local, vllm
from constraints.loading import dtype_name
from service.bench.common import (
    DEFAULT_SETS,
    RESULTS_DIR,
    LabeledSet,
    cpu_model,
    git_commit,
    load_labeled,
    make_queries,
    percentile,
    timed,
)
from service.labeling import choices_config, parse_config
from service.predictor import Prompt
from service.prompting import default_prompt
from service.runtime.warming import warm_prompt
from service.settings import settings

log = logging.getLogger(__name__)

QUIET_S = 2.0  # pause before timing an engine, so the other one's worker threads have gone idle

ENGINES = ("local", "vllm")


def _share(a: Sequence[str], b: Sequence[str]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def prefix_cache_counters(url: str) -> tuple[float, float] | None:
    """(queries, hits) of the vLLM server's prefix cache, in tokens, from /metrics."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    found = [re.search(rf"^vllm:prefix_cache_{k}_total\{{[^}}]*\}} (\S+)", text, re.M) for k in ("queries", "hits")]
    return (float(found[0].group(1)), float(found[1].group(1))) if all(found) else None


def compare_set(engines: dict[str, Any], data: LabeledSet, interactive: int, vllm_url: str | None) -> dict[str, Any]:
    """Every measurement for one labeled set; ``engines`` maps a name to a ready engine."""
    label_set, queries = make_queries(data.labels, data.texts)
    n, k = len(queries), max(1, min(interactive, len(queries)))
    log.info("%s: %d labels, %d tasks, %d interactive", data.name, len(label_set), n, k)
    schema = parse_config(choices_config(data.labels, control="intent"))
    for engine in engines.values():  # what the service does when a project is set up
        warm_prompt(engine, schema, Prompt(default_prompt(schema)))
    first = {name: timed(lambda e=e: e.decide([queries[0]], label_set))[0] for name, e in engines.items()}

    latency: dict[str, list[float]] = {name: [] for name in engines}
    for name, engine in engines.items():  # one engine at a time: the other's threads stay idle meanwhile
        time.sleep(QUIET_S)  # the previous engine's workers (vLLM's OpenMP threads spin a while) go quiet
        latency[name] = [timed(lambda e=engine, q=q: e.decide([q], label_set))[0] for q in queries[:k]]
    log.info("%s: interactive done", data.name)

    cache_before = prefix_cache_counters(vllm_url) if vllm_url else None
    batch_s, labels = {}, {}
    for name, engine in engines.items():
        time.sleep(QUIET_S)
        seconds, decisions = timed(lambda e=engine: e.decide(queries, label_set))
        batch_s[name], labels[name] = seconds, [d.labels[0] for d in decisions]
        log.info("%s: %s batch of %d in %.1f s", data.name, name, n, seconds)
    cache_after = prefix_cache_counters(vllm_url) if vllm_url else None

    names = list(engines)
    summary: dict[str, Any] = {
        "set": data.name,
        "labels": len(label_set),
        "tasks": n,
        "interactive_tasks": k,
        "prompt_tokens_median": sorted(engines[names[0]].count_tokens(q.text) for q in queries)[n // 2],
        "first_request_s": first,
        "interactive_p50_s": {name: percentile(v, 50) for name, v in latency.items()},
        "interactive_p95_s": {name: percentile(v, 95) for name, v in latency.items()},
        "batch_s": batch_s,
        "batch_tasks_per_s": {name: n / s for name, s in batch_s.items()},
        "accuracy": {name: _share(v, data.gold) for name, v in labels.items()},
        "top1_agreement": _share(labels[names[0]], labels[names[-1]]),
        "engine_batch_size": {name: getattr(e, "batch_size", None) for name, e in engines.items()},
    }
    if cache_before and cache_after:
        queried = cache_after[0] - cache_before[0]
        summary["vllm_batch_prefix_cache_hit_rate"] = (cache_after[1] - cache_before[1]) / queried if queried else None
    return summary


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    sets = list(report["sets"].values())
    m, cfg = report["machine"], report.get("config", {})
    head = "| | " + " | ".join(s["set"] for s in sets) + " |"
    rule = "|---" * (len(sets) + 1) + "|"

    def row(name: str, cell) -> str:
        return f"| {name} | " + " | ".join(cell(s) for s in sets) + " |"

    rows = [
        row(
            "labels / tasks / median prompt tokens",
            lambda s: f"{s['labels']} / {s['tasks']} / {s['prompt_tokens_median']}",
        )
    ]
    for e in ENGINES:
        rows.append(
            row(
                f"{e}: interactive p50 / p95 (s)",
                lambda s, e=e: f"{_f(s['interactive_p50_s'][e])} / {_f(s['interactive_p95_s'][e])}",
            )
        )
    for e in ENGINES:
        rows.append(
            row(f"{e}: batch tasks/s (one decide over all tasks)", lambda s, e=e: _f(s["batch_tasks_per_s"][e], 2))
        )
    for e in ENGINES:
        first = f"{e}: first request after the project was set up (s)"
        rows.append(row(first, lambda s, e=e: _f(s["first_request_s"][e])))
    rows += [
        row(
            "vLLM / local interactive p50",
            lambda s: _f(s["interactive_p50_s"]["vllm"] / s["interactive_p50_s"]["local"], 2),
        ),
        row(
            "vLLM / local batch throughput",
            lambda s: _f(s["batch_tasks_per_s"]["vllm"] / s["batch_tasks_per_s"]["local"], 2),
        ),
        row("accuracy local / vLLM", lambda s: f"{_f(s['accuracy']['local'])} / {_f(s['accuracy']['vllm'])}"),
        row("top-1 agreement local vs vLLM", lambda s: _f(s["top1_agreement"])),
        row("vLLM prefix-cache hit rate in the batch", lambda s: _f(s.get("vllm_batch_prefix_cache_hit_rate"), 2)),
    ]
    lines = [
        f"# prompter engines: local vs vLLM, {report['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores_logical']} logical cores; load average at start {m['load_average']}, at end "
        f"{report['load_average_end']}; commit {m['git_commit']}.",
        "",
        f"Local engine: {report['local']}. vLLM engine: {report['vllm']}.",
        "",
        f"Command: `{report.get('command', 'python -m service.bench.engines')}`",
        "",
        "Same prompts, same token ids for both engines (zero-shot default prompt); interactive = one task per call, "
        f"each engine timed alone after {QUIET_S:.0f} s of quiet; batch = one `decide` over all tasks "
        "(the vLLM engine sends its "
        f"chunks of {cfg.get('batch_size')} tasks concurrently, "
        f"{cfg.get('vllm_max_concurrency')} requests in flight). Accuracy is the zero-shot base "
        "model's against the gold labels: low, and the same for both engines.",
        "",
        head,
        rule,
        *rows,
    ]
    cores = m.get("cores_logical") or 1
    if max(m["load_average"][0], report["load_average_end"][0]) > cores:
        lines += [
            "",
            f"**Warning:** the load average exceeded the {cores} cores: other processes competed for the CPU and "
            "absolute figures are inflated, and each engine was timed at a different moment of that load.",
        ]
    return "\n".join(lines) + "\n"


def run_compare(engines: dict[str, Any], sets: Sequence[LabeledSet], interactive: int, vllm_url: str) -> dict:
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": {
            "cpu": cpu_model(),
            "cores_logical": os.cpu_count(),
            "git_commit": git_commit(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "sets": {},
    }
    for data in sets:
        report["sets"][data.name] = compare_set(engines, data, interactive, vllm_url)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def _vllm_version(url: str) -> str | None:
    try:
        return httpx.get(f"{url}/version", timeout=5).json().get("version")
    except (httpx.HTTPError, ValueError):
        return None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vllm-url", required=True, help="a vLLM server serving PROMPTER_MODEL (scripts/serve_vllm.sh)"
    )
    parser.add_argument("--vllm-model", default=None, help="served model name (default: the local model id)")
    parser.add_argument("--data", type=Path, action="append", help="a {text,label} JSON-lines file (repeatable)")
    parser.add_argument("--tasks", type=int, default=100, help="tasks per set for the batch (default 100)")
    parser.add_argument("--interactive", type=int, default=20, help="tasks timed one per call (default 20)")
    parser.add_argument("--batch-size", type=int, default=settings.batch_size, help="tasks per engine batch")
    parser.add_argument("--vllm-timeout-s", type=float, default=settings.vllm_timeout_s, help="per request")
    parser.add_argument(
        "--vllm-max-concurrency", type=int, default=settings.vllm_max_concurrency, help="requests in flight"
    )
    parser.add_argument(
        "--dtype", choices=("auto", "float32", "bfloat16"), default="auto", help="local engine dtype (default: auto)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    args.dtype = dtype_name(args.dtype, settings.device)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    paths = args.data or list(DEFAULT_SETS)
    sets = [load_labeled(p, args.tasks, args.seed) for p in paths]
    common = {"batch_size": args.batch_size, "warmup": True}
    load_local_s, local_engine = timed(
        lambda: local.load_engine(settings.model_copy(update={**common, "dtype": args.dtype}))
    )
    vllm_settings = settings.model_copy(
        update={
            **common,
            "vllm_url": args.vllm_url,
            "vllm_model": args.vllm_model,
            "vllm_timeout_s": args.vllm_timeout_s,
            "vllm_max_concurrency": args.vllm_max_concurrency,
        }
    )
    load_vllm_s, vllm_engine = timed(lambda: vllm.load_engine(vllm_settings))
    engines = {"local": local_engine, "vllm": vllm_engine}
    report = run_compare(engines, sets, args.interactive, vllm_engine.url)
    report["local"] = (
        f"{local_engine.model_id} in {args.dtype}, in-process trie scoring, loaded in {load_local_s:.1f} s"
    )
    report["vllm"] = (
        f"vLLM {_vllm_version(vllm_engine.url)} at {vllm_engine.url} serving {vllm_engine.served_model} (bfloat16 "
        f"with scripts/serve_vllm.sh), branch-point scoring over HTTP, engine ready in {load_vllm_s:.1f} s"
    )
    argv = sys.argv[1:]
    command = argv if argv and argv[0] in ("bench", "bench-engines") else ["bench-engines", *argv]
    report["command"] = "prompter " + " ".join(command)
    report["config"] = {
        "vllm_timeout_s": args.vllm_timeout_s,
        "vllm_max_concurrency": args.vllm_max_concurrency,
        "tasks": args.tasks,
        "interactive": args.interactive,
        "batch_size": args.batch_size,
        "seed": args.seed,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{report['date']}_engines_local-{args.dtype}-vs-vllm_{'+'.join(report['sets'])}"
    (args.out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {args.out_dir / stem}.json and .md", file=sys.stderr)
    vllm_engine.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.bench.engines", description=__doc__.splitlines()[0])
    configure(parser)
    return run(parser.parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
