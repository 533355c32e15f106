// The review page: reads and changes prompts and proposals through Prompter's REST API, nothing else.
// Every piece of text from the server goes into the page as text (textContent), never as markup.
"use strict";

const POLL_RUNNING_MS = 2000; // while a refinement runs: its progress
const POLL_IDLE_MS = 5000; // otherwise: webhooks start refinements, other reviewers decide
const NAME_KEY = "prompter-reviewer";
let pollTimer = null;
let shown = {}; // what each section was last rendered from, so a poll re-renders only what changed
let taskUrl = null; // Label Studio's address of a task, with {task_id} to fill in

// -- helpers ----------------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// location.origin carries no user:password, so fetch accepts the URL and the browser adds the basic auth it holds.
async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(new URL(path, location.origin), init);
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const detail = data && data.detail ? data.detail : `${response.status} ${response.statusText}`;
    const error = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    error.status = response.status;
    throw error;
  }
  return data;
}

function say(text, kind) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = kind || "info";
  box.hidden = false;
}

function pct(x) {
  return typeof x === "number" ? `${(100 * x).toFixed(1)}%` : "–";
}

function num(x, digits) {
  return typeof x === "number" ? x.toFixed(digits) : "–";
}

// A p-value readable at every size: 0.031, 0.0078, 3.8e-6.
function pValue(p) {
  if (typeof p !== "number") return "–";
  if (p >= 0.01) return p.toFixed(3);
  if (p >= 0.001) return p.toFixed(4);
  return p.toExponential(1); // "3.8e-6"
}

function seconds(x) {
  if (typeof x !== "number") return "–";
  return x < 10 ? `${x.toFixed(2)} s` : `${x.toFixed(0)} s`;
}

// A task id, as a link into Label Studio when its address is known.
function taskLink(id) {
  if (!taskUrl) return el("span", { text: `#${id}` });
  return el("a", { href: taskUrl.replace("{task_id}", encodeURIComponent(id)), target: "_blank", rel: "noopener", text: `#${id}` });
}

function reviewer() {
  const input = document.getElementById("reviewer");
  const name = input ? input.value.trim() : "";
  return name || null;
}

function when(iso) {
  if (!iso) return "–";
  const d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

function labels(answer) {
  const entries = Object.entries(answer || {});
  if (entries.length === 1) return entries[0][1].join(", ") || "(none)";
  return entries.map(([control, chosen]) => `${control}: ${chosen.join(", ") || "(none)"}`).join("; ") || "(none)";
}

function beforeAfter(pair, format) {
  if (!pair) return "–";
  const delta = pair.after - pair.before;
  const sign = delta > 0 ? "+" : "";
  return `${format(pair.before)} → ${format(pair.after)} (${sign}${(100 * delta).toFixed(1)} pts)`;
}

function diffView(text) {
  const pre = el("pre", { class: "diff" });
  const lines = (text || "").split("\n");
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  for (const line of lines) {
    let kind = "ctx";
    if (line.startsWith("+++") || line.startsWith("---")) kind = "meta";
    else if (line.startsWith("@@")) kind = "hunk";
    else if (line.startsWith("+")) kind = "add";
    else if (line.startsWith("-")) kind = "del";
    pre.append(el("span", { class: kind, text: line || " " }));
  }
  if (!text) pre.append(el("span", { class: "ctx", text: "(no difference)" }));
  return pre;
}

function projectFromPath() {
  const match = location.pathname.match(/^\/review\/(.+?)\/?$/);
  return match ? decodeURIComponent(match[1]) : null;
}

function projectPath(id) {
  return `/projects/${encodeURIComponent(id)}`;
}

// -- projects ---------------------------------------------------------------------------------------

async function loadProjects(current) {
  const nav = document.getElementById("projects");
  const projects = await api("GET", "/projects");
  nav.replaceChildren(el("span", { class: "muted", text: "Projects: " }));
  if (!projects.length) nav.append(el("span", { text: "none yet (Label Studio creates them on /setup)" }));
  for (const project of projects) {
    const link = el("a", { href: `/review/${encodeURIComponent(project.id)}`, text: project.id });
    if (project.id === current) link.className = "current";
    nav.append(link, " ");
  }
  return projects;
}

async function loadModel() {
  try {
    const health = await api("GET", "/health");
    document.getElementById("model").textContent = `model ${health.model_id || "?"} (${health.model_state})`;
  } catch (_) {
    // the header line is a nicety; the rest of the page does not depend on it
  }
}

// -- one project ------------------------------------------------------------------------------------

async function loadProject(id) {
  const base = projectPath(id);
  const [activity, versions, proposals, runs] = await Promise.all([
    api("GET", `${base}/activity`),
    api("GET", `${base}/prompts`),
    api("GET", `${base}/proposals`),
    api("GET", `${base}/refinements`),
  ]);
  const pending = proposals.filter((p) => p.status === "pending");
  const pendingKey = JSON.stringify(pending.map((p) => [p.id, p.base_version_id]));
  const details = pendingKey === shown.pendingKey && shown.details
    ? shown.details
    : await Promise.all(pending.map((p) => api("GET", `/proposals/${p.id}`)));
  taskUrl = activity.task_url;
  const active = versions.find((v) => v.is_active);
  const sections = [
    ["activity", [activity, runs[0] || null], () => renderActivity(id, activity, runs)],
    ["pending", [pendingKey, active && active.id, activity.task_url, runs[0] && runs[0].status], () => renderPending(id, details, versions, runs, proposals.filter((p) => p.status !== "pending"))],
    ["history", versions, () => renderHistory(id, versions)],
    ["runs", runs, () => renderRuns(runs)],
    ["decided", proposals.filter((p) => p.status !== "pending"), () => renderDecided(proposals.filter((p) => p.status !== "pending" && p.status !== "failed"))],
  ];
  for (const [name, data, render] of sections) {
    const key = JSON.stringify(data);
    if (shown[name] !== key) {
      render();
      shown[name] = key;
    }
  }
  shown.pendingKey = pendingKey;
  shown.details = details;
  document.getElementById("project").hidden = false;
  schedulePoll(id, runs);
}

function schedulePoll(id, runs) {
  clearTimeout(pollTimer);
  const delay = runs.some((r) => r.status === "running") ? POLL_RUNNING_MS : POLL_IDLE_MS;
  pollTimer = setTimeout(() => loadProject(id).catch((e) => {
    say(e.message, "error");
    schedulePoll(id, runs);
  }), delay);
}

function renderActivity(projectId, a, runs) {
  const title = document.getElementById("project-title");
  title.replaceChildren(a.title ? a.title : `Project ${projectId}`);
  if (a.label_studio_url) {
    title.append(" ", el("a", { class: "ls-link", href: a.label_studio_url, target: "_blank", rel: "noopener", text: "open in Label Studio" }));
  }
  const box = document.getElementById("activity");
  const towards = Math.min(a.disagreements_since_refinement, a.disagreements_trigger);
  box.replaceChildren(...[
    el("span", { class: "count count-annotations" }, el("b", { text: String(a.annotations) }), ` annotations on ${a.annotated_tasks} tasks`),
    el("span", { class: "count count-disagreements" }, el("b", { text: String(a.disagreements) }), ` disagreements with the model (of ${a.corrections} compared)`),
    a.annotations > a.annotations_compared
      ? el("span", { class: "count count-queued", text: `${a.annotations - a.annotations_compared} annotations waiting for the agent` })
      : null,
    el("span", { class: "count count-trigger" },
      a.agent_enabled
        ? `${towards} of ${a.disagreements_trigger} new disagreements start the next refinement (PROMPTER_AGENT_DISAGREEMENTS_TRIGGER)`
        : "the agent is off (PROMPTER_AGENT_ENABLED=false)"),
  ].filter(Boolean));
  const button = document.getElementById("refine");
  const status = document.getElementById("refine-status");
  const run = a.running;
  button.disabled = Boolean(run);
  if (run) {
    const p = run.progress || {};
    const bar = el("progress", { max: p.total || 1, value: p.scored || 0 });
    status.replaceChildren(
      `Refinement #${run.id} (${run.trigger}) is running: `,
      el("b", { class: "progress-strategy", text: p.strategy || "starting" }),
      p.total ? `, ${p.scored} of ${p.total} task scorings done${p.folds ? ` (${p.folds}-fold cross-validation)` : ""} ` : " ",
      bar,
    );
    status.className = "running";
  } else if (status.className === "running") {
    const last = runs[0];
    status.textContent = last ? `Refinement #${last.id} ${last.status}: ${runOutcome(last)}` : "";
    status.className = last && last.status === "failed" ? "error" : "done";
  }
}

function significanceText(m) {
  const verdict = m.significant ? "significant" : "not significant";
  return `${verdict}: p = ${pValue(m.p_value)} (${m.test || "?"}; α = ${m.alpha ?? "?"})`;
}

function validationText(m) {
  const how = m.folds ? `, ${m.folds}-fold cross-validation: each scored by a candidate built without it` : "";
  return `${m.validation_tasks ?? "–"} annotated tasks${how}`;
}

function metricsTable(m, pool) {
  const rows = [
    ["Accuracy", beforeAfter(m.accuracy, pct), "metric-accuracy"],
    ["Macro-F1", beforeAfter(m.macro_f1, pct), "metric-macro-f1"],
    ["Significance", significanceText(m), "metric-p"],
    ["Validation", validationText(m), "metric-validation"],
    ["Fixes / breaks", `${(m.fixes || []).length} fixed, ${(m.breaks || []).length} broken`, "metric-fixes"],
  ];
  const f1 = m.task_f1, acc = m.accuracy || {};
  if (f1 && (f1.before !== acc.before || f1.after !== acc.after)) {
    // multiple choice: the test pairs tasks by their F1, so a partly better answer shows here, not in accuracy
    rows.splice(1, 0, ["Mean F1 per task (what the test pairs)", beforeAfter(f1, pct), "metric-task-f1"]);
  }
  if (m.prompt_tokens) {
    rows.push(["Prompt tokens per task", `${m.prompt_tokens.before} → ${m.prompt_tokens.after}`, "metric-tokens"]);
  }
  if (m.latency_s) {
    rows.push(["Latency, one task", `${seconds(m.latency_s.before)} → ${seconds(m.latency_s.after)}${m.latency_s.note ? ` (${m.latency_s.note})` : ""}`, "metric-latency"]);
  }
  const cost = m.cost || {};
  rows.push(["Cost", `${cost.tokens ?? "–"} tokens, ${num(cost.seconds, 1)} s`, "metric-cost"]);
  if (pool) rows.push(["Demonstration pool", poolText(pool), "metric-pool"]);
  else if (m.pool) rows.push(["Demonstration pool", `${m.pool.from_examples} examples validated, ${m.pool.shipped} shipped`, "metric-pool"]);
  return el(
    "table",
    { class: "metrics" },
    el("tbody", {}, rows.map(([name, value, cls]) => el("tr", { class: cls }, el("th", { text: name }), el("td", { text: value })))),
  );
}

function poolText(pool) {
  const covered = (x) => Object.keys(x || {}).length;
  const k = pool.k_after ?? pool.k_before;
  return `${pool.before} → ${pool.after} examples (${pool.added.length} added, ${pool.removed.length} removed)` +
    `${k ? `, ${k} retrieved per task` : ""}; labels covered ${covered(pool.labels_before)} → ${covered(pool.labels_after)}`;
}

function poolView(pool) {
  if (!pool) return null;
  const labelRows = [...new Set([...Object.keys(pool.labels_before), ...Object.keys(pool.labels_after)])].sort();
  const examples = (title, rows, cls) => rows.length ? el(
    "details",
    { class: cls },
    el("summary", { text: `${title} (${rows.length})` }),
    el("ul", { class: "examples" }, rows.map((e) => el("li", {}, taskLink(e.task_id), " ", el("span", { class: "example-text", text: e.text }), " ⇒ ", el("b", { text: labels(e.labels) })))),
  ) : null;
  return el(
    "div",
    { class: "pool-change" },
    el("h5", { text: "Demonstration pool" }),
    el("p", { class: "pool-summary", text: poolText(pool) }),
    el(
      "details",
      { class: "pool-labels" },
      el("summary", { text: "Labels covered, before and after" }),
      el("div", { class: "scroll" }, el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ["Label", "Examples before", "after"].map((h) => el("th", { text: h })))),
        el("tbody", {}, labelRows.map((x) => el("tr", {}, el("td", { text: x }), el("td", { text: String(pool.labels_before[x] || 0) }), el("td", { text: String(pool.labels_after[x] || 0) })))),
      )),
    ),
    examples("Examples added", pool.added, "pool-added"),
    examples("Examples removed", pool.removed, "pool-removed"),
  );
}

function taskChanges(title, rows, cls) {
  if (!rows || !rows.length) return null;
  return el(
    "details",
    { class: cls, open: rows.length <= 10 },
    el("summary", { text: `${title} (${rows.length})` }),
    el("div", { class: "scroll" }, el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ["Task", "Gold", "Before", "After"].map((h) => el("th", { text: h })))),
      el(
        "tbody",
        {},
        rows.map((r) =>
          el("tr", {}, el("td", {}, taskLink(r.task_id)), el("td", { text: labels(r.gold) }),
            el("td", { text: labels(r.before) }), el("td", { text: labels(r.after) })),
        ),
      ),
    )),
  );
}

function perLabel(changes) {
  const entries = Object.entries(changes || {});
  if (!entries.length) return null;
  return el(
    "details",
    { class: "per-label", open: entries.length <= 12 },
    el("summary", { text: `Per-label F1 changes (${entries.length})` }),
    el("div", { class: "scroll" }, el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ["Label", "F1 before", "F1 after", "Support"].map((h) => el("th", { text: h })))),
      el(
        "tbody",
        {},
        entries.map(([label, c]) =>
          el("tr", { class: c.f1_after > c.f1_before ? "up" : "down" }, el("td", { text: label }),
            el("td", { text: num(c.f1_before, 3) }), el("td", { text: num(c.f1_after, 3) }), el("td", { text: c.support })),
        ),
      ),
    )),
  );
}

// Why the last refinement proposed nothing, and how many annotations would change that.
function nothingYet(runs, decided) {
  const last = (runs || []).find((r) => r.status !== "running" && r.summary);
  if (!last) return null;
  const s = last.summary;
  if (s.proposal_id) return null;
  const since = (decided || []).some((p) => p.decided_at && last.finished_at && p.decided_at > last.finished_at);
  if (since) return null; // a decision came after it: the run no longer describes the state
  const scored = (s.candidates || []).filter((c) => c.accuracy);
  const bestGain = scored.filter((c) => c.tasks_needed).sort((a, b) => a.tasks_needed - b.tasks_needed)[0];
  const parts = [`Refinement #${last.id} validated ${s.validation} annotated tasks (${s.folds || "?"}-fold) and proved nothing yet.`];
  if (bestGain) {
    const more = Math.max(bestGain.tasks_needed - s.validation, 1);
    parts.push(`${bestGain.strategy} went ${pct(bestGain.accuracy.before)} → ${pct(bestGain.accuracy.after)} (p = ${pValue(bestGain.p_value)}); ` +
      `about ${more} more annotated tasks (${bestGain.tasks_needed} in all) would let a gain like that reach significance.`);
  } else if (scored.length) {
    parts.push("No candidate fixed more tasks than it broke: more annotations alone will not make these candidates better.");
  }
  for (const c of (s.candidates || []).filter((x) => x.verdict === "skipped")) parts.push(`${c.strategy} was skipped: ${c.reason}.`);
  return el("p", { class: "tasks-needed", text: parts.join(" ") });
}

function renderPending(projectId, proposals, versions, runs, decided) {
  const box = document.getElementById("pending");
  box.replaceChildren();
  if (!proposals.length) {
    box.append(el("p", { class: "muted", text: "No proposal is waiting for review." }), nothingYet(runs, decided) || "");
    return;
  }
  const active = versions.find((v) => v.is_active);
  for (const p of proposals) {
    const m = p.metrics || {};
    const status = el("p", { class: "card-status", hidden: true });
    const reason = el("input", { type: "text", class: "reason", placeholder: "Why reject it? (required)" });
    const rejectForm = el(
      "div",
      { class: "reject-form", hidden: true },
      reason,
      el("button", { type: "button", class: "confirm-reject", text: "Confirm reject", onclick: () => reject(projectId, p.id, reason, status) }),
      el("button", { type: "button", class: "cancel", text: "Cancel", onclick: () => { rejectForm.hidden = true; } }),
    );
    const stale = active && active.id !== p.base_version_id
      ? el("p", { class: "warning", text: `Measured against version ${p.base_version_id}; version ${active.id} is active now.` })
      : null;
    box.append(
      el(
        "article",
        { class: "proposal", "data-id": p.id },
        el("h4", { text: `Proposal #${p.id} · ${p.strategy} · from version ${p.base_version_id}` }),
        el("p", { class: "muted", text: `${when(p.created_at)}${m.note ? ` · ${m.note}` : ""}` }),
        stale,
        el(
          "div",
          { class: "actions" },
          el("button", { type: "button", class: "accept", text: "Accept", onclick: () => accept(projectId, p.id, status) }),
          el("button", { type: "button", class: "reject", text: "Reject…", onclick: () => { rejectForm.hidden = false; reason.focus(); } }),
        ),
        rejectForm,
        status,
        metricsTable(m, p.pool),
        taskChanges("Fixes: tasks it gets right that the active prompt got wrong", m.fixes, "fixes"),
        taskChanges("Breaks: tasks it gets wrong that the active prompt got right", m.breaks, "breaks"),
        perLabel(m.per_label),
        el("h5", { text: "Instruction diff" }),
        diffView(p.diff),
        poolView(p.pool),
      ),
    );
  }
}

// Held-out accuracy of each version when it was validated (an accepted proposal's "after", its base's "before").
function accuracyPoints(versions) {
  const points = new Map();
  for (const v of versions) {
    const a = (v.metrics || {}).accuracy;
    if (!a) continue;
    if (v.parent_id && !points.has(v.parent_id)) points.set(v.parent_id, a.before);
    points.set(v.id, a.after);
  }
  return versions.filter((v) => points.has(v.id)).map((v) => ({ id: v.id, accuracy: points.get(v.id), active: v.is_active }));
}

function accuracyChart(versions) {
  const box = document.getElementById("accuracy-chart");
  const points = accuracyPoints(versions);
  box.replaceChildren();
  if (points.length < 2) {
    box.append(el("p", { class: "muted", text: "The chart of held-out accuracy appears once a proposal has been accepted." }));
    return;
  }
  const w = 360, h = 150, pad = 38;
  const x = (i) => pad + (i * (w - 2 * pad)) / Math.max(points.length - 1, 1);
  const y = (v) => h - pad + 8 - v * (h - pad - 8 - 12);
  const chart = svg("svg", { class: "plot accuracy-chart", viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "Held-out accuracy across versions" });
  chart.append(svg("title", { text: "Held-out accuracy across versions" }));
  for (const t of [0, 0.5, 1]) {
    chart.append(svg("line", { class: "reference", x1: pad, x2: w - pad, y1: y(t), y2: y(t) }));
    chart.append(svg("text", { class: "tick", x: pad - 4, y: y(t) + 3, "text-anchor": "end", text: `${100 * t}%` }));
  }
  chart.append(svg("polyline", { class: "curve", points: points.map((p, i) => `${x(i)},${y(p.accuracy)}`).join(" ") }));
  points.forEach((p, i) => {
    chart.append(svg("circle", { class: p.active ? "dot active" : "dot", cx: x(i), cy: y(p.accuracy), r: p.active ? 5 : 3.5 }, svg("title", { text: `#${p.id}: ${pct(p.accuracy)}` })));
    chart.append(svg("text", { class: "tick", x: x(i), y: h - 4, "text-anchor": "middle", text: `#${p.id}` }));
    chart.append(svg("text", { class: "tick value", x: x(i), y: y(p.accuracy) - 8, "text-anchor": "middle", text: pct(p.accuracy) }));
  });
  box.append(chart, el("p", { class: "muted", text: "Each version on the tasks annotated when it was validated." }));
}

// The history's columns that sort on a click of their header: each a value to sort on, newest first by default.
const SORTS = {
  version: (v) => v.id,
  source: (v) => v.source,
  created: (v) => v.created_at,
  "eval-accuracy": (v) => evaluated(v) ? v.evaluation.accuracy : null,
  "eval-macro-f1": (v) => evaluated(v) ? v.evaluation.macro_f1 : null,
  "eval-ece": (v) => evaluated(v) ? v.evaluation.ece : null,
  "eval-tasks": (v) => evaluated(v) ? v.evaluation.tasks : null,
  "vs-active": (v) => vsActiveGain(v),
};
let historySort = { key: "version", descending: true };

function evaluated(v) {
  return Boolean(v.evaluation && v.evaluation.status === "ok");
}

function vsActiveGain(v) {
  const e = v.evaluation;
  return evaluated(v) && typeof e.compared_accuracy === "number" ? e.accuracy - e.compared_accuracy : null;
}

// Ties and versions never evaluated go last, whichever the direction.
function sortVersions(versions) {
  const value = SORTS[historySort.key] || SORTS.version;
  const sign = historySort.descending ? -1 : 1;
  return [...versions].sort((a, b) => {
    const x = value(a), y = value(b);
    if (x === y) return b.id - a.id;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * sign;
  });
}

function setUpSorting(projectId) {
  for (const th of document.querySelectorAll("#history thead th[data-sort]")) {
    th.tabIndex = 0;
    const sortBy = () => {
      const key = th.dataset.sort;
      historySort = { key, descending: historySort.key === key ? !historySort.descending : key !== "eval-ece" };
      if (shown.versions) renderHistory(projectId, shown.versions);
    };
    th.addEventListener("click", sortBy);
    th.addEventListener("keydown", (event) => { if (event.key === "Enter") sortBy(); });
  }
}

// A typed version that beats the active one by the agent's rule (more fixes than breaks, one-sided p < alpha).
function beatsActive(v, active) {
  const e = v.evaluation;
  return evaluated(v) && !v.is_active && Boolean(e.significant) && Boolean(active) && e.compared_with_id === active.id;
}

function vsActiveText(v, active) {
  const e = v.evaluation;
  if (!e) return "";
  if (e.status !== "ok") return "";
  if (e.compared_with_id === null || e.compared_with_id === undefined) return v.is_active ? "(the active prompt)" : "";
  const delta = 100 * (e.accuracy - e.compared_accuracy);
  const then = active && active.id === e.compared_with_id ? "" : " (active then)";
  return `#${e.compared_with_id}${then}: ${pct(e.compared_accuracy)}, ${delta > 0 ? "+" : ""}${delta.toFixed(1)} pts; ` +
    `${e.fixes} fixed / ${e.breaks} broken, p = ${pValue(e.p_value)}`;
}

function evaluationTitle(e) {
  if (!e) return null;
  const what = e.trigger === "cli" ? "prompter eval" : `live evaluation (${e.trigger})`;
  return `${what} on ${e.tasks} tasks, ${when(e.created_at)}${e.reason ? ` · ${e.reason}` : ""}`;
}

function renderHistory(projectId, versions) {
  shown.versions = versions;
  accuracyChart(versions);
  const body = document.querySelector("#history tbody");
  body.replaceChildren();
  const view = document.getElementById("version-view");
  view.replaceChildren();
  view.dataset.version = "";
  const active = versions.find((x) => x.is_active);
  for (const th of document.querySelectorAll("#history thead th[data-sort]")) {
    th.setAttribute("aria-sort", th.dataset.sort === historySort.key ? (historySort.descending ? "descending" : "ascending") : "none");
  }
  for (const v of sortVersions(versions)) {
    const m = v.metrics || {};
    const e = v.evaluation; // the latest evaluation, live or prompter eval; null if never evaluated
    const ok = evaluated(v);
    const failed = e && e.status !== "ok";
    const title = evaluationTitle(e);
    const flagged = beatsActive(v, active);
    const actions = el("td", { class: "actions" },
      el("button", { type: "button", class: "view", text: "View", onclick: () => showVersion(projectId, v) }));
    if (v.is_active) actions.append(el("span", { class: "badge", text: "active" }));
    else if (flagged) {
      const status = el("span", { class: "card-status", hidden: true });
      const confirm = el("span", { class: "confirm-accept", hidden: true },
        `Make #${v.id} the active prompt? `,
        el("button", { type: "button", class: "accept confirm-make-active", text: "Make active", onclick: () => acceptVersion(projectId, v.id, status) }),
        el("button", { type: "button", class: "cancel", text: "Cancel", onclick: () => { confirm.hidden = true; ask.hidden = false; } }));
      const ask = el("button", { type: "button", class: "make-active", text: "Make active…", onclick: () => { confirm.hidden = false; ask.hidden = true; } });
      actions.append(ask, confirm, status);
    } else {
      const confirm = el("span", { class: "confirm-rollback", hidden: true },
        `Make #${v.id} the active prompt? `,
        el("button", { type: "button", class: "confirm-activate", text: "Roll back", onclick: () => activate(projectId, v.id) }),
        el("button", { type: "button", class: "cancel", text: "Cancel", onclick: () => { confirm.hidden = true; ask.hidden = false; } }));
      const ask = el("button", { type: "button", class: "activate", text: "Roll back to this…", onclick: () => { confirm.hidden = false; ask.hidden = true; } });
      actions.append(ask, confirm);
    }
    const flag = flagged
      ? el("span", { class: "badge beats", text: "beats the active prompt", title: `one-sided exact McNemar test, p = ${pValue(e.p_value)}` })
      : null;
    body.append(
      el(
        "tr",
        { class: [v.is_active ? "active" : "", flagged ? "beats-active" : ""].join(" ").trim(), "data-id": v.id, title: v.model_version },
        el("td", {}, `#${v.id}`, flag),
        el("td", { text: v.source }),
        el("td", { text: v.author || "–" }),
        el("td", { text: when(v.created_at) }),
        el("td", { text: v.parent_id ? `#${v.parent_id}` : "–" }),
        el("td", { text: m.accuracy ? beforeAfter(m.accuracy, pct) : "–" }),
        el("td", { text: m.macro_f1 ? beforeAfter(m.macro_f1, pct) : "–" }),
        el("td", { class: failed ? "eval-accuracy eval-failed" : "eval-accuracy", text: ok ? pct(e.accuracy) : failed ? "failed" : "", title }),
        el("td", { class: "eval-macro-f1", text: ok ? pct(e.macro_f1) : "", title }),
        el("td", { class: "eval-ece", text: ok ? num(e.ece, 3) : "", title }),
        el("td", { class: "eval-tasks", text: ok ? String(e.tasks) : "", title }),
        el("td", { class: "vs-active", text: vsActiveText(v, active), title }),
        el("td", { text: v.note || "" }),
        actions,
      ),
    );
  }
}

async function showVersion(projectId, v) {
  const view = document.getElementById("version-view");
  const pool = v.examples && v.examples.pool ? v.examples.pool.length : 0;
  view.dataset.version = String(v.id);
  view.replaceChildren(
    el("h4", { text: `Version #${v.id}${v.is_active ? " (active)" : ""} · ${v.model_version}` }),
    el("pre", { class: "prompt", text: v.text }),
  );
  if (pool) {
    view.append(el("p", { class: "muted", text: `Demonstration pool: ${pool} examples, ${v.examples.k ?? 8} retrieved per task.` }));
  }
  const base = `${projectPath(projectId)}/prompts`;
  const [diff, evaluations] = await Promise.all([
    v.parent_id ? api("GET", `${base}/diff?from=${v.parent_id}&to=${v.id}`).catch((e) => e) : null,
    api("GET", `${base}/${v.id}/evaluations`).catch((e) => e),
  ]);
  if (view.dataset.version !== String(v.id)) return; // another version was opened, or the page re-rendered
  if (diff instanceof Error) view.append(el("p", { class: "error", text: diff.message }));
  else if (diff) view.append(el("h5", { text: `Diff from version #${diff.from_id}` }), diffView(diff.diff), poolView(diff.pool) || "");
  view.append(evaluationView(evaluations));
}

function candidateText(c) {
  if (c.reason) return `${c.strategy}: ${c.verdict} (${c.reason})`;
  if (!c.accuracy) return `${c.strategy}: ${c.verdict}`;
  const needed = c.tasks_needed ? `; ~${c.tasks_needed} annotated tasks would prove it` : "";
  return `${c.strategy}: ${c.verdict}, ${pct(c.accuracy.before)} → ${pct(c.accuracy.after)}, ` +
    `${c.fixes} fixed / ${c.breaks} broken, p = ${pValue(c.p_value)}${needed}`;
}

function runOutcome(r) {
  if (r.error) return r.error;
  if (!r.summary || r.summary.progress) {
    const p = (r.summary || {}).progress;
    if (r.status !== "running") return "";
    return p && p.total ? `running: ${p.strategy}, ${p.scored} of ${p.total} task scorings` : "running";
  }
  const s = r.summary;
  if (s.proposal_id) return `proposal #${s.proposal_id}`;
  const more = s.tasks_needed ? `: about ${Math.max(s.tasks_needed - s.validation, 1)} more annotated tasks would make its best gain significant` : "";
  return `no proposal${more}`;
}

function renderRuns(runs) {
  const body = document.querySelector("#refinements tbody");
  body.replaceChildren();
  for (const r of runs) {
    const s = r.summary || {};
    const log = (s.candidates || []).length
      ? el("details", { class: "run-log" },
        el("summary", { text: `${s.candidates.length} strategies on ${s.validation} tasks` }),
        el("ul", {}, s.candidates.map((c) => el("li", { class: `verdict-${c.verdict.replace(/ /g, "-")}`, text: candidateText(c) }))))
      : null;
    body.append(
      el(
        "tr",
        { class: `run-${r.status}`, "data-id": r.id },
        el("td", { text: `#${r.id}` }),
        el("td", { text: r.trigger }),
        el("td", { class: "status", text: r.status }),
        el("td", { text: when(r.started_at) }),
        el("td", { text: when(r.finished_at) }),
        el("td", { class: "outcome" }, el("span", { text: runOutcome(r) }), log),
      ),
    );
  }
}

function renderDecided(proposals) {
  const body = document.querySelector("#decided tbody");
  body.replaceChildren();
  for (const p of proposals) {
    body.append(
      el(
        "tr",
        { class: `status-${p.status}`, "data-id": p.id },
        el("td", { text: `#${p.id}` }),
        el("td", { text: p.strategy }),
        el("td", { class: "status", text: p.status }),
        el("td", { text: when(p.decided_at) }),
        el("td", { class: "decided-by", text: p.decided_by || "–" }),
        el("td", { class: "reason", text: p.reason || "" }),
        el("td", { text: p.result_version_id ? `#${p.result_version_id}` : "–" }),
      ),
    );
  }
}

// -- actions ----------------------------------------------------------------------------------------

function busy(button, on) {
  for (const b of button.closest("article, section, main").querySelectorAll("button")) b.disabled = on;
}

// A review action's error beside its button; on 409 (decided elsewhere meanwhile) the project is reloaded.
async function failed(e, status, control, projectId) {
  showError(status, e.message);
  busy(control, false);
  if (e.status === 409) await loadProject(projectId);
}

function showError(status, text) {
  status.textContent = text;
  status.className = "card-status error";
  status.hidden = false;
}

async function accept(projectId, proposalId, status) {
  const button = status.parentElement.querySelector("button.accept");
  busy(button, true);
  try {
    const result = await api("POST", `/proposals/${proposalId}/accept`, { decided_by: reviewer() });
    say(`Proposal #${proposalId} accepted: version #${result.version.id} is now active (${result.model_version}).`, "ok");
    await loadProject(projectId);
  } catch (e) {
    await failed(e, status, button, projectId);
  }
}

async function reject(projectId, proposalId, input, status) {
  const reason = input.value.trim();
  if (!reason) {
    showError(status, "A rejection needs a reason.");
    input.focus();
    return;
  }
  busy(input, true);
  try {
    const result = await api("POST", `/proposals/${proposalId}/reject`, { reason, decided_by: reviewer() });
    say(`Proposal #${proposalId} ${result.status}: ${result.reason}`, "ok");
    await loadProject(projectId);
  } catch (e) {
    await failed(e, status, input, projectId);
  }
}

async function acceptVersion(projectId, versionId, status) {
  const button = status.parentElement.querySelector("button.confirm-make-active");
  busy(button, true);
  try {
    const result = await api("POST", `${projectPath(projectId)}/prompts/${versionId}/accept`, { decided_by: reviewer() });
    say(`Version #${result.version.id} accepted: it is now active (${result.model_version}).`, "ok");
    await loadProject(projectId);
  } catch (e) {
    await failed(e, status, button, projectId);
  }
}

async function activate(projectId, versionId) {
  try {
    const result = await api("POST", `${projectPath(projectId)}/prompts/${versionId}/activate`);
    say(`Version #${result.version.id} is active again (${result.model_version}).`, "ok");
    await loadProject(projectId);
  } catch (e) {
    say(e.message, "error");
  }
}

async function refine(projectId) {
  const button = document.getElementById("refine");
  const status = document.getElementById("refine-status");
  button.disabled = true;
  try {
    const run = await api("POST", `${projectPath(projectId)}/refine`);
    status.textContent = `Refinement #${run.id} started; its progress shows here.`;
    status.className = "running";
  } catch (e) {
    status.textContent = `No refinement started: ${e.message}`;
    status.className = "error";
    shown.activity = null; // a run in progress replaces this message with its progress, then its outcome
  }
  await loadProject(projectId).catch((e) => say(e.message, "error"));
}

// -- start ------------------------------------------------------------------------------------------

function setUpReviewer() {
  const input = document.getElementById("reviewer");
  try {
    input.value = localStorage.getItem(NAME_KEY) || "";
  } catch (_) {
    // storage may be off; the name then lasts as long as the page
  }
  input.addEventListener("change", () => {
    try {
      localStorage.setItem(NAME_KEY, input.value.trim());
    } catch (_) {
      // as above
    }
  });
}

async function main() {
  const current = projectFromPath();
  setUpReviewer();
  loadModel();
  try {
    await loadProjects(current);
    if (current !== null) {
      document.getElementById("refine").addEventListener("click", () => refine(current));
      setUpSorting(current);
      await loadProject(current);
    } else {
      say("Choose a project.", "info");
    }
  } catch (e) {
    say(e.message, "error");
  }
  document.body.dataset.ready = "true";
}

main();
