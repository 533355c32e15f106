// A prompt version's latest `prompter eval` on the review page: headline figures, per-label scores, confusion
// matrix, reliability and accuracy vs coverage, as tables and small inline SVG plots (nothing loaded from elsewhere).
// Uses review.js's helpers (el, pct, num, when); every piece of server text goes in as textContent.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const MAX_MATRIX = 12; // larger confusion matrices are shown as their most frequent confusions
const TOP_CONFUSIONS = 10;
const COVERAGE_MARKS = [1.0, 0.9, 0.75, 0.5, 0.25, 0.1];

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

// Points [x, y] in the unit square, as a line (and dots) over axes; optional diagonal, target line and marked point.
function plot(points, opts) {
  const size = 240;
  const pad = 36;
  const x = (v) => (pad + v * (size - pad - 8)).toFixed(1);
  const y = (v) => (size - pad - v * (size - pad - 8)).toFixed(1);
  const chart = svg("svg", {
    class: `plot ${opts.cls}`,
    viewBox: `0 0 ${size} ${size}`,
    width: size,
    height: size,
    role: "img",
    "aria-label": opts.title,
  });
  chart.append(svg("title", { text: opts.title }));
  chart.append(svg("rect", { class: "frame", x: x(0), y: y(1), width: x(1) - x(0), height: y(0) - y(1) }));
  for (const t of [0, 0.5, 1]) {
    chart.append(svg("text", { class: "tick", x: x(t), y: size - pad + 14, "text-anchor": "middle", text: t.toFixed(1) }));
    chart.append(svg("text", { class: "tick", x: pad - 5, y: Number(y(t)) + 4, "text-anchor": "end", text: t.toFixed(1) }));
  }
  chart.append(svg("text", { class: "axis", x: x(0.5), y: size - 6, "text-anchor": "middle", text: opts.xLabel }));
  chart.append(
    svg("text", { class: "axis", x: 12, y: y(0.5), "text-anchor": "middle", transform: `rotate(-90 12 ${y(0.5)})`, text: opts.yLabel }),
  );
  if (opts.diagonal) chart.append(svg("line", { class: "reference", x1: x(0), y1: y(0), x2: x(1), y2: y(1) }));
  if (typeof opts.target === "number") {
    chart.append(svg("line", { class: "reference", x1: x(0), y1: y(opts.target), x2: x(1), y2: y(opts.target) }));
  }
  if (points.length) chart.append(svg("polyline", { class: "curve", points: points.map(([a, b]) => `${x(a)},${y(b)}`).join(" ") }));
  if (opts.dots) for (const [a, b] of points) chart.append(svg("circle", { class: "dot", cx: x(a), cy: y(b), r: 3 }));
  if (opts.mark) chart.append(svg("circle", { class: "mark", cx: x(opts.mark[0]), cy: y(opts.mark[1]), r: 4.5 }));
  return chart;
}

function table(cls, head, rows) {
  return el(
    "table",
    { class: cls },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows),
  );
}

function thresholdText(e) {
  if (typeof e.target_accuracy !== "number") return "–";
  const t = e.threshold;
  if (!t) return `${pct(e.target_accuracy)} accuracy is reached at no threshold`;
  return `score ≥ ${num(t.threshold, 3)} keeps ${pct(t.coverage)} of tasks (${t.kept}) at ${pct(t.accuracy)} accuracy (target ${pct(e.target_accuracy)})`;
}

function headline(e, count) {
  const rows = [
    ["Tasks scored", String(e.tasks), "eval-tasks"],
    ["Accuracy", pct(e.accuracy), "eval-accuracy"],
    ["Macro-F1", pct(e.macro_f1), "eval-macro-f1"],
    ["ECE", num(e.ece, 3), "eval-ece"],
    ["Threshold", thresholdText(e), "eval-threshold"],
    ["Ground truth", e.source, "eval-source"],
    ["Model version", `${e.model_version} · control ${e.control}`, "eval-model"],
    ["Evaluated", `${when(e.created_at)} · ${e.trigger === "cli" ? "prompter eval" : `live (${e.trigger})`}${count > 1 ? ` (latest of ${count})` : ""}`, "eval-when"],
  ];
  if (typeof e.compared_accuracy === "number") {
    rows.push(["Compared with", `version #${e.compared_with_id}, active then: ${pct(e.compared_accuracy)} on the same tasks; ` +
      `${(e.fixes || []).length} fixed / ${(e.breaks || []).length} broken, p = ${pValue(e.p_value)}${e.significant ? " (better)" : ""}`, "eval-compared"]);
  }
  if (e.reason) rows.push(["Left out", e.reason, "eval-reason"]);
  return el(
    "table",
    { class: "metrics eval-headline" },
    el("tbody", {}, rows.map(([name, value, cls]) => el("tr", { class: cls }, el("th", { text: name }), el("td", { text: value })))),
  );
}

function perLabelTable(e) {
  const entries = Object.entries(e.per_label || {});
  const rows = entries.map(([label, s]) =>
    el("tr", { "data-label": label }, el("td", { text: label }), el("td", { text: num(s.precision, 3) }),
      el("td", { text: num(s.recall, 3) }), el("td", { text: num(s.f1, 3) }), el("td", { text: s.support }),
      el("td", { text: s.predicted })),
  );
  return el(
    "details",
    { class: "eval-per-label", open: entries.length <= 20 },
    el("summary", { text: `Per label (${entries.length})` }),
    table("", ["Label", "Precision", "Recall", "F1", "Support", "Predicted"], rows),
  );
}

function confusionView(confusion) {
  if (!confusion) return el("p", { class: "muted", text: "Multiple choice: no confusion matrix (see per-label scores)." });
  const { labels: names, matrix } = confusion;
  if (names.length <= MAX_MATRIX) {
    const head = el("tr", {}, el("th", { text: "gold \\ predicted" }), names.map((n) => el("th", { text: n })));
    const rows = matrix.map((row, i) =>
      el("tr", {}, el("th", { text: names[i] }),
        row.map((count, j) => el("td", { class: !count ? "" : i === j ? "diag" : "off", text: count }))),
    );
    return el("table", { class: "confusion" }, el("thead", {}, head), el("tbody", {}, rows));
  }
  const pairs = [];
  matrix.forEach((row, i) => row.forEach((count, j) => { if (i !== j && count) pairs.push([names[i], names[j], count]); }));
  pairs.sort((a, b) => b[2] - a[2] || a[0].localeCompare(b[0]) || a[1].localeCompare(b[1]));
  const rows = pairs.slice(0, TOP_CONFUSIONS).map(([g, p, n]) => el("tr", {}, el("td", { text: g }), el("td", { text: p }), el("td", { text: n })));
  return el(
    "div",
    { class: "confusion-top" },
    el("p", { class: "muted", text: `${names.length} labels: the ${rows.length} most frequent confusions.` }),
    table("", ["Gold", "Predicted", "Tasks"], rows),
  );
}

function reliabilityView(e) {
  const bins = (e.reliability || []).filter((b) => b.count);
  const rows = bins.map((b) =>
    el("tr", {}, el("td", { text: `${num(b.low, 2)}–${num(b.high, 2)}` }), el("td", { text: b.count }),
      el("td", { text: num(b.confidence, 3) }), el("td", { text: num(b.accuracy, 3) })),
  );
  return el(
    "div",
    { class: "eval-figure eval-reliability" },
    plot(bins.map((b) => [b.confidence, b.accuracy]), {
      cls: "reliability", title: `Reliability (ECE ${num(e.ece, 3)})`, xLabel: "mean score", yLabel: "accuracy", diagonal: true, dots: true,
    }),
    table("", ["Score bin", "Tasks", "Mean score", "Accuracy"], rows),
  );
}

function coverageView(e) {
  const points = e.coverage || [];
  const rows = [];
  for (const mark of COVERAGE_MARKS) {
    const reaching = points.filter((p) => p.coverage >= mark - 1e-9);
    if (!reaching.length) continue;
    const p = reaching.reduce((a, b) => (b.coverage < a.coverage ? b : a));
    rows.push(el("tr", {}, el("td", { text: `${pct(mark)} (${p.kept} tasks)` }), el("td", { text: num(p.threshold, 3) }), el("td", { text: num(p.accuracy, 3) })));
  }
  const t = e.threshold;
  return el(
    "div",
    { class: "eval-figure eval-coverage" },
    plot(points.map((p) => [p.coverage, p.accuracy]), {
      cls: "coverage", title: "Accuracy vs coverage", xLabel: "coverage", yLabel: "accuracy of kept",
      target: e.target_accuracy, mark: t ? [t.coverage, t.accuracy] : null,
    }),
    table("", ["Coverage", "Threshold", "Accuracy"], rows),
  );
}

// The version's latest evaluation, or a line saying there is none (or why it could not be read).
function evaluationView(evaluations) {
  const box = el("section", { class: "evaluation" }, el("h5", { text: "Latest evaluation" }));
  if (evaluations instanceof Error) {
    box.append(el("p", { class: "error", text: evaluations.message }));
    return box;
  }
  const e = evaluations.find((x) => x.status === "ok");
  if (evaluations.length && evaluations[0].status !== "ok") {
    box.append(el("p", { class: "error eval-failure", text: `The latest evaluation failed: ${evaluations[0].reason || "no reason given"}` }));
  }
  if (!e) {
    box.append(el("p", { class: "muted eval-none", text: "Never evaluated: it is measured once the project has annotated tasks, or run prompter eval against ground truth." }));
    return box;
  }
  box.append(
    headline(e, evaluations.length),
    perLabelTable(e),
    el("h6", { text: "Confusion matrix" }),
    confusionView(e.confusion),
    el("h6", { text: "Calibration" }),
    reliabilityView(e),
    el("h6", { text: "Accuracy vs coverage (keep predictions with score ≥ threshold)" }),
    coverageView(e),
  );
  return box;
}
