"""`prompter eval`: how good is each prompt version against ground truth (labeled file or LS annotations).

Predictions come from the same resumable path as `prompter label` (stored per model version, so a prompt
already run on these tasks is not run again); metrics come from ``service.metrics``; the report
(markdown and PNG plots) from ``service.offline.report``. Each version's result is also stored
(``service.offline.eval_store``): the review page shows a version's latest evaluation.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from constraints.base import Engine
from service import metrics
from service.labeling import ChoiceControl, ConfigError, ProjectSchema
from service.offline.eval_store import save_results
from service.offline.label import Labeled, LabelSummary, score_version, stored_predictions
from service.offline.project import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    Source,
    StoreError,
    add_source_arguments,
    load_engine_for,
    open_source,
    open_store,
    project_prompt,
    run_command,
    say,
)
from service.offline.report import write_report
from service.offline.span_eval import evaluate_spans, span_control
from service.offline.tasks_io import InputError, InputTask, read_text, write_json_atomic
from service.settings import settings
from service.store import repo
from service.store.models import PromptVersion
from service.versions import parse_model_version

PROG = "prompter eval"
log = logging.getLogger(__name__)


@dataclass
class GoldSet:
    """The tasks that can be scored, with their gold labels, and what was left out and why."""

    control: ChoiceControl
    items: list[InputTask] = field(default_factory=list)
    gold: dict[int, list[str]] = field(default_factory=dict)
    unlabeled: int = 0  # no ground truth at all
    unreadable: int = 0  # lines that are not tasks
    unknown: Counter = field(default_factory=Counter)  # gold label not in the config -> tasks
    unknown_tasks: int = 0
    too_many: int = 0  # several gold labels for a single-choice control

    def excluded(self) -> dict[str, Any]:
        return {
            "unlabeled": self.unlabeled,
            "unreadable": self.unreadable,
            "unknown_label_tasks": self.unknown_tasks,
            "unknown_labels": dict(self.unknown.most_common()),
            "several_gold_labels": self.too_many,
        }


def choose_control(schema: ProjectSchema, name: str | None) -> ChoiceControl:
    if not schema.choices:
        raise ConfigError("the labeling config has no Choices control: there are no labels to evaluate")
    if name is None:
        return schema.choices[0]
    for control in schema.choices:
        if control.name == name:
            return control
    names = ", ".join(c.name for c in schema.choices)
    raise InputError(f"no Choices control named {name!r} in the labeling config (it has: {names})")


def annotation_labels(task: dict[str, Any], control: str) -> list[str] | None:
    """The chosen labels of the task's first (not cancelled) annotation for ``control``; None if none."""
    for annotation in task.get("annotations") or []:
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue
        for region in annotation.get("result") or []:
            if isinstance(region, dict) and region.get("from_name") == control and region.get("type") == "choices":
                return [str(c) for c in (region.get("value") or {}).get("choices") or []]
    return None


def gold_set(items: list[InputTask], control: ChoiceControl) -> GoldSet:
    """Gold labels per task as the label set's stored values (a Choice's visible value is accepted too)."""
    label_set = control.label_set
    names = dict(zip(label_set.names, label_set.labels, strict=True))
    out = GoldSet(control)
    for item in items:
        if item.error:
            out.unreadable += 1
            continue
        raw = item.gold if item.gold is not None else annotation_labels(item.task, control.name)
        if not raw:
            out.unlabeled += 1
            continue
        labels = [x if x in label_set.labels else names.get(x, x) for x in dict.fromkeys(raw)]
        unknown = [x for x in labels if x not in label_set.labels]
        if unknown:
            out.unknown.update(unknown)
            out.unknown_tasks += 1
            continue
        if len(labels) > 1 and not label_set.multiple:
            out.too_many += 1
            continue
        out.items.append(item)
        out.gold[item.id] = labels
    return out


@dataclass
class PromptSpec:
    text: str | None = None  # None: the project's active prompt (or the default)
    version_id: int | None = None


def prompt_specs(args: argparse.Namespace) -> list[PromptSpec]:
    """In the order given: --prompt-version, --prompt, --prompt-file; none -> the active prompt."""
    specs = [PromptSpec(version_id=v) for v in args.prompt_version or []]
    specs += [PromptSpec(text=t) for t in args.prompt or []]
    specs += [PromptSpec(text=read_text(f, "prompt file")) for f in args.prompt_file or []]
    return specs or [PromptSpec()]


def resolve_prompt(session: Session, source: Source, spec: PromptSpec) -> PromptVersion:
    if spec.version_id is None:
        return project_prompt(session, source, spec.text)
    try:
        version = session.get(PromptVersion, spec.version_id)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read prompt version {spec.version_id}: {exc}") from None
    if version is None:
        raise InputError(f"no prompt version {spec.version_id} in the store")
    return version


def evaluate_version(
    gold: GoldSet, summary: LabelSummary, predictions: dict, target: float | None, bins: int
) -> dict[str, Any]:
    control = gold.control
    ids = [item.id for item in gold.items if item.id in predictions]
    gold_labels = [gold.gold[i] for i in ids]
    pred_labels = [predictions[i].labels.get(control.name, []) for i in ids]
    scores = [float(predictions[i].score) for i in ids]
    out = metrics.summarize(
        gold_labels,
        pred_labels,
        scores,
        list(control.label_set.labels),
        multiple=control.label_set.multiple,
        bins=bins,
        target_accuracy=target,
    )
    out["labeling"] = summary.as_dict()
    return out


def stored_only(
    session: Session, source: Source, version_id: int, items: list[InputTask]
) -> tuple[LabelSummary, dict[int, Labeled], str]:
    """The stored predictions of a prompt version, without a model: for scoring while a long run goes on."""
    found = [
        mv
        for mv in repo.list_model_versions(session, source.project_id)
        if (parsed := parse_model_version(mv)) and parsed[0] == version_id
    ]
    if len(found) != 1:
        which = f"several model versions ({', '.join(found)})" if found else "no stored predictions"
        raise InputError(f"--stored-only: prompt version {version_id} has {which} for {source.description}")
    stored = stored_predictions(session, source.project_id, found[0])
    predictions = {item.id: stored[item.id] for item in items if item.id in stored}
    summary = LabelSummary(tasks=len(items), skipped=len(predictions))
    if len(predictions) < len(items):
        say(PROG, f"--stored-only: {len(items) - len(predictions)} of {len(items)} tasks have no prediction yet")
    if not predictions:
        raise InputError(f"--stored-only: none of the tasks has a stored prediction with {found[0]}")
    return summary, predictions, found[0]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser`` (the `prompter` CLI's subcommand hook)."""
    parser.description = (
        "Score prompt versions against ground truth: accuracy, macro-F1, per-label P/R/F1, "
        "confusions, calibration (reliability, ECE) and accuracy vs coverage. Predictions missing from "
        "the store are made first (resumably, as `prompter label` does)."
    )
    parser.epilog = "Exit codes: 0 done, 1 Label Studio/store/model failure, 2 bad options or input, 130 interrupted."
    add_source_arguments(parser)
    prompts = parser.add_argument_group("prompts to compare (repeatable; default: the project's active prompt)")
    prompts.add_argument("--prompt-version", type=int, action="append", metavar="ID", help="a stored prompt version")
    prompts.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt template")
    prompts.add_argument("--prompt-file", action="append", metavar="FILE", help="a prompt template from a file")
    scoring = parser.add_argument_group("scoring and outputs")
    scoring.add_argument("--control", metavar="NAME", help="Choices control to score (default: the first)")
    scoring.add_argument(
        "--target-accuracy",
        type=float,
        default=0.9,
        metavar="P",
        help="find the score threshold whose kept predictions reach this accuracy (default: 0.9)",
    )
    scoring.add_argument("--bins", type=int, default=10, metavar="N", help="calibration bins (default: 10)")
    scoring.add_argument("--report", metavar="DIR", help="report folder (default: benchmarks/results/eval-<date>)")
    scoring.add_argument(
        "--stored-only",
        action="store_true",
        help="score only predictions already stored; load no model, label nothing (e.g. during a long run)",
    )
    scoring.add_argument("--no-report", action="store_true", help="no markdown/PNG report")
    scoring.add_argument("--json", metavar="PATH", help="write a machine-readable summary")
    parser.set_defaults(run=command)


def run(args: argparse.Namespace, engine: Engine | None = None) -> int:
    started = time.perf_counter()
    if not 0.0 < args.target_accuracy <= 1.0:
        raise InputError("--target-accuracy must be in (0, 1]")
    if args.bins < 1:
        raise InputError("--bins must be at least 1")
    specs = prompt_specs(args)
    source = open_source(args)
    for note in source.notes:
        say(PROG, note)
    spans = span_control(source.schema, args.control)
    if spans is not None:
        return run_spans(args, source, spans, specs, engine)
    control = choose_control(source.schema, args.control)
    gold = gold_set(source.items, control)
    excluded = gold.excluded()
    if gold.unknown:
        shown = ", ".join(f"{label!r} ({n})" for label, n in gold.unknown.most_common(10))
        more = f" and {len(gold.unknown) - 10} more" if len(gold.unknown) > 10 else ""
        say(
            PROG,
            f"{gold.unknown_tasks} tasks have ground-truth labels that are not in the config's "
            f"'{control.name}' choices and are left out: {shown}{more}",
        )
    if gold.too_many:
        say(PROG, f"{gold.too_many} tasks have several gold labels for single-choice '{control.name}': left out")
    if not gold.items:
        raise InputError(
            f"none of the {len(source.items)} tasks has usable ground truth for '{control.name}' "
            f"(labeled lines with 'label'/'labels', or annotations): {excluded}"
        )
    say(PROG, f"{len(gold.items)} of {len(source.items)} tasks have ground truth; {len(specs)} prompt(s) to score")

    session = open_store(args.db)
    if args.stored_only:
        engine = None
    elif engine is None:
        say(PROG, f"loading the model ({args.model or settings.model})")
        engine = load_engine_for(args)
    elif args.batch_size and hasattr(engine, "batch_size"):
        engine.batch_size = args.batch_size

    runs = []
    model_ids = set()
    for spec in specs:
        version = resolve_prompt(session, source, spec)
        if engine is None:
            summary, predictions, mv = stored_only(session, source, version.id, gold.items)
        else:
            mv, summary, predictions = score_version(
                engine, session, source.project_id, source.schema, version, gold.items, args
            )
        model_ids.add(mv.split("@", 1)[1])
        if summary.interrupted:
            say(PROG, "interrupted; the predictions made so far are stored, rerun to continue")
            return EXIT_INTERRUPTED
        for failure in summary.failures[:10]:
            say(PROG, f"failed: {failure['error']}")
        result = evaluate_version(gold, summary, predictions, args.target_accuracy, args.bins)
        result.update(prompt_version_id=version.id, model_version=mv, prompt=version.text)
        runs.append(result)
        say(
            PROG,
            f"{mv}: accuracy {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}, "
            f"ECE {result['ece']:.3f} on {result['tasks']} tasks",
        )

    saved = save_results(session, source.project_id, source.description, control.name, runs)
    for result, row in zip(runs, saved, strict=True):
        result["evaluation_id"] = row.id
    first = runs[0]
    report: dict[str, Any] = {
        "accuracy": first["accuracy"],
        "macro_f1": first["macro_f1"],
        "micro_f1": first["micro_f1"],
        "ece": first["ece"],
        "per_label": first["per_label"],
        "threshold": first.get("threshold"),
        "tasks": len(source.items),
        "with_gold": len(gold.items),
        "evaluated": first["tasks"],
        "excluded": excluded,
        "control": control.name,
        "multiple": control.label_set.multiple,
        "labels": list(control.label_set.labels),
        "source": source.description,
        "project_id": source.project_id,
        "model": ", ".join(sorted(model_ids)),
        "target_accuracy": args.target_accuracy,
        "versions": runs,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if not args.no_report:
        folder = Path(args.report or Path("benchmarks/results") / f"eval-{datetime.now():%Y%m%d-%H%M%S}")
        path = write_report(report, folder)
        report["report"] = str(path)
        say(PROG, f"report: {path}")
    if args.json:
        write_json_atomic(args.json, report, indent=2)
    return EXIT_OK


def run_spans(args: argparse.Namespace, source: Source, control, specs: list[PromptSpec], engine) -> int:
    """A Labels control: span P/R/F1, exact and partial (``service.offline.span_eval``)."""
    session = open_store(args.db)
    engine = engine or load_engine_for(args)
    versions = [resolve_prompt(session, source, spec) for spec in specs]
    report = evaluate_spans(engine, session, source, control, versions, args)
    for run_ in report["versions"]:
        say(
            PROG,
            f"{run_['model_version']}: span F1 {run_['exact']['f1']:.3f} exact, {run_['partial']['f1']:.3f} partial "
            f"(P {run_['exact']['precision']:.3f}, R {run_['exact']['recall']:.3f}) on {run_['tasks']} tasks",
        )
    if args.json:
        write_json_atomic(args.json, report, indent=2)
    return EXIT_OK


def main(argv: list[str] | None = None, engine: Engine | None = None) -> int:
    """Entry point of `prompter eval`; ``engine`` is for tests and embedding (default: load the model)."""
    parser = argparse.ArgumentParser(prog=PROG)
    configure(parser)
    return run_command(PROG, run, parser.parse_args(argv), engine)


def command(args: argparse.Namespace) -> int:
    """What `prompter <command>` runs with the parsed options."""
    return run_command(PROG, run, args, None)


if __name__ == "__main__":
    sys.exit(main())
