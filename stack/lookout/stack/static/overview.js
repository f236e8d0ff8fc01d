// Lookout overview: draws the panel specification from /overview/api/panels with uPlot
// and refreshes every few seconds. No build step, no framework: one file the stack serves.
// The data needs a viewer: the review UI's session cookie (signed in here or on /review),
// or an API key with the read scope, kept in sessionStorage (this tab only) and sent as
// a Bearer header.
"use strict";

const PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#96d98d"];
const FILTERS = ["app", "model", "environment"];
const KEY_ITEM = "lookout.overview.key";
// `generation` grows with every refresh; a slow answer from an older one (before a filter
// changed) is dropped instead of drawn over a newer one.
const state = { spec: null, panels: new Map(), refreshes: 0, timer: null, generation: 0, listening: false };

class AuthError extends Error {}

function authHeaders() {
  const key = sessionStorage.getItem(KEY_ITEM);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorText(response) {
  const text = await response.text();
  try {
    return JSON.parse(text).error.message;
  } catch {
    return text.slice(0, 200);
  }
}

async function getJSON(url) {
  const response = await fetch(url, { headers: authHeaders(), credentials: "same-origin" });
  if (response.status === 401) throw new AuthError(await errorText(response));
  if (!response.ok) throw new Error(`${response.status}: ${await errorText(response)}`);
  return response.json();
}

function form() {
  return document.getElementById("filters");
}

function query(names = FILTERS) {
  const q = new URLSearchParams({ from: form().range.value, to: "now" });
  for (const name of names) {
    const value = form()[name].value;
    if (value) q.append(name, value);
  }
  return q;
}

// ---- formatting ------------------------------------------------------------------------

function formatValue(unit, v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  switch (unit) {
    case "percentunit": return `${(v * 100).toFixed(v < 0.1 ? 2 : 1)}%`;
    case "ms": return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`;
    case "currencyUSD": return `$${v >= 100 ? v.toFixed(0) : v.toFixed(2)}`;
    case "reqpm": return `${compact(v)}/min`;
    default: return compact(v);
  }
}

function compact(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(1)}B`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(a < 1 ? 3 : 1);
}

function formatCell(column, v) {
  if (column.type === "time" && typeof v === "number") {
    return new Date(v * 1000).toISOString().replace("T", " ").slice(0, 19);
  }
  return formatValue("short", v);
}

// ---- links to the call explorer ---------------------------------------------------------

// What a panel counts, as explorer filters: its calls are one click away.
const PANEL_CALLS = {
  error_share: { status: "error" }, error_rate: { status: "error" }, thumbs_down: { feedback: "down" },
  toxicity_rate: { score_name: "toxicity", score_min: "0.5" },
};

function rangeStart(range) {
  const m = /^now-(\d+)([mhd])$/.exec(range || "");
  if (!m) return null;
  const ms = { m: 60e3, h: 3600e3, d: 86400e3 }[m[2]] * Number(m[1]);
  return new Date(Date.now() - ms).toISOString();
}

function explorerHref(extra = {}) {
  const q = new URLSearchParams();
  const since = rangeStart(form().range.value);
  if (since) q.set("since", since);
  for (const [name, param] of [["app", "app_id"], ["model", "model"], ["environment", "environment"]]) {
    if (form()[name].value) q.set(param, form()[name].value);
  }
  for (const [k, v] of Object.entries(extra)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  return "/calls?" + q;
}

function updateLinks() {
  for (const entry of state.panels.values()) {
    entry.link.href = explorerHref(PANEL_CALLS[entry.spec.id] || {});
  }
}

// ---- panels ----------------------------------------------------------------------------

function buildPanel(spec) {
  const el = document.createElement("section");
  el.className = `panel ${spec.kind}`;
  el.dataset.panelId = spec.id;
  el.dataset.state = "loading";
  el.style.gridColumn = `span ${spec.width}`;
  const title = document.createElement("h2");
  title.textContent = spec.title;
  title.title = spec.description;
  const link = document.createElement("a");
  link.className = "explore";
  link.textContent = "calls";
  link.title = "These calls in the call explorer";
  title.append(" ", link);
  const body = document.createElement("div");
  body.className = "body";
  el.append(title, body);
  return { spec, el, body, link, chart: null, labels: null };
}

function setMessage(entry, className, text) {
  if (entry.chart) {
    entry.chart.destroy();
    entry.chart = null;
  }
  entry.body.replaceChildren();
  const p = document.createElement("div");
  p.className = className;
  p.textContent = text;
  entry.body.append(p);
}

// Long rows (time, series, value...) become uPlot's columns: one x array and one y array
// per series and numeric column, null where a series has no bucket.
function toSeries(data) {
  const cols = data.columns;
  const t = cols.findIndex((c) => c.type === "time");
  const numeric = cols.map((c, i) => (c.type === "number" ? i : -1)).filter((i) => i >= 0);
  const s = data.series_column ? cols.findIndex((c) => c.name === data.series_column) : -1;
  const xs = [...new Set(data.rows.map((r) => r[t]))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const lines = new Map();
  const units = new Map();
  for (const row of data.rows) {
    for (const n of numeric) {
      const name = s >= 0 ? (numeric.length > 1 ? `${row[s]} ${cols[n].name}` : row[s]) : cols[n].name;
      if (!lines.has(name)) {
        lines.set(name, new Array(xs.length).fill(null));
        units.set(name, cols[n].unit || data.unit);
      }
      lines.get(name)[at.get(row[t])] = row[n];
    }
  }
  return { xs, labels: [...lines.keys()], ys: [...lines.values()], units: [...units.values()] };
}

function drawTimeseries(entry, data) {
  const { xs, labels, ys, units } = toSeries(data);
  const unit = data.unit;
  // A column in another unit (a count beside a rate) gets its own axis on the right.
  const other = units.find((u) => u !== unit);
  const sameShape = entry.chart && entry.labels && entry.labels.join("\n") === labels.join("\n");
  // The x axis spans the asked range, so a gap in the data shows as a gap.
  entry.range = [data.from, data.to];
  if (sameShape) {
    entry.chart.setData([xs, ...ys]);
    return;
  }
  setMessage(entry, "chart", "");
  const target = entry.body.firstChild;
  entry.labels = labels;
  const axis = { stroke: "#8e8e8e", grid: { stroke: "#2c3037", width: 1 }, ticks: { stroke: "#2c3037" } };
  entry.chart = new uPlot({
    width: Math.max(entry.body.clientWidth, 200),
    height: 190,
    scales: { x: { time: true, range: () => entry.range } },
    series: [
      { value: (u, v) => (v === null ? "–" : new Date(v * 1000).toISOString().slice(11, 16)) },
      ...labels.map((label, i) => ({
        label,
        scale: units[i] === unit ? "y" : "y2",
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        spanGaps: false,
        value: (u, v) => formatValue(units[i], v),
      })),
    ],
    axes: [
      axis,
      { ...axis, scale: "y", size: 64, values: (u, vals) => vals.map((v) => formatValue(unit, v)) },
      ...(other ? [{
        ...axis, scale: "y2", side: 1, size: 56, grid: { show: false },
        values: (u, vals) => vals.map((v) => formatValue(other, v)),
      }] : []),
    ],
  }, [xs, ...ys], target);
}

function drawStat(entry, data) {
  setMessage(entry, "value", formatValue(data.unit, data.rows[0][0]));
}

function drawTable(entry, data) {
  setMessage(entry, "table-wrap", "");
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const c of data.columns) {
    const th = document.createElement("th");
    th.textContent = c.name.replaceAll("_", " ");
    head.append(th);
  }
  const app = data.columns.findIndex((c) => c.name === "app_id");
  const model = data.columns.findIndex((c) => c.name === "model");
  if (app >= 0) head.append(document.createElement("th"));
  const body = table.createTBody();
  for (const row of data.rows) {
    const tr = body.insertRow();
    data.columns.forEach((c, i) => {
      const td = tr.insertCell();
      td.textContent = formatCell(c, row[i]);
      if ((c.name === "drifted" && row[i] === 1) || (c.name === "status" && row[i] === "failed")) {
        td.className = "bad";
      }
    });
    if (app >= 0) {  // this row's calls (a drifted stream, a model version, a retrain run's model)
      const a = document.createElement("a");
      a.className = "explore";
      a.textContent = "calls";
      a.href = explorerHref({ app_id: row[app], model: model >= 0 ? row[model] : null });
      tr.insertCell().append(a);
    }
  }
  entry.body.firstChild.append(table);
}

async function refreshPanel(entry, q, generation) {
  try {
    const data = await getJSON(`/overview/api/panels/${encodeURIComponent(entry.spec.id)}?${q}`);
    if (generation !== state.generation) return;
    entry.el.dataset.rows = String(data.rows.length);
    if (data.rows.length === 0) {
      setMessage(entry, "empty", "No data in this range");
      entry.el.dataset.state = "empty";
      return;
    }
    if (data.kind === "timeseries") drawTimeseries(entry, data);
    else if (data.kind === "stat") drawStat(entry, data);
    else drawTable(entry, data);
    entry.el.dataset.state = "ok";
  } catch (err) {
    if (generation !== state.generation) return;
    if (err instanceof AuthError) state.signedOut = err.message;
    setMessage(entry, "error-text", String(err.message || err));
    entry.el.dataset.state = "error";
  }
}

async function refresh() {
  clearTimeout(state.timer);
  const generation = ++state.generation;
  const q = query();
  state.signedOut = null;
  updateLinks();
  await Promise.all([...state.panels.values()].map((entry) => refreshPanel(entry, q, generation)));
  if (generation !== state.generation) return;  // a newer refresh owns the page and the timer
  if (state.signedOut) {  // the session ended or the key was revoked while the page was open
    showSignIn(state.signedOut);
    return;
  }
  state.refreshes += 1;
  document.body.dataset.refreshes = String(state.refreshes);
  const failed = [...state.panels.values()].filter((e) => e.el.dataset.state === "error").length;
  const status = document.getElementById("status");
  status.className = failed ? "error" : "";
  status.textContent = failed
    ? `${failed} panel(s) failed · ${new Date().toLocaleTimeString()}`
    : `updated ${new Date().toLocaleTimeString()} · every ${state.spec.refresh_s} s`;
  state.timer = setTimeout(refresh, state.spec.refresh_s * 1000);
}

// ---- filters ---------------------------------------------------------------------------

async function loadOptions(name, dependsOn) {
  const select = form()[name];
  const keep = select.value;
  try {
    const data = await getJSON(`/overview/api/variables/${name}?${query(dependsOn)}`);
    const options = [new Option("All", ""), ...data.options.map((v) => new Option(v, v))];
    select.replaceChildren(...options);
    select.value = data.options.includes(keep) ? keep : "";
  } catch (err) {
    console.warn(`options of ${name}:`, err);
  }
}

async function loadAllOptions() {
  await loadOptions("app", []);
  await loadOptions("model", ["app"]);
  await loadOptions("environment", ["app", "model"]);
}

function onResize() {
  for (const entry of state.panels.values()) {
    if (entry.chart) entry.chart.setSize({ width: Math.max(entry.body.clientWidth, 200), height: 190 });
  }
}

// ---- signing in -------------------------------------------------------------------------

function show(id, visible) {
  document.getElementById(id).hidden = !visible;
}

async function showSignIn(message) {
  state.generation += 1;
  clearTimeout(state.timer);
  document.body.dataset.auth = "signed-out";
  show("panels", false);
  show("filters", false);
  show("viewer", false);
  show("sign-in", true);
  document.getElementById("status").textContent = "";
  document.getElementById("sign-in-error").textContent = message || "";
  try {
    const how = await getJSON("/overview/api/auth");
    show("login", how.review_login);
  } catch (err) {
    show("login", false);
  }
}

async function signInWithPassword(event) {
  event.preventDefault();
  const f = event.target;
  sessionStorage.removeItem(KEY_ITEM);
  const response = await fetch("/review/api/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: f.username.value, password: f.password.value }),
  });
  f.password.value = "";
  if (!response.ok) {
    document.getElementById("sign-in-error").textContent = await errorText(response);
    return;
  }
  await main();
}

async function signInWithKey(event) {
  event.preventDefault();
  const f = event.target;
  sessionStorage.setItem(KEY_ITEM, f.key.value.trim());
  f.key.value = "";
  await main();
}

async function signOut() {
  if (sessionStorage.getItem(KEY_ITEM)) {
    sessionStorage.removeItem(KEY_ITEM);
  } else {
    // The session's CSRF token, which only a same-origin page can read, authorises the logout.
    try {
      const me = await getJSON("/review/api/me");
      await fetch("/review/api/logout", { method: "POST", credentials: "same-origin",
        headers: { "X-CSRF-Token": me.csrf } });
    } catch (err) {
      console.warn("logout:", err);
    }
  }
  await showSignIn("Signed out.");
}

// ---- start -----------------------------------------------------------------------------

async function start(viewer) {
  state.spec = await getJSON("/overview/api/panels");
  const container = document.getElementById("panels");
  state.panels.clear();
  container.replaceChildren();
  for (const spec of state.spec.panels) {
    const entry = buildPanel(spec);
    state.panels.set(spec.id, entry);
    container.append(entry.el);
  }
  const apps = viewer.apps === null ? "all apps" : viewer.apps.join(", ") || "no apps";
  document.getElementById("viewer-name").textContent = `${viewer.name} · ${apps}`;
  show("sign-in", false);
  show("panels", true);
  show("filters", true);
  show("viewer", true);
  document.body.dataset.auth = "signed-in";
  if (!state.listening) {
    state.listening = true;
    form().addEventListener("change", async (event) => {
      state.generation += 1;  // answers for the old filters, still in flight, are stale now
      clearTimeout(state.timer);
      const name = event.target.name;
      if (name === "range" || name === "app") await loadOptions("model", ["app"]);
      if (name !== "environment") await loadOptions("environment", ["app", "model"]);
      refresh();
    });
    window.addEventListener("resize", onResize);
  }
  await loadAllOptions();
  await refresh();
}

async function main() {
  let viewer;
  try {
    viewer = await getJSON("/overview/api/me");
  } catch (err) {
    if (err instanceof AuthError) {
      const hadKey = sessionStorage.getItem(KEY_ITEM);
      sessionStorage.removeItem(KEY_ITEM);
      await showSignIn(hadKey ? err.message : "");
      return;
    }
    if (sessionStorage.getItem(KEY_ITEM)) sessionStorage.removeItem(KEY_ITEM);  // e.g. a key without read
    await showSignIn(String(err.message || err));
    return;
  }
  await start(viewer);
}

document.getElementById("login").addEventListener("submit", signInWithPassword);
document.getElementById("key-login").addEventListener("submit", signInWithKey);
document.getElementById("sign-out").addEventListener("click", signOut);
main().catch((err) => {
  const status = document.getElementById("status");
  status.className = "error";
  status.textContent = `overview failed to start: ${err.message || err}`;
});
