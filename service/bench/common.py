"""What the benchmarks share: the labeled sets, the bench prompt and its queries, timing and machine facts."""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from constraints.base import Query
from constraints.labelset import LabelSet
from service.demonstrations import compose, examples_for
from service.labeling import choices_config, parse_config
from service.prompting import build_query, default_prompt

REPO = Path(__file__).resolve().parents[2]


def shared_data() -> Path:
    """The labeled sets the benchmarks default to: $PROMPTER_SHARED_DATA, ../shared/data beside the checkout,
    or the workplace's /work/shared/data (where CI checks the project out elsewhere)."""
    candidates = [Path(p) for p in (os.environ.get("PROMPTER_SHARED_DATA"),) if p]
    candidates += [REPO.parent / "shared" / "data", Path("/work/shared/data")]
    return next((p for p in candidates if p.is_dir()), candidates[0])


SHARED_DATA = shared_data()
DEFAULT_SETS = (SHARED_DATA / "dstc11-insurance" / "utterances.jsonl", SHARED_DATA / "banking77" / "test.jsonl")
RESULTS_DIR = REPO / "benchmarks" / "results"
PATHS = ("engine", "outlines_reused", "outlines_rebuilt", "prefill")
WARMUP_TEXT = "Hello, I have a question about something else entirely."

# issue 3 targets, read from the benchmark
TARGET_ENGINE_OVER_PREFILL = 1.3
TARGET_OUTLINES_OVER_ENGINE = 1.6
TARGET_BATCH_SPEEDUP = 3.0
TARGET_FIRST_OVER_P50 = 1.5
TARGET_PEAK_RSS_MB = 2500.0


@dataclass(frozen=True)
class LabeledSet:
    """A slice of a ``{"text","label"}`` file; ``labels`` are the file's sorted distinct gold labels."""

    name: str
    texts: tuple[str, ...]
    gold: tuple[str, ...]
    labels: tuple[str, ...]
    pool: tuple[tuple[str, str], ...] = ()  # (text, label) rows apart from the tasks, for demonstrations


@dataclass(frozen=True)
class BenchOptions:
    interactive: int = 20  # tasks timed one per call for engine, outlines reused and prefill
    rebuilt: int = 5  # calls of outlines rebuilt per call (seconds each)
    loop_tasks: int = 40  # tasks the per-task outlines loop runs (throughput extrapolated, agreement, accuracy)
    shots: int = 0  # demonstrations retrieved per task from the set's pool (0: zero-shot)


def set_name(path: Path) -> str:
    return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem


def load_labeled(path: Path, tasks: int, seed: int, pool: int = 0) -> LabeledSet:
    """``tasks`` rows drawn at random (``seed``) from a ``{"text","label"}`` JSON-lines file, and ``pool`` other
    rows for demonstrations."""
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("text"), str) or not isinstance(row.get("label"), str):
                raise ValueError(f"{path}:{n}: expected a string 'text' and a string 'label'")
            rows.append((row["text"], row["label"]))
    if not rows:
        raise ValueError(f"{path}: no labeled rows")
    labels = tuple(sorted({label for _, label in rows}))
    rng = random.Random(seed)
    picked = rng.sample(rows, min(tasks, len(rows)))
    taken = set(picked)
    rest = [r for r in rows if r not in taken]
    extra = tuple(rng.sample(rest, min(pool, len(rest))))
    return LabeledSet(set_name(path), tuple(t for t, _ in picked), tuple(g for _, g in picked), labels, extra)


@dataclass(frozen=True)
class BenchPrompt:
    """The prompt every path gets: the default instruction, with ``shots`` demonstrations retrieved per task
    (the agent's retrieval template and pool) when ``shots`` > 0."""

    schema: Any
    template: str
    examples: dict[str, Any] | None


def bench_prompt(labels: Sequence[str], pool: Sequence[tuple[str, str]] = (), shots: int = 0) -> BenchPrompt:
    schema = parse_config(choices_config(labels, control="intent"))
    if shots <= 0 or not pool:
        return BenchPrompt(schema, default_prompt(schema), None)
    entries = [{"task_id": i, "text": t, "labels": {"intent": [g]}} for i, (t, g) in enumerate(pool)]
    return BenchPrompt(schema, compose(default_prompt(schema), schema, retrieval=True), {"pool": entries, "k": shots})


def make_queries(
    labels: Sequence[str], texts: Sequence[str], prompt: BenchPrompt | None = None, lead: str = "\n"
) -> tuple[LabelSet, list[Query]]:
    """The bench prompt (zero-shot default by default) over ``labels``, one query per text."""
    prompt = prompt or bench_prompt(labels)
    control = prompt.schema.choices[0]
    datas = [{"text": t} for t in texts]
    shots = examples_for(prompt.examples, prompt.schema, datas, lead) or [""] * len(datas)
    queries = [
        build_query(prompt.template, prompt.schema, d, control, examples=e) for d, e in zip(datas, shots, strict=True)
    ]
    return control.label_set, queries


# -- measuring --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not values:
        raise ValueError("no values")
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


@dataclass
class Samples:
    """Wall-clock and process CPU seconds of repeated calls (CPU time is less disturbed by other processes)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def time(self, fn: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)
        return out


def rss_mb() -> tuple[float, float]:
    """(current, peak since start or the last ``reset_peak_rss``) resident set size in MiB."""
    fields = {}
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return fields.get("VmRSS", peak), fields.get("VmHWM", peak)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS mark (Linux), so a phase's own peak can be read."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def prefill(engine, query: Query) -> None:
    """The floor: one forward over the engine's exact prompt tokens, logits for the last position only."""
    ids = engine.prefix_ids(query) + engine.body_ids(query)
    device = next(engine.model.parameters()).device
    with torch.inference_mode():
        engine.model(input_ids=torch.tensor([ids], device=device), logits_to_keep=1)


def prompt_tokens(engine, queries: Sequence[Query]) -> dict[str, int]:
    prefix = len(engine.prefix_ids(queries[0]))
    bodies = sorted(len(engine.body_ids(q)) for q in queries)
    return {"prefix": prefix, "body_median": bodies[len(bodies) // 2], "body_max": bodies[-1]}


def trie_nodes(engine, label_set: LabelSet) -> int | None:
    choice = getattr(engine.compile(label_set), "choice", None)
    return len(choice.trie) if choice is not None else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def engine_code_dirty() -> bool | None:
    """Whether ``constraints/`` has uncommitted changes (then the commit alone does not say what ran)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "constraints"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def machine_info(engine) -> dict[str, Any]:
    import psutil

    dtype = next(engine.model.parameters()).dtype
    return {
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "outlines": _version("outlines"),
        "xgrammar": _version("xgrammar"),
        "torch_threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "model": engine.model_id,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "constraints_uncommitted_changes": engine_code_dirty(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
