// The review page: reads and changes prompts and proposals through Prompter's REST API, nothing else.
// Every piece of text from the server goes into the page as text (textContent), never as markup.
"use strict";

const POLL_MS = 3000;
let pollTimer = null;

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
  const [versions, proposals, runs] = await Promise.all([
    api("GET", `${base}/prompts`),
    api("GET", `${base}/proposals`),
    api("GET", `${base}/refinements`),
  ]);
  const pending = proposals.filter((p) => p.status === "pending");
  const details = await Promise.all(pending.map((p) => api("GET", `/proposals/${p.id}`)));
  document.getElementById("project-title").textContent = `Project ${id}`;
  renderPending(id, details, versions);
  renderHistory(id, versions);
  renderRuns(runs);
  renderDecided(proposals.filter((p) => p.status !== "pending"));
  document.getElementById("project").hidden = false;
  schedulePoll(id, runs);
}

function schedulePoll(id, runs) {
  clearTimeout(pollTimer);
  if (runs.some((r) => r.status === "running")) {
    pollTimer = setTimeout(() => loadProject(id).catch((e) => say(e.message, "error")), POLL_MS);
  }
}

function metricsTable(m) {
  const rows = [
    ["Accuracy", beforeAfter(m.accuracy, pct), "metric-accuracy"],
    ["Macro-F1", beforeAfter(m.macro_f1, pct), "metric-macro-f1"],
    [
      "Significance",
      `${m.significant ? "significant" : "not significant"}: p = ${num(m.p_value, 4)} (${m.test || "?"}; α = ${m.alpha ?? "?"})`,
      "metric-p",
    ],
    ["Validation tasks", String(m.validation_tasks ?? "–"), "metric-validation"],
    ["Fixes / breaks", `${(m.fixes || []).length} fixed, ${(m.breaks || []).length} broken`, "metric-fixes"],
  ];
  if (m.prompt_tokens) {
    rows.push(["Prompt tokens per task", `${m.prompt_tokens.before} → ${m.prompt_tokens.after}`, "metric-tokens"]);
  }
  const cost = m.cost || {};
  rows.push(["Cost", `${cost.tokens ?? "–"} tokens, ${num(cost.seconds, 1)} s`, "metric-cost"]);
  if (m.pool) rows.push(["Demonstration pool", `${m.pool.validated_with} validated, ${m.pool.shipped} shipped`, "metric-pool"]);
  return el(
    "table",
    { class: "metrics" },
    el("tbody", {}, rows.map(([name, value, cls]) => el("tr", { class: cls }, el("th", { text: name }), el("td", { text: value })))),
  );
}

function taskChanges(title, rows, cls) {
  if (!rows || !rows.length) return null;
  return el(
    "details",
    { class: cls, open: rows.length <= 10 },
    el("summary", { text: `${title} (${rows.length})` }),
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ["Task", "Gold", "Before", "After"].map((h) => el("th", { text: h })))),
      el(
        "tbody",
        {},
        rows.map((r) =>
          el("tr", {}, el("td", { text: r.task_id }), el("td", { text: labels(r.gold) }),
            el("td", { text: labels(r.before) }), el("td", { text: labels(r.after) })),
        ),
      ),
    ),
  );
}

function perLabel(changes) {
  const entries = Object.entries(changes || {});
  if (!entries.length) return null;
  return el(
    "details",
    { class: "per-label", open: entries.length <= 12 },
    el("summary", { text: `Per-label F1 changes (${entries.length})` }),
    el(
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
    ),
  );
}

function renderPending(projectId, proposals, versions) {
  const box = document.getElementById("pending");
  box.replaceChildren();
  if (!proposals.length) {
    box.append(el("p", { class: "muted", text: "No proposal is waiting for review." }));
    return;
  }
  const active = versions.find((v) => v.is_active);
  for (const p of proposals) {
    const m = p.metrics || {};
    const status = el("p", { class: "card-status", hidden: true });
    const reason = el("input", { type: "text", class: "reason", placeholder: "Why reject it? (required)", size: 50 });
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
        metricsTable(m),
        taskChanges("Fixes: tasks it gets right that the active prompt got wrong", m.fixes, "fixes"),
        taskChanges("Breaks: tasks it gets wrong that the active prompt got right", m.breaks, "breaks"),
        perLabel(m.per_label),
        el("h5", { text: "Diff" }),
        diffView(p.diff),
        el(
          "div",
          { class: "actions" },
          el("button", { type: "button", class: "accept", text: "Accept", onclick: () => accept(projectId, p.id, status) }),
          el("button", { type: "button", class: "reject", text: "Reject…", onclick: () => { rejectForm.hidden = false; reason.focus(); } }),
        ),
        rejectForm,
        status,
      ),
    );
  }
}

function renderHistory(projectId, versions) {
  const body = document.querySelector("#history tbody");
  body.replaceChildren();
  const view = document.getElementById("version-view");
  view.replaceChildren();
  view.dataset.version = "";
  for (const v of [...versions].reverse()) {
    const m = v.metrics || {};
    const e = v.evaluation; // the latest prompter eval, null if never evaluated
    const evaluated = e ? `prompter eval on ${e.tasks} tasks, ${when(e.created_at)}` : null;
    const actions = el("td", { class: "actions" },
      el("button", { type: "button", class: "view", text: "View", onclick: () => showVersion(projectId, v) }));
    if (v.is_active) actions.append(el("span", { class: "badge", text: "active" }));
    else actions.append(el("button", { type: "button", class: "activate", text: "Roll back to this", onclick: () => activate(projectId, v.id) }));
    body.append(
      el(
        "tr",
        { class: v.is_active ? "active" : "", "data-id": v.id, title: v.model_version },
        el("td", { text: `#${v.id}` }),
        el("td", { text: v.source }),
        el("td", { text: v.author || "–" }),
        el("td", { text: when(v.created_at) }),
        el("td", { text: v.parent_id ? `#${v.parent_id}` : "–" }),
        el("td", { text: m.accuracy ? beforeAfter(m.accuracy, pct) : "–" }),
        el("td", { text: m.macro_f1 ? beforeAfter(m.macro_f1, pct) : "–" }),
        el("td", { class: "eval-accuracy", text: e ? pct(e.accuracy) : "", title: evaluated }),
        el("td", { class: "eval-macro-f1", text: e ? pct(e.macro_f1) : "", title: evaluated }),
        el("td", { class: "eval-ece", text: e ? num(e.ece, 3) : "", title: evaluated }),
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
  else if (diff) view.append(el("h5", { text: `Diff from version #${diff.from_id}` }), diffView(diff.diff));
  view.append(evaluationView(evaluations));
}

function renderRuns(runs) {
  const body = document.querySelector("#refinements tbody");
  body.replaceChildren();
  for (const r of runs) {
    let outcome = r.error || "";
    if (!outcome && r.summary) {
      outcome = r.summary.proposal_id ? `proposal #${r.summary.proposal_id}` : "no significant improvement";
      const tried = (r.summary.candidates || []).map((c) => `${c.strategy}: ${c.verdict}`).join(", ");
      if (tried) outcome += ` (${tried})`;
    }
    body.append(
      el(
        "tr",
        { class: `run-${r.status}`, "data-id": r.id },
        el("td", { text: `#${r.id}` }),
        el("td", { text: r.trigger }),
        el("td", { class: "status", text: r.status }),
        el("td", { text: when(r.started_at) }),
        el("td", { text: when(r.finished_at) }),
        el("td", { text: outcome }),
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
        el("td", { text: p.decided_by || "–" }),
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

async function accept(projectId, proposalId, status) {
  const button = status.parentElement.querySelector("button.accept");
  busy(button, true);
  try {
    const result = await api("POST", `/proposals/${proposalId}/accept`, {});
    say(`Proposal #${proposalId} accepted: version #${result.version.id} is now active (${result.model_version}).`, "ok");
    await loadProject(projectId);
  } catch (e) {
    status.textContent = e.message;
    status.className = "card-status error";
    status.hidden = false;
    busy(button, false);
    if (e.status === 409) await loadProject(projectId);
  }
}

async function reject(projectId, proposalId, input, status) {
  const reason = input.value.trim();
  if (!reason) {
    status.textContent = "A rejection needs a reason.";
    status.className = "card-status error";
    status.hidden = false;
    input.focus();
    return;
  }
  busy(input, true);
  try {
    const result = await api("POST", `/proposals/${proposalId}/reject`, { reason });
    say(`Proposal #${proposalId} ${result.status}: ${result.reason}`, "ok");
    await loadProject(projectId);
  } catch (e) {
    status.textContent = e.message;
    status.className = "card-status error";
    status.hidden = false;
    busy(input, false);
    if (e.status === 409) await loadProject(projectId);
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
  try {
    const run = await api("POST", `${projectPath(projectId)}/refine`);
    say(`Refinement #${run.id} started; this page updates when it ends.`, "ok");
    await loadProject(projectId);
  } catch (e) {
    say(`No refinement started: ${e.message}`, "error");
  }
}

// -- start ------------------------------------------------------------------------------------------

async function main() {
  const current = projectFromPath();
  loadModel();
  try {
    await loadProjects(current);
    if (current !== null) {
      document.getElementById("refine").addEventListener("click", () => refine(current));
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
