// The review page: vanilla JS, no build step. Every action has a key (see #help).
"use strict";
const $ = (id) => document.getElementById(id);
const state = { me: null, task: null, rating: null, thumbs: null, labels: new Set() };

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.me) headers["X-CSRF-Token"] = state.me.csrf;
  const r = await fetch("/review/api" + path, { method, headers, body: body ? JSON.stringify(body) : undefined,
    credentials: "same-origin" });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error((data.error && data.error.message) || r.statusText), { status: r.status });
  return data;
}

function text(el, value) { el.textContent = value == null ? "" : String(value); }

function choices(container, items, isOn, onPick) {
  container.replaceChildren(...items.map(([value, label, key]) => {
    const b = document.createElement("span");
    b.className = "choice" + (isOn(value) ? " on" : "");
    b.textContent = label + (key ? ` (${key})` : "");
    b.dataset.value = value;
    b.onclick = () => { onPick(value); renderForm(); };
    return b;
  }));
}

function renderForm() {
  choices($("rating"), [1, 2, 3, 4, 5].map((n) => [n, String(n), null]), (v) => v === state.rating,
    (v) => { state.rating = v; });
  choices($("thumbs"), [[1, "+1 up", "u"], [-1, "-1 down", "d"]], (v) => v === state.thumbs,
    (v) => { state.thumbs = v; });
  choices($("labels"), state.me.labels.map((l, i) => [l, l, i < 9 ? "⇧" + (i + 1) : null]),
    (v) => state.labels.has(v), toggleLabel);
}

function toggleLabel(label) { state.labels.has(label) ? state.labels.delete(label) : state.labels.add(label); }

function showProgress(p) { if (p) text($("progress"), `${p.done} reviewed · ${p.open} open`); }

function showTask(task) {
  state.task = task; state.rating = null; state.thumbs = null; state.labels = new Set();
  $("corrected").value = ""; $("note").value = ""; text($("form-error"), "");
  $("empty").hidden = !!task; $("task").hidden = !task;
  if (!task) return;
  const c = task.call || {};
  text($("t-app"), task.app_id); text($("t-model"), c.model); text($("t-id"), task.event_id);
  // The call in the explorer, with its trace and session.
  $("t-open").href = `/calls/${encodeURIComponent(task.event_id)}?app_id=${encodeURIComponent(task.app_id)}`;
  text($("t-lease"), new Date(task.lease_expires_ms).toLocaleTimeString());
  $("t-reasons").replaceChildren(...task.reasons.map((r) => { const li = document.createElement("li"); li.textContent = r; return li; }));
  const msgs = (c.input && c.input.length) ? c.input : [{ role: "prompt", content: c.prompt || "" }];
  $("t-messages").replaceChildren(...msgs.map((m) => {
    const d = document.createElement("div"); d.className = "msg";
    const b = document.createElement("b"); b.textContent = m.role; d.append(b, document.createTextNode(m.content || ""));
    return d;
  }));
  text($("t-output"), c.output);
  $("t-context-box").hidden = !(c.context && c.context.length);
  $("t-context").replaceChildren(...(c.context || []).map((x) => { const li = document.createElement("li"); li.textContent = x; return li; }));
  $("t-scores").replaceChildren(...(c.scores || []).map((s) => {
    const tr = document.createElement("tr");
    for (const v of [s.name, Number(s.value).toFixed(3), s.label || ""]) { const td = document.createElement("td"); td.textContent = v; tr.append(td); }
    return tr;
  }));
  renderForm();
}

function filters() { return { app_id: $("filter-app").value || null, kind: $("filter-kind").value || null }; }

async function next() {
  try {
    const r = await api("POST", "/next", filters());
    showProgress(r.progress); showTask(r.task);
  } catch (e) { text($("form-error"), e.message); }
}

// A task is a call of one app: the app goes with the event id (two apps may share an id).
function taskPath(op) {
  return `/tasks/${state.task.event_id}/${op}?app_id=${encodeURIComponent(state.task.app_id)}`;
}

async function submit() {
  if (!state.task) return;
  const body = { rating: state.rating, thumbs: state.thumbs, labels: [...state.labels],
    corrected_output: $("corrected").value || null, comment: $("note").value || null };
  try {
    await api("POST", taskPath("submit"), body);
    await next();
  } catch (e) { text($("form-error"), e.message); }
}

async function act(op) {
  if (!state.task) return;
  try { await api("POST", taskPath(op)); await next(); }
  catch (e) { text($("form-error"), e.message); }
}

function onKey(e) {
  if ($("main").hidden) return;
  const inText = e.target.tagName === "TEXTAREA" || e.target.tagName === "INPUT" || e.target.tagName === "SELECT";
  if (inText) {
    if (e.key === "Escape") { e.target.blur(); e.preventDefault(); }
    else if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && e.target.tagName === "TEXTAREA") { e.preventDefault(); submit(); }
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const digit = /^Digit([1-9])$/.exec(e.code);
  if (digit && e.shiftKey) {
    const label = state.me.labels[Number(digit[1]) - 1];
    if (label) { toggleLabel(label); renderForm(); }
  } else if (digit && Number(digit[1]) <= 5) { state.rating = Number(digit[1]); renderForm(); }
  else if (e.key === "u") { state.thumbs = 1; renderForm(); }
  else if (e.key === "d") { state.thumbs = -1; renderForm(); }
  else if (e.key === "c") { $("corrected").focus(); }
  else if (e.key === "o") { $("note").focus(); }
  else if (e.key === "s") { act("skip"); }
  else if (e.key === "x") { act("release"); }
  else if (e.key === "n") { next(); }
  else if (e.key === "a") { $("filter-app").focus(); }
  else if (e.key === "r") { $("filter-kind").focus(); }
  else if (e.key === "Enter") { submit(); }
  else return;
  e.preventDefault();
}

// The calls a retrain run's evidence counted: its app and model over the window of its
// first rule, narrowed to what the rule measured (thumbs down, toxicity, a judge's scores).
function evidenceLink(run) {
  const td = document.createElement("td");
  const a = document.createElement("a");
  const q = new URLSearchParams({ app_id: run.app_id, model: run.model });
  const ev = run.evidence || {};
  const rule = (ev.rules || [])[0] || {};
  const end = typeof ev.window_end === "number" ? ev.window_end * 1000 : Date.parse(ev.window_end);
  if (end && rule.window_s) {
    q.set("since", new Date(end - rule.window_s * 1000).toISOString());
    q.set("until", new Date(end + 1000).toISOString());
  }
  if (/thumbs|feedback/.test(rule.kind || "")) q.set("feedback", "down");
  else if (/toxic/.test(rule.kind || "")) q.set("score_name", "toxicity");
  a.href = "/calls?" + q; a.textContent = "evidence calls"; a.className = "retrain-evidence";
  td.append(a);
  return td;
}

// Admins: retrain runs whose policy waits for approval, with Approve / Reject. The decision
// goes through this service (session + CSRF) to llm.retrain.status; the retrain-trigger applies it.
async function loadRetrain() {
  let runs;
  try { runs = (await api("GET", "/admin/retrain/runs")).runs; }
  catch (err) { text($("retrain-error"), err.message); return; }
  text($("retrain-error"), "");
  $("retrain").hidden = runs.length === 0;
  $("retrain-runs").replaceChildren(...runs.map((run) => {
    const tr = document.createElement("tr");
    const counts = Object.entries(run.dataset_counts).map(([k, v]) => `${k} ${v}`).join(", ");
    for (const value of [run.app_id, run.model, run.rule, run.message, counts, run.requested_at]) {
      const td = document.createElement("td"); text(td, value); tr.append(td);
    }
    tr.append(evidenceLink(run));
    for (const [label, decision] of [["Approve", "approve"], ["Reject", "reject"]]) {
      const td = document.createElement("td");
      const b = document.createElement("button");
      b.type = "button"; b.textContent = label; b.dataset.run = run.run_id; b.className = "retrain-" + decision;
      b.onclick = async () => {
        if (!confirm(`${label} retrain run ${run.run_id} (${run.app_id}/${run.model})?`)) return;
        try { await api("POST", `/admin/retrain/${run.run_id}/${decision}`); tr.remove(); }
        catch (err) { text($("retrain-error"), err.message); }
        if (!$("retrain-runs").rows.length) $("retrain").hidden = true;
      };
      td.append(b); tr.append(td);
    }
    return tr;
  }));
}

async function enter(me) {
  state.me = me;
  text($("who"), `${me.username} (${me.role})`);
  if (me.role === "admin") {
    // Inter-annotator agreement on the overlap share, for admins only.
    api("GET", "/admin/agreement").then((a) => {
      if (a.pairs) text($("who"), `${me.username} (admin) · agreement on ${a.pairs} calls: rating ${a.rating_exact} exact, ` +
        `${a.rating_within_1} within 1 · thumbs ${a.thumbs} · labels ${a.labels_jaccard}`);
    }).catch(() => {});
    loadRetrain();
  }
  const apps = me.apps.filter((a) => a !== "*");
  $("filter-app").replaceChildren(new Option("all", ""), ...apps.map((a) => new Option(a, a)));
  if (document.activeElement) document.activeElement.blur();
  $("login").hidden = true; $("main").hidden = false;
  await next();
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try { await enter(await api("POST", "/login", { username: $("username").value, password: $("password").value })); }
  catch (err) { text($("login-error"), err.message); }
});
$("review-form").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
$("password-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await api("POST", "/password", { current_password: $("current-password").value,
      new_password: $("new-password").value });
    text($("password-note"), "Password changed; your other sessions were ended.");
    $("password-form").reset();
  } catch (err) { text($("password-note"), err.message); }
});
$("skip").onclick = () => act("skip");
$("release").onclick = () => act("release");
$("logout").onclick = async () => { await api("POST", "/logout").catch(() => {}); location.reload(); };
$("filter-app").onchange = next;
$("filter-kind").onchange = next;
document.addEventListener("keydown", onKey);

api("GET", "/me").then(enter).catch(() => { $("login").hidden = false; $("username").focus(); });
