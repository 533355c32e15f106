"""``prompter simulate``: the whole agent loop offline, with a labeled JSONL file as the annotator.

Corrections arrive in rounds. Each round the batch is predicted with the active prompt (as ``/predict`` would),
annotated with its gold labels, recorded as corrections, and a refinement runs; a proposal is accepted when
it passed the validation rule (cross-validated, a one-sided exact test, as in the service). Held-out tasks
are never stored, so the loop never sees them; after every round the active prompt is scored on them, next to
baselines trained on the same corrections: the default prompt, and MiniLM embeddings with logistic regression
and with 1-nearest-neighbour.
Same store (a temporary SQLite file, migrated), same agent code as the service.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session

from agent import review
from agent.corrections import record_corrections
from agent.loop import refine
from agent.simulate_spans import is_span_file, run_spans, sample_spans
from constraints.base import Engine
from constraints.engines import load_engine
from service import embeddings, fusion, metrics
from service.labeling import ProjectSchema, choices_config, parse_config
from service.offline.tasks_io import InputError
from service.predictor import Prompt, label_tasks, prepare
from service.projects import ensure_prompt
from service.prompting import build_query
from service.settings import AgentSettings, settings
from service.store import db, repo
from service.store.models import AnnotationCreate, PromptVersion
from service.store.tasks import remember_tasks
from service.versions import model_version

PROJECT = "simulate"
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


@dataclass(frozen=True)
class Row:
    text: str
    labels: tuple[str, ...]


def read_jsonl(path: Path) -> tuple[list[Row], bool]:
    """Rows of ``{"text","label"}`` or ``{"text","labels"}``; True when the file is multi-label. InputError
    names the file (and the line) that cannot be read."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    rows, multiple = [], False
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise InputError(f"{path}:{n}: expected an object with a 'text' string")
        if isinstance(item.get("labels"), list):
            multiple = True
            rows.append(Row(item["text"], tuple(str(x) for x in item["labels"])))
        elif item.get("label") is not None:
            rows.append(Row(item["text"], (str(item["label"]),)))
        else:
            raise InputError(f"{path}:{n}: no 'label' or 'labels'")
    return rows, multiple


# -- baselines on the same corrections ------------------------------------------------------------------


def _figures(pred: list[set[str]], gold: list[set[str]]) -> dict[str, float]:
    """Exact-match accuracy and micro-F1 (equal for single choice) of label sets."""
    return {"accuracy": metrics.accuracy(gold, pred), "micro_f1": metrics.micro_f1(gold, pred)}


def classic_baselines(train: list[Row], test: list[Row], multiple: bool, labels: list[str]) -> dict[str, float]:
    """What a user could run instead, on the same corrections: MiniLM + logistic regression, MiniLM 1-NN, the
    similarity to the label names alone (no corrections; multiple choice: every label whose name reaches cosine
    0.4), and 1-NN over the corrections and the label names together."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    x_train = embeddings.embed([r.text for r in train])
    x_test = embeddings.embed([r.text for r in test])
    names = embeddings.embed([fusion.label_words(x) for x in labels])
    gold = [set(r.labels) for r in test]
    sims, know = x_test @ x_train.T, x_test @ names.T
    nearest = sims.argmax(axis=1)
    knn = [set(train[j].labels) for j in nearest]
    by_name = [{labels[j]} for j in know.argmax(axis=1)]
    named = [{labels[j] for j in np.nonzero(row >= 0.4)[0]} for row in know] if multiple else by_name
    knn_names = [n if know[i].max() > sims[i].max() else k for i, (n, k) in enumerate(zip(by_name, knn, strict=True))]
    if multiple:
        binarizer = MultiLabelBinarizer().fit([r.labels for r in train + test])
        model = OneVsRestClassifier(LogisticRegression(C=10.0, max_iter=2000))
        model.fit(x_train, binarizer.transform([r.labels for r in train]))
        logreg = [set(x) for x in binarizer.inverse_transform(model.predict(x_test))]
    else:
        y = [r.labels[0] for r in train]
        logreg = (
            [{y[0]}] * len(test)
            if len(set(y)) < 2
            else [{p} for p in LogisticRegression(C=10.0, max_iter=2000).fit(x_train, y).predict(x_test)]
        )
    out: dict[str, float] = {}
    for name, pred in (("minilm_logreg", logreg), ("minilm_1nn", knn), ("label_names", named),
                       ("knn1_label_names", knn_names)):  # fmt: skip
        figures = _figures(pred, gold)
        out[name] = figures["accuracy"]
        if multiple:
            out[f"{name}_micro_f1"] = figures["micro_f1"]
    return out


# -- the simulated project -----------------------------------------------------------------------------------


@dataclass
class VersionScore:
    accuracy: float
    p50_s: float
    prompt_tokens: float
    micro_f1: float = 0.0
    macro_f1: float = 0.0
    ece: float = 0.0  # of the score Label Studio gets, against exact correctness (15 bins)


class Simulation:
    def __init__(self, engine: Engine, schema: ProjectSchema, session: Session, cfg: AgentSettings) -> None:
        self.engine, self.schema, self.session, self.cfg = engine, schema, session, cfg
        self.control = schema.choices[0].name
        self._scores: dict[int, VersionScore] = {}
        self.next_task = 1

    def tasks(self, rows: list[Row], start: int) -> list[dict[str, Any]]:
        return [{"id": start + i, "data": {"text": r.text}} for i, r in enumerate(rows)]

    def predict(self, version: PromptVersion, tasks: list[dict[str, Any]], model: bool = True):
        prompt = Prompt.of(version)
        return label_tasks(self.engine, self.schema, tasks, replace(prompt, model=model) if not model else prompt)

    def heldout_figures(self, version: PromptVersion, heldout: list[Row], model: bool = True) -> dict[str, float]:
        """Accuracy, micro- and macro-F1 and ECE of the version on the held-out tasks (never stored)."""
        preds = self.predict(version, self.tasks(heldout, 1_000_000), model)
        gold = [list(r.labels) for r in heldout]
        pred = [p.labels[self.control] for p in preds]
        hits = metrics.exact_match(gold, pred)
        labels = list(self.schema.choices[0].label_set.labels)
        return {
            "accuracy": metrics.accuracy(gold, pred),
            "micro_f1": metrics.micro_f1(gold, pred),
            "macro_f1": metrics.macro_f1(metrics.per_label(gold, pred, labels)),
            "ece": fusion.ece([p.score for p in preds], hits),
        }

    def score(self, version: PromptVersion, heldout: list[Row], latency_tasks: int) -> VersionScore:
        """Held-out accuracy (tasks never stored) and the p50 of one-task interactive calls; cached per version."""
        if version.id in self._scores:
            return self._scores[version.id]
        tasks = self.tasks(heldout, 1_000_000)
        figures = self.heldout_figures(version, heldout)
        seconds = []
        for task in tasks[:latency_tasks]:
            started = time.perf_counter()
            self.predict(version, [task])
            seconds.append(time.perf_counter() - started)
        contexts = prepare(self.engine, self.schema, tasks[:latency_tasks], Prompt.of(version))
        tokens = [
            self.engine.count_tokens(
                build_query(version.text, self.schema, t["data"], self.schema.choices[0], examples=c.shots).text
            )
            for t, c in zip(tasks[:latency_tasks], contexts, strict=True)
        ]
        p50 = statistics.median(seconds) if seconds else 0.0
        result = VersionScore(
            figures["accuracy"], p50, statistics.mean(tokens or [0]), figures["micro_f1"], figures["macro_f1"],
            figures["ece"],
        )  # fmt: skip
        self._scores[version.id] = result
        return result

    def annotate(self, rows: list[Row]) -> None:
        """One round of the annotator: the batch is predicted and stored as ``/predict`` would, then annotated."""
        tasks = self.tasks(rows, self.next_task)
        self.next_task += len(rows)
        remember_tasks(self.session, PROJECT, tasks)
        version = ensure_prompt(self.session, PROJECT, self.schema)
        mv = model_version(version.id, self.engine.model_id)
        preds = self.predict(version, tasks)
        repo.save_predictions(
            self.session, [p.row(PROJECT, t["id"], version.id, mv) for t, p in zip(tasks, preds, strict=True)]
        )
        for task, row in zip(tasks, rows, strict=True):
            annotation = repo.upsert_annotation(
                self.session,
                AnnotationCreate(
                    id=task["id"], project_id=PROJECT, task_id=task["id"], choices={self.control: list(row.labels)}
                ),
            )
            record_corrections(self.session, self.engine, self.schema, PROJECT, annotation)


def run(
    engine: Engine,
    train: list[Row],
    heldout: list[Row],
    multiple: bool,
    rounds: int,
    cfg: AgentSettings,
    control: str = "intent",
    latency_tasks: int = 10,
    log=print,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """The simulation on ``train`` (the corrections, in order) scored on ``heldout``; returns the summary.

    ``labels`` is the whole label set (default: the labels seen in ``train`` and ``heldout``).
    """
    labels = labels or sorted({x for r in train + heldout for x in r.labels})
    schema = parse_config(choices_config(labels, multiple, control))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prompter-simulate-") as folder:
        url = f"sqlite:///{Path(folder) / 'simulate.sqlite3'}"
        db.migrate(url)
        try:
            with Session(db.sql_engine(url)) as session:
                repo.upsert_project(session, PROJECT, choices_config(labels, multiple, control))
                sim = Simulation(engine, schema, session, cfg)
                default = ensure_prompt(session, PROJECT, schema)
                base = sim.score(default, heldout, latency_tasks)
                log(f"labels {len(labels)}, held-out {len(heldout)}, corrections {len(train)} in {rounds} rounds")
                log(f"round 0: default prompt held-out accuracy {base.accuracy:.3f}, p50 {base.p50_s:.2f} s")
                out_rounds = []
                size = -(-len(train) // rounds)
                for r in range(rounds):
                    batch = train[r * size : (r + 1) * size]
                    if not batch:
                        break
                    t0 = time.perf_counter()
                    sim.annotate(batch)
                    seen = train[: r * size + len(batch)]
                    outcome = refine(session, engine, PROJECT, "simulate", cfg)
                    accepted = None
                    if outcome.proposal is not None:
                        review.accept_proposal(session, outcome.proposal.id, decided_by="simulate")
                        accepted = {
                            "strategy": outcome.proposal.strategy,
                            "p_value": outcome.proposal.metrics["p_value"],
                            "validation_accuracy": outcome.proposal.metrics["accuracy"],
                            "validation_tasks": outcome.proposal.metrics["validation_tasks"],
                        }
                    loop_seconds = time.perf_counter() - t0
                    active = repo.active_prompt(session, PROJECT)
                    scored = sim.score(active, heldout, latency_tasks)
                    classic = classic_baselines(seen, heldout, multiple, labels)
                    out_rounds.append(
                        {
                            "round": r + 1,
                            "corrections": len(seen),
                            "heldout_accuracy": round(scored.accuracy, 4),
                            "heldout_micro_f1": round(scored.micro_f1, 4),
                            "heldout_ece": round(scored.ece, 4),
                            "accepted": accepted is not None,
                            "proposal": accepted,
                            "candidates": outcome.candidates,
                            "active_version": active.id,
                            "pool_size": len((active.examples or {}).get("pool", [])),
                            "interactive_p50_s": round(scored.p50_s, 3),
                            "prompt_tokens": round(scored.prompt_tokens, 1),
                            "baselines": {k: round(v, 4) for k, v in classic.items()},
                            "loop_seconds": round(loop_seconds, 1),
                        }
                    )
                    verdict = f"accepted {accepted['strategy']}" if accepted else "no proposal accepted"
                    log(
                        f"round {r + 1}: {len(seen)} corrections, {verdict}; held-out accuracy {scored.accuracy:.3f} "
                        f"micro-F1 {scored.micro_f1:.3f} ECE {scored.ece:.3f} (logreg {classic['minilm_logreg']:.3f}, "
                        f"1-NN {classic['minilm_1nn']:.3f}, 1-NN+names {classic['knn1_label_names']:.3f}); "
                        f"p50 {scored.p50_s:.2f} s, {scored.prompt_tokens:.0f} prompt tokens; loop {loop_seconds:.0f} s"
                    )
                final = repo.active_prompt(session, PROJECT)
                final_text, final_pool = final.text, len((final.examples or {}).get("pool", []))
                final_decision = final.decision
                without_model = sim.heldout_figures(final, heldout, model=False)
                log(
                    f"ablation: final version without the model's evidence {without_model['accuracy']:.3f} "
                    f"(micro-F1 {without_model['micro_f1']:.3f})"
                )
        finally:
            db.dispose_engine()
    last = out_rounds[-1] if out_rounds else None
    return {
        "model": engine.model_id,
        "labels": len(labels),
        "multiple": multiple,
        "heldout": len(heldout),
        "corrections": len(train),
        "rounds": out_rounds,
        "baselines": {
            "default_prompt": round(base.accuracy, 4),
            **(last["baselines"] if last else {}),
            "note": "classic baselines: all-MiniLM-L6-v2 embeddings of the same corrections; "
            "LogisticRegression(C=10), 1-nearest-neighbour by cosine",
        },
        "default_prompt_p50_s": round(base.p50_s, 3),
        "final_heldout_accuracy": last["heldout_accuracy"] if last else round(base.accuracy, 4),
        "final_heldout_micro_f1": last["heldout_micro_f1"] if last else round(base.micro_f1, 4),
        "final_heldout_ece": last["heldout_ece"] if last else round(base.ece, 4),
        "default_prompt_micro_f1": round(base.micro_f1, 4),
        "default_prompt_accuracy": round(base.accuracy, 4),
        "ablation": {
            "without_model": round(without_model["accuracy"], 4),
            "without_model_micro_f1": round(without_model["micro_f1"], 4),
            "note": "the final version decided with the model's evidence off (label knowledge and corrections only)",
        },
        "final_decision": final_decision,
        "final_prompt": final_text,
        "final_pool_size": final_pool,
        "accepted_lowered_heldout": _lowered(base.accuracy, out_rounds),
        "agent_settings": cfg.model_dump(exclude={"teacher_api_key"}),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _lowered(start: float, rounds: list[dict[str, Any]]) -> list[int]:
    """Rounds whose accepted proposal lowered held-out accuracy (should be none)."""
    out, previous = [], start
    for r in rounds:
        if r["accepted"] and r["heldout_accuracy"] < previous:
            out.append(r["round"])
        previous = r["heldout_accuracy"]
    return out


def markdown(summary: dict[str, Any], name: str) -> str:
    b, multiple = summary["baselines"], summary["multiple"]
    key = "micro_f1" if multiple else "accuracy"
    fig = "micro-F1" if multiple else "accuracy"

    def base(r: dict[str, Any], name: str) -> str:
        value = r["baselines"].get(f"{name}_micro_f1" if multiple else name)
        return f"{value:.3f}" if value is not None else ""

    lines = [
        f"# prompter simulate: {name}",
        "",
        f"Model {summary['model']}, {summary['labels']} labels, {summary['heldout']} held-out tasks never seen by the "
        f"loop, {summary['corrections']} corrections in {len(summary['rounds'])} rounds; {summary['seconds']:.0f} s. "
        f"Held-out {fig} of the active version, next to baselines on the same corrections.",
        "",
        f"| round | corrections | accepted | held-out {fig} | ECE | label names | MiniLM+LogReg | MiniLM 1-NN "
        "| 1-NN + names | p50 s | prompt tokens |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| 0 | 0 | default prompt | {summary['default_prompt_' + key]:.3f} "
        f"| | {b.get('label_names_micro_f1' if multiple else 'label_names', 0):.3f} | | | "
        f"| {summary['default_prompt_p50_s']:.2f} | |",
    ]
    for r in summary["rounds"]:
        acc = r["proposal"]["strategy"] if r["accepted"] else "-"
        lines.append(
            f"| {r['round']} | {r['corrections']} | {acc} | {r['heldout_' + key]:.3f} | {r['heldout_ece']:.3f} "
            f"| {base(r, 'label_names')} | {base(r, 'minilm_logreg')} | {base(r, 'minilm_1nn')} "
            f"| {base(r, 'knn1_label_names')} | {r['interactive_p50_s']:.2f} | {r['prompt_tokens']:.0f} |"
        )
    ablation = summary["ablation"]["without_model_micro_f1" if multiple else "without_model"]
    final = summary["final_heldout_micro_f1" if multiple else "final_heldout_accuracy"]
    lines += [
        "",
        f"Final held-out {fig} {final:.3f} (ECE {summary['final_heldout_ece']:.3f}); without the model's evidence "
        f"{ablation:.3f}. How the final version decides: `{json.dumps(summary.get('final_decision'))}`",
        "",
        "Final prompt:",
        "",
        "```",
        summary["final_prompt"],
        "```",
        "",
    ]
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="labeled JSONL: {'text','label'} or {'text','labels'} per line")
    parser.add_argument("--test", type=Path, help="held-out tasks from this JSONL (default: sampled from DATA)")
    parser.add_argument("--corrections", type=int, default=100, help="corrections in all (default 100)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds the corrections arrive in (default 4)")
    parser.add_argument("--heldout", type=int, default=200, help="held-out tasks (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategies", default=None, help="comma-separated (default PROMPTER_AGENT_STRATEGIES)")
    parser.add_argument("--latency-tasks", type=int, default=10, help="one-task calls timed per prompt (p50)")
    parser.add_argument("--name", default=None, help="results file name (default: the data file's folder)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    parser.set_defaults(run=run_command)


def sample(args: argparse.Namespace) -> tuple[list[Row], list[Row], bool, list[str]]:
    """(corrections in arrival order, held-out tasks, multi-label?, every label in the files)."""
    rows, multiple = read_jsonl(args.data)
    labels = {x for r in rows for x in r.labels}
    rng = random.Random(args.seed)
    if args.test:
        test_rows, test_multiple = read_jsonl(args.test)
        multiple = multiple or test_multiple
        labels |= {x for r in test_rows for x in r.labels}
        heldout = rng.sample(test_rows, min(args.heldout, len(test_rows)))
        pool = list(rows)
    else:
        shuffled = list(rows)
        rng.shuffle(shuffled)
        heldout, pool = shuffled[: args.heldout], shuffled[args.heldout :]
    rng.shuffle(pool)
    return pool[: args.corrections], heldout, multiple, sorted(labels)


def run_spans_command(args: argparse.Namespace, engine: Engine | None = None) -> int:
    """Span mode: 0 and ``--corrections`` corrections, scored on ``--heldout`` tasks."""
    try:
        train, heldout = sample_spans(args.data, args.heldout, args.corrections, args.seed)
    except InputError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    if engine is None:
        engine = load_engine(settings)
    summary = run_spans(engine, train, heldout, sorted({0, len(train)}), latency_tasks=args.latency_tasks)
    summary.update(data=str(args.data), seed=args.seed)
    name = args.name or args.data.stem
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"simulate-{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"final held-out span F1 {summary['final_heldout_span_f1']:.3f} (partial "
        f"{summary['final_heldout_span_f1_partial']:.3f}), "
        f"dictionary {summary['baselines']['dictionary_span_f1']:.3f}; "
        f"results in {args.out}/simulate-{name}.json"
    )
    return 0


def run_command(args: argparse.Namespace, engine: Engine | None = None) -> int:
    if is_span_file(args.data):
        return run_spans_command(args, engine)
    try:
        train, heldout, multiple, labels = sample(args)
    except InputError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    if not train or not heldout:
        print("simulate: need at least one correction and one held-out task", file=sys.stderr)
        return 2
    cfg = settings.agent.model_copy(update={"seed": args.seed})
    if args.strategies:
        cfg = cfg.model_copy(update={"strategies": [s.strip() for s in args.strategies.split(",") if s.strip()]})
        AgentSettings.model_validate(cfg.model_dump())  # refuse unknown strategy names
    if engine is None:
        engine = load_engine(settings)
    summary = run(engine, train, heldout, multiple, args.rounds, cfg, latency_tasks=args.latency_tasks, labels=labels)
    summary["data"] = str(args.data)
    summary["test"] = str(args.test) if args.test else None
    summary["seed"] = args.seed
    name = args.name or args.data.parent.name or args.data.stem
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"simulate-{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / f"simulate-{name}.md").write_text(markdown(summary, name))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"final held-out accuracy {summary['final_heldout_accuracy']:.3f}; results in {args.out}/simulate-{name}.*")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prompter simulate", description=__doc__.splitlines()[0])
    configure(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
