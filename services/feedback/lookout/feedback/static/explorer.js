// The call explorer: vanilla JS, no build step. Three views on one page, chosen by the
// path: /calls (search), /calls/<event id> (a call with its trace and session),
// /calls/coverage. Every value is written with textContent, never as HTML.
"use strict";
const $ = (id) => document.getElementById(id);
const FILTERS = ["app_id", "model", "model_version", "environment", "status", "since", "until", "score_name",
  "score_min", "score_max", "feedback", "q", "session_id", "trace_id"];
const state = { me: null, rows: [], next: null, selected: -1, call: null, session: [], listQuery: "" };

async function api(path) {
  const r = await fetch("/calls/api" + path, { credentials: "same-origin" });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error((data.error && data.error.message) || r.statusText), { status: r.status });
  return data;
}

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

function link(href, text) {
  const a = el("a", text);
  a.href = href;
  a.onclick = (e) => { if (!e.ctrlKey && !e.metaKey && !e.shiftKey) { e.preventDefault(); go(href); } };
  return a;
}

// `ts`, where known, lets the server look the call up in its day's partitions only.
function callHref(eventId, appId) {
  return `/calls/${encodeURIComponent(eventId)}?app_id=${encodeURIComponent(appId)}`;
}
function fmtTime(iso) { return iso ? new Date(iso).toLocaleString() : ""; }
function fmtMs(v) { return v == null ? "–" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`; }
function fmtCost(v) { return v == null ? "–" : `$${Number(v).toFixed(v < 0.01 ? 5 : 3)}`; }
function fmtTokens(a, b) { return a == null && b == null ? "–" : `${a ?? "?"} → ${b ?? "?"}`; }

// ---- routing -------------------------------------------------------------------------------

function show(view) {
  for (const id of ["list-view", "call-view", "coverage-view"]) $(id).hidden = id !== view;
}

async function go(href, push = true) {
  if (push) history.pushState({}, "", href);
  await route();
}

async function route() {
  const path = location.pathname;
  const match = /^\/calls\/([0-9a-fA-F-]{36})$/.exec(path);
  if (match) {
    const params = new URLSearchParams(location.search);
    show("call-view"); await openCall(match[1], params.get("app_id"));
  }
  else if (path === "/calls/coverage") { show("coverage-view"); await loadCoverage(); }
  else { show("list-view"); fillForm(new URLSearchParams(location.search)); await search(false); }
}

// ---- the list ------------------------------------------------------------------------------

function localInput(iso) {  // an ISO time as the value of a datetime-local input (local time)
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function fillForm(params) {
  const form = $("filters");
  for (const name of FILTERS) {
    const value = params.get(name) || "";
    const input = form.elements[name];
    if (input.tagName === "SELECT" && value && ![...input.options].some((o) => o.value === value)) input.add(new Option(value, value));
    input.value = (name === "since" || name === "until") && value ? localInput(value) : value;
  }
}

function formQuery() {
  const form = $("filters");
  const q = new URLSearchParams();
  for (const name of FILTERS) {
    let value = form.elements[name].value.trim();
    if (!value) continue;
    if (name === "since" || name === "until") value = new Date(value).toISOString();
    q.set(name, value);
  }
  return q;
}

async function search(push = true, more = false) {
  const q = formQuery();
  if (push) history.pushState({}, "", "/calls" + (q.toString() ? "?" + q : ""));
  if (more && state.next) q.set("cursor", state.next);
  text($("list-error"), "");
  try {
    const page = await api("/calls?" + q);
    if (!more) { state.rows = []; state.selected = -1; $("calls").tBodies[0].replaceChildren(); }
    state.listQuery = formQuery().toString();
    for (const call of page.calls) addRow(call);
    state.next = page.next;
    $("more").hidden = !page.next;
    $("empty").hidden = state.rows.length > 0;
    if (state.selected < 0 && state.rows.length) select(0);
  } catch (e) { if (e.status === 401) return signIn(); text($("list-error"), e.message); }
}

function text(node, value) { node.textContent = value == null ? "" : String(value); }

function addRow(call) {
  const tr = document.createElement("tr");
  tr.dataset.eventId = call.event_id;
  tr.dataset.appId = call.app_id;
  const cells = [fmtTime(call.ts), call.app_id, call.model, call.status, fmtMs(call.latency_ms),
    fmtTokens(call.tokens_in, call.tokens_out), fmtCost(call.cost_usd), call.question, call.answer];
  cells.forEach((value, i) => {
    const td = el("td", value, i >= 7 ? "preview" : "");
    if (i === 3 && value === "error") td.classList.add("bad");
    tr.append(td);
  });
  const index = state.rows.length;
  tr.onclick = () => { select(index); openSelected(); };
  state.rows.push(call);
  $("calls").tBodies[0].append(tr);
}

function select(index) {
  const rows = $("calls").tBodies[0].rows;
  if (!rows.length) return;
  index = Math.max(0, Math.min(index, rows.length - 1));
  if (state.selected >= 0 && rows[state.selected]) rows[state.selected].classList.remove("selected");
  state.selected = index;
  rows[index].classList.add("selected");
  rows[index].scrollIntoView({ block: "nearest" });
}

function openSelected() {
  const call = state.rows[state.selected];
  if (call) go(callHref(call.event_id, call.app_id));
}

async function loadFacets() {
  try {
    const f = await api("/facets");
    const fill = (name, values) => {
      const select = $("filters").elements[name];
      const current = select.value;
      select.replaceChildren(select.options[0], ...values.map((v) => new Option(v, v)));
      if (current) { if (!values.includes(current)) select.add(new Option(current, current)); select.value = current; }
    };
    fill("app_id", f.apps); fill("model", f.models); fill("model_version", f.model_versions);
    fill("environment", f.environments); fill("score_name", f.score_names);
  } catch (e) { /* the filters still take typed values from the URL */ }
}

// ---- one call ------------------------------------------------------------------------------

async function openCall(eventId, appId) {
  text($("call-error"), "");
  $("call").hidden = true;
  let call;
  const q = new URLSearchParams();
  if (appId) q.set("app_id", appId);
  try { call = await api(`/calls/${encodeURIComponent(eventId)}?${q}`); }
  catch (e) { if (e.status === 401) return signIn(); text($("call-error"), e.message); return; }
  state.call = call;
  $("call").hidden = false;
  $("back").href = "/calls" + (state.listQuery ? "?" + state.listQuery : "");
  const meta = $("c-meta");
  meta.replaceChildren();
  const parts = [call.app_id, call.environment, `${call.provider} / ${call.model}`, call.model_version && `version ${call.model_version}`,
    call.prompt_version && `prompt ${call.prompt_version}`, fmtTime(call.ts), call.status, fmtMs(call.latency_ms),
    call.ttft_ms != null && `first token ${fmtMs(call.ttft_ms)}`, `tokens ${fmtTokens(call.tokens_in, call.tokens_out)}`,
    call.tokens_cache_read != null && `${call.tokens_cache_read} cached`, call.tokens_reasoning != null && `${call.tokens_reasoning} reasoning`,
    `cost ${fmtCost(call.cost_usd)} (${call.cost_source})`, call.event_id];
  parts.filter(Boolean).forEach((p, i) => { if (i) meta.append(" · "); meta.append(el("span", p)); });
  meta.querySelector("span:last-child").id = "c-id";
  text($("c-error"), call.status === "error" ? call.error : "");
  const msgs = call.input && call.input.length ? call.input : [{ role: "prompt", content: call.prompt || "" }];
  $("c-messages").replaceChildren(...msgs.map((m) => {
    const d = el("div", null, "msg");
    d.append(el("b", m.name ? `${m.role} (${m.name})` : m.role), document.createTextNode(m.content || ""));
    return d;
  }));
  text($("c-output"), call.output);
  $("c-context-box").hidden = !(call.context && call.context.length);
  $("c-context").replaceChildren(...(call.context || []).map((x) => el("li", x)));
  table($("c-scores"), ["score", "value", "label", "source", "evaluator", "explanation"],
    call.scores.map((s) => [s.name, Number(s.value).toFixed(3), s.label, s.source,
      s.evaluator + (s.evaluator_version ? ` ${s.evaluator_version}` : ""), s.explanation]));
  table($("c-feedback"), ["from", "author", "thumbs", "rating", "labels", "corrected answer", "comment", "at"],
    call.feedback.map((f) => [f.source, f.author, f.thumbs == null ? "" : f.thumbs > 0 ? "up" : "down",
      f.rating, (f.labels || []).join(", "), f.corrected_output, f.comment, fmtTime(f.ts)]));
  $("c-tasks-box").hidden = !call.review_tasks.length;
  $("c-tasks").replaceChildren(...call.review_tasks.map((t) => el("li", `${t.kind}: ${t.reason}`)));
  await Promise.all([loadTrace(call), loadSession(call)]);
}

function table(node, head, rows) {
  node.replaceChildren();
  if (!rows.length) { node.append(el("caption", "none")); return; }
  const tr = node.createTHead().insertRow();
  for (const h of head) tr.append(el("th", h));
  const body = node.createTBody();
  for (const row of rows) {
    const r = body.insertRow();
    for (const v of row) r.append(el("td", v == null ? "" : v));
  }
}

async function loadTrace(call) {
  const box = $("c-trace");
  box.replaceChildren();
  if (!call.trace_id) { box.append(el("p", "This call has no trace id.", "muted")); return; }
  let trace;
  try { trace = await api(`/traces/${encodeURIComponent(call.trace_id)}`); }
  catch (e) { box.append(el("p", e.status === 404 ? "No steps of this trace are stored." : e.message, "muted")); return; }
  const total = Math.max(1, ...trace.spans.map((s) => (s.offset_ms || 0) + (s.duration_ms || 0)));
  for (const span of trace.spans) {
    const row = el("div", null, "step" + (span.event_id === call.event_id ? " current" : ""));
    row.dataset.kind = span.kind;
    row.style.paddingLeft = `${span.depth * 1.2}rem`;
    const label = el("span", null, "step-label");
    label.append(el("span", span.kind, `kind ${span.kind}`), " ");
    if (span.kind === "llm" && span.event_id && span.event_id !== call.event_id) label.append(link(callHref(span.event_id, span.app_id), span.name || span.model));
    else label.append(el("span", span.name || span.model || span.kind));
    if (span.status === "error") label.append(el("span", " error", "bad"));
    const bar = el("span", null, "bar");
    const fill = el("span", null, "fill");
    fill.style.left = `${(100 * (span.offset_ms || 0)) / total}%`;
    fill.style.width = `${Math.max(0.5, (100 * (span.duration_ms || 0)) / total)}%`;
    bar.append(fill);
    const detail = [fmtMs(span.duration_ms), span.model && span.kind !== "llm" && span.model,
      span.tokens_in != null && `${span.tokens_in} tokens`].filter(Boolean).join(" · ");
    row.append(label, bar, el("span", detail, "step-time"));
    const io = [span.input && `in: ${span.input}`, span.output && `out: ${span.output}`, span.answer && span.event_id !== call.event_id && `answer: ${span.answer}`]
      .filter(Boolean);
    if (io.length) { const d = el("div", io.join("\n"), "step-io"); d.style.marginLeft = `${span.depth * 1.2 + 1}rem`; box.append(row, d); }
    else box.append(row);
  }
  if (trace.truncated) {
    box.append(el("p", `Trace cut: ${trace.spans.length} steps shown of ${trace.spans_total} stored steps and ` +
      `${trace.calls_total} calls.`, "muted cut"));
  }
}

async function loadSession(call) {
  const box = $("c-session");
  box.replaceChildren();
  state.session = [];
  if (!call.session_id) { box.append(el("p", "This call belongs to no session.", "muted")); return; }
  await loadTurns(call, box, null);
}

// A page of the session's turns, then a button for the next one: a long session is read
// whole, page by page.
async function loadTurns(call, box, cursor) {
  const q = new URLSearchParams({ limit: "200" });
  if (cursor) q.set("cursor", cursor);
  let page;
  try { page = await api(`/sessions/${encodeURIComponent(call.session_id)}?${q}`); }
  catch (e) { box.append(el("p", e.message, "muted")); return; }
  if (state.call !== call) return;  // another call was opened meanwhile
  state.session.push(...page.calls);
  for (const turn of page.calls) {
    const current = turn.event_id === call.event_id;
    const d = el("div", null, "turn" + (current ? " current" : ""));
    const head = el("div", null, "meta");
    head.append(current ? el("span", fmtTime(turn.ts)) : link(callHref(turn.event_id, turn.app_id), fmtTime(turn.ts)), ` · ${turn.model}`);
    d.append(head, el("div", turn.question, "msg q"), el("div", turn.answer, "msg a"));
    box.append(d);
  }
  if (page.truncated && !cursor) {
    box.append(el("p", "This session has more agent runs than are searched for its turns; turns of the latest runs may be missing.", "muted cut"));
  }
  if (page.next) {
    const more = el("button", "More turns", "more-turns");
    more.type = "button";
    more.addEventListener("click", () => { more.remove(); loadTurns(call, box, page.next); });
    box.append(more);
  }
}

function stepSession(delta) {
  const at = state.session.findIndex((t) => t.event_id === state.call.event_id);
  const turn = state.session[at + delta];
  if (at >= 0 && turn) go(callHref(turn.event_id, turn.app_id));
}

function stepList(delta) {
  const at = state.rows.findIndex((r) => r.event_id === state.call.event_id);
  const next = state.rows[at + delta];
  if (at >= 0 && next) { state.selected = at + delta; go(callHref(next.event_id, next.app_id)); }
}

// ---- coverage ------------------------------------------------------------------------------

async function loadCoverage() {
  const box = $("coverage");
  box.replaceChildren();
  text($("coverage-error"), "");
  let data;
  try { data = await api("/coverage"); }
  catch (e) { if (e.status === 401) return signIn(); text($("coverage-error"), e.message); return; }
  if (!data.sources.length) { box.append(el("p", "No OTLP calls in this period.")); return; }
  const t = el("table", null, "grid coverage");
  const head = t.createTHead().insertRow();
  for (const h of ["source", "version", "calls", ...data.fields, "steps", "dropped attributes"]) head.append(el("th", h.replaceAll("_", " ")));
  const body = t.createTBody();
  for (const s of data.sources) {
    const r = body.insertRow();
    r.append(el("td", s.source || "(no scope)"), el("td", s.version), el("td", s.calls));
    for (const f of data.fields) {
      const n = s.fields[f] || 0;
      const share = s.calls ? n / s.calls : 0;
      r.append(el("td", s.calls ? `${Math.round(share * 100)}%` : "–", share >= 0.99 ? "ok" : share === 0 ? "bad" : "partial"));
    }
    r.append(el("td", Object.entries(s.steps).map(([k, v]) => `${k} ${v}`).join(", ")));
    r.append(el("td", s.dropped.map((d) => `${d.attribute} (${d.calls})`).join(", "), "dropped"));
  }
  box.append(t);
}

// ---- keys, sign-in -------------------------------------------------------------------------

function onKey(e) {
  const target = e.target;
  const inField = ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName);
  if (inField) {
    if (e.key === "Escape") { target.blur(); e.preventDefault(); }
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey || !state.me) return;
  const list = !$("list-view").hidden;
  const call = !$("call-view").hidden;
  if (list && (e.key === "j" || e.key === "ArrowDown")) select(state.selected + 1);
  else if (list && (e.key === "k" || e.key === "ArrowUp")) select(state.selected - 1);
  else if (list && (e.key === "Enter" || e.key === "o")) openSelected();
  else if (list && e.key === "/") $("filters").elements.q.focus();
  else if (list && e.key === "f") $("filters").elements.app_id.focus();
  else if (list && e.key === "m" && state.next) search(false, true);
  else if (call && (e.key === "u" || e.key === "Escape")) go($("back").getAttribute("href"));
  else if (call && e.key === "n") stepSession(1);
  else if (call && e.key === "p") stepSession(-1);
  else if (call && e.key === "j") stepList(1);
  else if (call && e.key === "k") stepList(-1);
  else if (call && e.key === "t") { $("trace-title").scrollIntoView(); $("c-trace").focus(); }
  else if (call && e.key === "s") { $("session-title").scrollIntoView(); $("c-session").focus(); }
  else if (e.key === "c") go("/calls/coverage");
  else return;
  e.preventDefault();
}

function signIn() {
  for (const id of ["list-view", "call-view", "coverage-view"]) $(id).hidden = true;
  $("login").hidden = false;
  $("username").focus();
}

async function enter(me) {
  state.me = me;
  text($("who"), `${me.username} (${me.role}) · ${me.apps.includes("*") || me.role === "admin" ? "all apps" : me.apps.join(", ")}`);
  $("logout").hidden = false;
  $("login").hidden = true;
  if (document.activeElement) document.activeElement.blur();
  await loadFacets();
  await route();
}

async function reviewApi(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.me) headers["X-CSRF-Token"] = state.me.csrf;
  const r = await fetch("/review/api" + path, { method, headers, credentials: "same-origin", body: body ? JSON.stringify(body) : undefined });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || r.statusText);
  return data;
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try { await enter(await reviewApi("POST", "/login", { username: $("username").value, password: $("password").value })); }
  catch (err) { text($("login-error"), err.message); }
});
$("logout").onclick = async () => { await reviewApi("POST", "/logout").catch(() => {}); location.href = "/calls"; };
$("filters").addEventListener("submit", (e) => { e.preventDefault(); search(true); });
$("clear").onclick = () => { $("filters").reset(); search(true); };
$("more").onclick = () => search(false, true);
window.addEventListener("popstate", () => { if (state.me) route(); });
document.addEventListener("keydown", onKey);

reviewApi("GET", "/me").then(enter).catch(signIn);
