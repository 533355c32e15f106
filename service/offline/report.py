"""The eval report: one markdown page with PNG plots (reliability, accuracy vs coverage, confusions)."""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

COVERAGE_MARKS = (1.0, 0.9, 0.75, 0.5, 0.25, 0.1)
MAX_MATRIX_TABLE = 12  # confusion matrices larger than this are shown as a picture and a top list only


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "run"


def _save(fig: plt.Figure, path: Path) -> None:
    """Save through a temporary file and a rename, like every other output."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def plot_reliability(runs: list[dict[str, Any]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    for run in runs:
        bins = [b for b in run["reliability"] if b["count"]]
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            marker="o",
            label=f"{run['model_version']} (ECE {run['ece']:.3f})",
        )
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean score in bin", ylabel="accuracy in bin", title="Reliability")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_coverage(runs: list[dict[str, Any]], target: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for run in runs:
        points = run["coverage"]
        ax.plot([p["coverage"] for p in points], [p["accuracy"] for p in points], label=run["model_version"])
        if run.get("threshold"):
            t = run["threshold"]
            ax.plot([t["coverage"]], [t["accuracy"]], marker="o", color="black")
    ax.axhline(target, linestyle="--", color="grey", linewidth=1, label=f"target accuracy {target:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="coverage (share of tasks kept)", ylabel="accuracy of kept tasks")
    ax.set_title("Accuracy vs coverage (keep predictions with score >= threshold)")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_confusion(run: dict[str, Any], path: Path) -> None:
    labels = run["confusion"]["labels"]
    matrix = run["confusion"]["matrix"]
    size = min(4 + 0.16 * len(labels), 18)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    ticks = range(len(labels))
    fontsize = 8 if len(labels) <= 30 else 5
    ax.set_xticks(ticks, labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, labels, fontsize=fontsize)
    ax.set(xlabel="predicted", ylabel="gold", title=f"Confusion matrix: {run['model_version']}")
    if len(labels) <= MAX_MATRIX_TABLE:
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                if count:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=8)
    _save(fig, path)


def _code(text: str) -> str:
    """Inline code safe inside a table cell."""
    return "`" + str(text).replace("|", "\\|").replace("`", "'") + "`"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _coverage_rows(points: list[dict[str, Any]]) -> list[tuple[float, dict[str, Any]]]:
    """For each coverage mark, the point with the smallest coverage that still reaches it."""
    rows = []
    for mark in COVERAGE_MARKS:
        reaching = [p for p in points if p["coverage"] >= mark - 1e-9]
        if reaching:
            rows.append((mark, min(reaching, key=lambda p: p["coverage"])))
    return rows


def render_markdown(report: dict[str, Any], images: dict[str, str]) -> str:
    runs = report["versions"]
    multi = report["multiple"]
    lines = [
        f"# Evaluation of prompt versions: {report['source']}",
        "",
        f"{datetime.now():%Y-%m-%d %H:%M}; model `{report['model']}`; control `{report['control']}` "
        f"({'multiple' if multi else 'single'} choice, {len(report['labels'])} labels); "
        f"{report['evaluated']} of {report['tasks']} tasks scored.",
        "",
    ]
    excluded = report["excluded"]
    if any(v for v in excluded.values()):
        lines += ["## Tasks left out", ""]
        lines.append(f"- without ground truth: {excluded['unlabeled']}")
        lines.append(f"- unreadable lines: {excluded['unreadable']}")
        lines.append(f"- with gold labels not in the config: {excluded['unknown_label_tasks']}")
        for label, n in list(excluded["unknown_labels"].items())[:30]:
            lines.append(f"  - {_code(label)}: {n}")
        if excluded["several_gold_labels"]:
            lines.append(f"- several gold labels for a single-choice control: {excluded['several_gold_labels']}")
        lines.append("")

    target = report["target_accuracy"]
    head = "| model version | tasks | accuracy | macro-F1 |" + (" micro-F1 |" if multi else "")
    head += f" ECE | mean score | threshold for {_pct(target)} accuracy | coverage there | failed |"
    lines += ["## Summary", "", head, "|" + " --- |" * (head.count("|") - 1)]
    for run in runs:
        t = run.get("threshold")
        cells = [
            f"`{run['model_version']}`",
            str(run["tasks"]),
            f"{run['accuracy']:.3f}",
            f"{run['macro_f1']:.3f}",
            *([f"{run['micro_f1']:.3f}"] if multi else []),
            f"{run['ece']:.3f}",
            f"{run['mean_score']:.3f}",
            f"{t['threshold']:.3f}" if t else "not reached",
            _pct(t["coverage"]) if t else "-",
            str(run["labeling"]["failed"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if multi:
        lines += ["Accuracy is exact match of the label set; micro/macro-F1 are over labels.", ""]

    lines += ["## Prompts", ""]
    for run in runs:
        lines += [f"### `{run['model_version']}` (prompt version {run['prompt_version_id']})", "", "```text"]
        lines += [run["prompt"], "```", ""]

    lines += ["## Calibration", "", f"![reliability]({images['reliability']})", ""]
    for run in runs:
        lines += [f"`{run['model_version']}`: ECE {run['ece']:.3f}", ""]
        lines += ["| score bin | tasks | mean score | accuracy |", "| --- | --- | --- | --- |"]
        for b in run["reliability"]:
            if b["count"]:
                lines.append(
                    f"| {b['low']:.1f}-{b['high']:.1f} | {b['count']} | {b['confidence']:.3f} | {b['accuracy']:.3f} |"
                )
        lines.append("")

    lines += ["## Accuracy vs coverage", "", f"![coverage]({images['coverage']})", ""]
    for run in runs:
        lines += [f"`{run['model_version']}`", "", "| coverage | threshold | accuracy |", "| --- | --- | --- |"]
        for mark, p in _coverage_rows(run["coverage"]):
            lines.append(f"| {_pct(mark)} ({p['kept']} tasks) | {p['threshold']:.3f} | {p['accuracy']:.3f} |")
        lines.append("")

    lines += ["## Per label", ""]
    head = "| label | support |" + "".join(f" P / R / F1 `{r['model_version']}` |" for r in runs)
    lines += [head, "|" + " --- |" * (head.count("|") - 1)]
    for label in report["labels"]:
        first = runs[0]["per_label"][label]
        cells = [_code(label), str(first["support"])]
        for run in runs:
            s = run["per_label"][label]
            cells.append(f"{s['precision']:.2f} / {s['recall']:.2f} / {s['f1']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")

    if not multi:
        lines += ["## Confusions", ""]
        for run in runs:
            lines += [
                f"### `{run['model_version']}`",
                "",
                f"![confusion]({images['confusion'][run['model_version']]})",
                "",
            ]
            if run["top_confusions"]:
                lines += ["| gold | predicted | tasks |", "| --- | --- | --- |"]
                lines += [f"| {_code(g)} | {_code(p)} | {n} |" for g, p, n in run["top_confusions"]]
                lines.append("")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], folder: Path) -> Path:
    """Write ``report.md`` and its plots into ``folder``; returns the markdown file's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs = report["versions"]
    images: dict[str, Any] = {"reliability": "reliability.png", "coverage": "coverage.png", "confusion": {}}
    plot_reliability(runs, folder / images["reliability"])
    plot_coverage(runs, report["target_accuracy"], folder / images["coverage"])
    if not report["multiple"]:
        for run in runs:
            name = f"confusion-{_slug(run['model_version'])}.png"
            plot_confusion(run, folder / name)
            images["confusion"][run["model_version"]] = name
    path = folder / "report.md"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".report.md.", suffix=".partial")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(render_markdown(report, images))
    os.replace(tmp, path)
    return path
