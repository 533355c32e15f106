"""``prompter simulate`` on a span file (``{"text", "spans": [{start, end, label, text}]}`` per line).

The annotator's corrections become the prompt version's demonstration pool (each corrected task with its
spans; a task retrieves its nearest ones by MiniLM, as Choices retrieval does), and the held-out tasks are
tagged through the one decision path (``prepare`` / ``decide``): the corrections' phrases (``service.span_phrases``)
with the model's spans in their silences (``service.span_decisions``), the ``heldout_*`` figures. Next to it, on
the same corrections, the dictionary baseline (``service.span_dictionary``), the phrase tagger alone, the model
alone (its spans as written) and both at other thresholds on the model's probability.
Held-out tasks are never in the pool.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from constraints.base import Engine
from service import span_metrics
from service.demonstrations import compose
from service.labeling import labels_config, parse_config
from service.offline.tasks_io import InputError
from service.predictor import Prompt, decide, label_tasks, prepare
from service.prompting import default_prompt
from service.span_decisions import fused_regions
from service.span_dictionary import Dictionary
from service.span_fusion import fuse

CONTROL = "slots"


@dataclass(frozen=True)
class SpanRow:
    text: str
    spans: tuple[tuple[int, int, str], ...]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(label, self.text[a:b]) for a, b, label in self.spans]


def is_span_file(path: Path) -> bool:
    """True when the file's first record carries ``spans``."""
    try:
        with path.open(encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        return isinstance(json.loads(first).get("spans"), list)
    except (OSError, ValueError, AttributeError):
        return False


def read_spans(path: Path) -> list[SpanRow]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            spans = tuple(sorted((int(s["start"]), int(s["end"]), str(s["label"])) for s in item["spans"]))
            text = item["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}:{n}: expected {{'text', 'spans': [{{start, end, label}}]}} ({exc})") from None
        if any(not (0 <= a < b <= len(text)) for a, b, _ in spans):
            raise InputError(f"{path}:{n}: a span lies outside the text")
        rows.append(SpanRow(text, spans))
    return rows


def pool(rows: list[SpanRow]) -> list[dict[str, Any]]:
    return [
        {"task_id": 10_000_000 + i, "text": r.text, "labels": {}, "spans": {CONTROL: [list(p) for p in r.pairs]}}
        for i, r in enumerate(rows)
    ]


THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def _scored(result: list[dict]) -> list[tuple[tuple[int, int, str], float]]:
    """A prediction's span regions as ((start, end, label), probability)."""
    return [
        ((r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]), r["score"])
        for r in result
        if r.get("type") == "labels"
    ]


def _above(spans: list[tuple[tuple[int, int, str], float]], threshold: float) -> list[tuple[int, int, str]]:
    return [s for s, p in spans if p >= threshold]


def _figures(gold: list[SpanRow], pred: list[list[tuple[int, int, str]]]) -> dict[str, Any]:
    scores = span_metrics.both([r.spans for r in gold], pred)
    exact_tasks = sum(1 for r, p in zip(gold, pred, strict=True) if set(r.spans) == set(p))
    return {
        "accuracy": round(exact_tasks / len(gold), 4) if gold else 0.0,  # tasks whose spans are all exactly right
        "span_f1": round(scores["exact"]["f1"], 4),
        "span_f1_partial": round(scores["partial"]["f1"], 4),
        "precision": round(scores["exact"]["precision"], 4),
        "recall": round(scores["exact"]["recall"], 4),
        "per_label_f1": {k: round(v["f1"], 4) for k, v in scores["exact"]["per_label"].items()},
    }


def run_spans(
    engine: Engine,
    train: list[SpanRow],
    heldout: list[SpanRow],
    steps: list[int],
    k: int = 8,
    latency_tasks: int = 10,
    log=print,
) -> dict[str, Any]:
    """Held-out span F1 after each number of corrections in ``steps`` (0 = no demonstrations)."""
    labels = sorted({x for r in train + heldout for *_, x in r.spans})
    schema = parse_config(labels_config(labels, CONTROL))
    control = schema.spans[0]
    template = compose(default_prompt(schema), schema, retrieval=True)
    tasks = [{"id": i + 1, "data": {"text": r.text}} for i, r in enumerate(heldout)]
    started = time.perf_counter()
    out_rounds = []
    for n in steps:
        seen = train[:n]
        prompt = Prompt(template, {"pool": pool(seen), "k": k})
        t0 = time.perf_counter()
        contexts = prepare(engine, schema, tasks, prompt)
        alone = [replace(c, span_evidence={}) for c in contexts]  # the model's spans as written, for the curve
        preds = decide(engine, schema, tasks, prompt, alone)
        batch_s = time.perf_counter() - t0
        scored = [_scored(p.result) for p in preds]
        model = [[s for s, _ in task] for task in scored]
        dictionary = Dictionary(p for r in seen for p in r.pairs)
        by_dict = [dictionary.occurrences(r.text) for r in heldout]
        phrases = [[f[:3] for f in c.span_evidence.get(CONTROL) or []] for c in contexts]
        fused = []  # the service's decision: the same function /predict applies
        for task, pred, ctx in zip(tasks, preds, contexts, strict=True):
            found = ctx.span_evidence.get(CONTROL)
            regions = [r for r in pred.result if r["type"] == "labels"]
            if found is not None:
                regions, _ = fused_regions(control, task["data"]["text"], regions, found)
            fused.append([s for s, _ in _scored(regions)])
        curve = {
            str(t): {
                "model": _figures(heldout, [_above(m, t) for m in scored])["span_f1"],
                "fused": _figures(heldout, [fuse(p, _above(m, t)) for m, p in zip(scored, phrases, strict=True)])[
                    "span_f1"
                ],
            }
            for t in THRESHOLDS
        }
        latencies = []
        for task in tasks[:latency_tasks]:
            t1 = time.perf_counter()
            label_tasks(engine, schema, [task], prompt)
            latencies.append(time.perf_counter() - t1)
        row = {
            "corrections": n,
            **{f"heldout_{key}": v for key, v in _figures(heldout, fused).items()},
            "model_only": _figures(heldout, model),
            "phrases_only": _figures(heldout, phrases),
            "span_f1_by_min_score": curve,
            "baselines": {f"dictionary_{key}": v for key, v in _figures(heldout, by_dict).items()},
            "dictionary_phrases": len(dictionary),
            "empty_predicted": sum(1 for m in model if not m),
            "empty_gold": sum(1 for r in heldout if not r.spans),
            "batch_tasks_per_s": round(len(tasks) / batch_s, 3),
            "interactive_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        }
        out_rounds.append(row)
        base = row["baselines"]
        log(
            f"{n} corrections: span F1 exact {row['heldout_span_f1']:.3f} "
            f"partial {row['heldout_span_f1_partial']:.3f}; "
            f"dictionary {base['dictionary_span_f1']:.3f} / {base['dictionary_span_f1_partial']:.3f}; "
            f"model alone {row['model_only']['span_f1']:.3f} / {row['model_only']['span_f1_partial']:.3f}; "
            f"phrases alone {row['phrases_only']['span_f1']:.3f} / {row['phrases_only']['span_f1_partial']:.3f}; "
            f"{row['batch_tasks_per_s']:.2f} tasks/s, p50 {row['interactive_p50_s']} s"
        )
    last, first = out_rounds[-1], out_rounds[0]
    return {
        "mode": "spans",
        "final_heldout_accuracy": last["heldout_accuracy"],
        "final_heldout_micro_f1": last["heldout_span_f1"],
        "default_prompt_accuracy": first["heldout_accuracy"],
        "default_prompt_micro_f1": first["heldout_span_f1"],
        "model": engine.model_id,
        "labels": len(labels),
        "heldout": len(heldout),
        "corrections": len(train),
        "rounds": out_rounds,
        "final_heldout_span_f1": last["heldout_span_f1"],
        "final_heldout_span_f1_partial": last["heldout_span_f1_partial"],
        "final_model_only_span_f1": last["model_only"]["span_f1"],
        "final_model_only_span_f1_partial": last["model_only"]["span_f1_partial"],
        "final_phrases_only_span_f1": last["phrases_only"]["span_f1"],
        "final_phrases_only_span_f1_partial": last["phrases_only"]["span_f1_partial"],
        "baselines": {
            "default_prompt": first["heldout_span_f1"],
            "dictionary_span_f1": last["baselines"]["dictionary_span_f1"],
            "dictionary_span_f1_partial": last["baselines"]["dictionary_span_f1_partial"],
            "note": "every exact, word-bounded occurrence of a span text seen in the same corrections, "
            "tagged with its most frequent label (longest first)",
        },
        "final_prompt": template,
        "final_pool_size": len(train[: steps[-1]]),
        "seconds": round(time.perf_counter() - started, 1),
    }


def sample_spans(path: Path, heldout: int, corrections: int, seed: int) -> tuple[list[SpanRow], list[SpanRow]]:
    rows = read_spans(path)
    rng = random.Random(seed)
    shuffled = list(rows)
    rng.shuffle(shuffled)
    return shuffled[heldout : heldout + corrections], shuffled[:heldout]
