// Lookout overview: draws the panel specification from /overview/api/panels with uPlot
// and refreshes every few seconds. No build step, no framework: one file the stack serves.
// The data needs a viewer: the review UI's session cookie (signed in here or on /review),
// or an API key with the read scope, kept in sessionStorage (this tab only) and sent as
// a Bearer header.
//
// Units and axes come from the panel spec (the same Grafana gets): each unit has its
// formatter here, and each value axis its bounds (percent panels within 0-100 %, counts from
// 0), computed as Grafana computes them. The range "fit" (the default) asks the server for
// the span that holds the viewer's data, so a fresh install's first minutes fill the charts.
// Alerts that are Pending, firing or in Error are listed above the panels.
"use strict";

const PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#96d98d"];
const FILTERS = ["app", "model", "environment"];
const KEY_ITEM = "lookout.overview.key";
// `generation` grows with every refresh; a slow answer from an older one (before a filter
// changed) is dropped instead of drawn over a newer one.
const state = {
  spec: null, panels: new Map(), refreshes: 0, timer: null, generation: 0, listening: false,
  window: null,  // {from, to} as the query's text: epoch ms for "fit", else the select's value
};

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
  const w = state.window || { from: "now-1h", to: "now" };
  const q = new URLSearchParams({ from: w.from, to: w.to });
  for (const name of names) {
    const value = form()[name].value;
    if (value) q.append(name, value);
  }
  return q;
}

// The time range for this refresh: the select's relative range, or for "fit" the span the
// server finds for the current filters (epoch ms, so every panel asks for the same one).
async function resolveWindow() {
  const range = form().range.value;
  if (range !== "fit") {
    state.window = { from: range, to: "now" };
    return;
  }
  const q = new URLSearchParams();
  for (const name of FILTERS) {
    const value = form()[name].value;
    if (value) q.append(name, value);
  }
  const fitted = await getJSON(`/overview/api/range?${q}`);
  state.window = { from: String(Math.floor(fitted.from * 1000)), to: String(Math.ceil(fitted.to * 1000)) };
  const option = form().range.querySelector('option[value="fit"]');
  option.textContent = `Fit data (${duration(fitted.to - fitted.from, 0)})`;
  document.body.dataset.window = JSON.stringify([fitted.from, fitted.to]);
}

// ---- formatting ------------------------------------------------------------------------

// The decimals that write a tick step exactly (2.5 -> 1, 50 -> 0, 0.02 -> 2).
function decimalsFor(step) {
  if (!step || !Number.isFinite(step)) return null;
  for (let d = 0; d < 6; d += 1) {
    const scaled = Math.abs(step) * 10 ** d;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * Math.max(1, scaled)) return d;
  }
  return 6;
}

function fixed(v, decimals, fallback) {
  return v.toFixed(decimals === null || decimals === undefined ? fallback : decimals);
}

// A duration in seconds the way Grafana's `s` unit writes it: 46 s, 12.3 min, 2.05 hour, 3.2 day.
function duration(seconds, decimals) {
  const a = Math.abs(seconds);
  if (a < 60) return `${fixed(seconds, decimals, a < 10 && !Number.isInteger(seconds) ? 1 : 0)} s`;
  if (a < 3600) return `${fixed(seconds / 60, decimals, 1)} min`;
  if (a < 86400) return `${fixed(seconds / 3600, decimals, 2)} hour`;
  return `${fixed(seconds / 86400, decimals, 1)} day`;
}

// One formatter per unit the spec uses (Grafana unit ids); `step` is the axis' tick step,
// so ticks carry the decimals that tell them apart, single values a fixed precision.
const UNITS = {
  percentunit: (v, step) => `${fixed(v * 100, step ? decimalsFor(step * 100) : null, v < 0.1 ? 2 : 1)}%`,
  ms: (v, step) => (Math.abs(v) >= 1000 ? duration(v / 1000, step ? decimalsFor(step / 1000) : null)
    : `${fixed(v, step ? decimalsFor(step) : null, 0)} ms`),
  s: (v, step) => (Math.abs(v) >= 60 || !step ? duration(v) : duration(v, decimalsFor(step))),
  currencyUSD: (v, step) => `$${fixed(v, step ? decimalsFor(step) : null, Math.abs(v) >= 100 ? 0 : 2)}`,
  reqpm: (v, step) => `${compact(v, step)}/min`,
  short: (v, step) => compact(v, step),
};

function formatValue(unit, v, step) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  const format = UNITS[unit];
  if (!format) {
    console.warn(`no formatter for unit ${unit}`);
    return compact(v, step);
  }
  return format(v, step);
}

function compact(v, step) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(1)}B`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  if (step) return v.toFixed(decimalsFor(step));
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(a < 1 ? 3 : 1);
}

function formatCell(column, v) {
  if (column.type === "time" && typeof v === "number") {
    return new Date(v * 1000).toISOString().replace("T", " ").slice(0, 19);
  }
  return formatValue(column.unit || "short", v);
}

// ---- links to the call explorer ---------------------------------------------------------

// What a panel counts, as explorer filters: its calls are one click away.
const PANEL_CALLS = {
  error_share: { status: "error" }, error_rate: { status: "error" }, thumbs_down: { feedback: "down" },
  toxicity_rate: { score_name: "toxicity", score_min: "0.5" },
};

function rangeStart(range) {
  // "Fit data" resolves to epoch milliseconds (resolveWindow); the explorer takes ISO times.
  if (range === "fit" && state.window && /^\d+$/.test(state.window.from)) {
    return new Date(Number(state.window.from)).toISOString();
  }
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
  const axes = new Map();
  for (const row of data.rows) {
    for (const n of numeric) {
      const name = s >= 0 ? (numeric.length > 1 ? `${row[s]} ${cols[n].name}` : row[s]) : cols[n].name;
      if (!lines.has(name)) {
        lines.set(name, new Array(xs.length).fill(null));
        units.set(name, cols[n].unit || data.unit);
        axes.set(name, cols[n].unit ? cols[n].axis : data.axis);
      }
      lines.get(name)[at.get(row[t])] = row[n];
    }
  }
  return { xs, labels: [...lines.keys()], ys: [...lines.values()], units: [...units.values()],
    axes: [...axes.values()] };
}

// A value axis' range as Grafana draws it: `min`/`max` are hard (never passed), `soft_max` is
// the least the axis reaches; within those the data's own range, padded to nice steps.
// (uPlot alone draws an all-zero series on [0, 100]: 10 000 % on a percent axis.)
function axisRange(axis) {
  return (u, dataMin, dataMax) => {
    const lo0 = dataMin ?? axis?.min ?? 0;
    const hi0 = dataMax ?? lo0;
    let [lo, hi] = uPlot.rangeNum(lo0, hi0, 0.1, true);
    if (axis?.min !== null && axis?.min !== undefined) lo = axis.min;
    if (hi0 <= lo) hi = axis?.soft_max ?? axis?.max ?? hi;  // flat at the bottom: the soft extent
    if (axis?.soft_max !== null && axis?.soft_max !== undefined) hi = Math.max(hi, axis.soft_max);
    if (axis?.max !== null && axis?.max !== undefined) hi = Math.min(hi, axis.max);
    if (!(hi > lo)) hi = lo + 1;
    return [lo, hi];
  };
}

function tickStep(vals) {
  return vals.length > 1 ? Math.abs(vals[1] - vals[0]) : null;
}

function drawTimeseries(entry, data) {
  const { xs, labels, ys, units, axes: seriesAxes } = toSeries(data);
  const unit = data.unit;
  // A column in another unit (a count beside a rate) gets its own axis on the right.
  const otherAt = units.findIndex((u) => u !== unit);
  const other = otherAt >= 0 ? units[otherAt] : null;
  const sameShape = entry.chart && entry.labels && entry.labels.join("\n") === labels.join("\n");
  // The x axis spans the asked range, so a gap in the data shows as a gap.
  entry.range = [data.from, data.to];
  entry.el.dataset.unit = unit;
  if (sameShape) {
    entry.chart.setData([xs, ...ys]);
    entry.chart.setScale("x", { min: data.from, max: data.to });
    return;
  }
  setMessage(entry, "chart", "");
  const target = entry.body.firstChild;
  entry.labels = labels;
  const axis = { stroke: "#8e8e8e", grid: { stroke: "#2c3037", width: 1 }, ticks: { stroke: "#2c3037" } };
  const ticks = (key, tickUnit) => (u, vals) => {
    const step = tickStep(vals);
    const out = vals.map((v) => formatValue(tickUnit, v, step));
    entry.el.dataset[key] = JSON.stringify(out);
    return out;
  };
  const scales = { x: { time: true, range: () => entry.range }, y: { range: axisRange(data.axis) } };
  if (other) scales.y2 = { range: axisRange(seriesAxes[otherAt]) };
  entry.chart = new uPlot({
    width: Math.max(entry.body.clientWidth, 200),
    height: 190,
    scales,
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
      { ...axis, scale: "y", size: 72, values: ticks("yTicks", unit) },
      ...(other ? [{ ...axis, scale: "y2", side: 1, size: 64, grid: { show: false },
        values: ticks("y2Ticks", other) }] : []),
    ],
    hooks: {
      draw: [(u) => {
        entry.el.dataset.yRange = JSON.stringify([u.scales.y.min, u.scales.y.max]);
        if (u.scales.y2) entry.el.dataset.y2Range = JSON.stringify([u.scales.y2.min, u.scales.y2.max]);
        entry.el.dataset.xRange = JSON.stringify([u.scales.x.min, u.scales.x.max]);
      }],
    },
  }, [xs, ...ys], target);
}

function drawStat(entry, data) {
  entry.el.dataset.unit = data.unit;
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
  state.signedOut = null;
  try {
    await resolveWindow();
  } catch (err) {
    if (generation !== state.generation) return;
    if (err instanceof AuthError) {
      showSignIn(err.message);
      return;
    }
    console.warn("time range:", err);  // the panels still answer, over the last window or an hour
  }
  if (generation !== state.generation) return;
  const q = query();
  updateLinks();
  await Promise.all([
    ...[...state.panels.values()].map((entry) => refreshPanel(entry, q, generation)),
    refreshAlerts(generation),
  ]);
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

// ---- alerts ----------------------------------------------------------------------------

const STATE_LABEL = { Alerting: "FIRING", Error: "ERROR", Pending: "PENDING" };

function since(iso) {
  if (!iso) return "";
  return duration(Math.max(0, (Date.now() - Date.parse(iso)) / 1000));
}

function alertItem(alert) {
  const li = document.createElement("li");
  li.className = `alert ${alert.state.toLowerCase()}`;
  li.dataset.fingerprint = alert.fingerprint;
  li.dataset.state = alert.state;
  li.dataset.app = alert.app_id || "";
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = STATE_LABEL[alert.state] || alert.state;
  const title = document.createElement("strong");
  title.textContent = alert.labels.alertname === "DatasourceError" ? `${alert.labels.rulename}: query failed`
    : alert.labels.alertname;
  const summary = document.createElement("span");
  summary.className = "summary";
  summary.textContent = alert.summary;
  const when = document.createElement("span");
  when.className = "when";
  const start = alert.state === "Pending" ? alert.active_at : alert.fired_at;
  when.textContent = `${alert.state === "Pending" ? "pending" : "since"} ${since(start)}`
    + (alert.acked_by ? ` · acknowledged by ${alert.acked_by}` : "");
  li.append(badge, title, summary, when);
  return li;
}

async function refreshAlerts(generation) {
  const section = document.getElementById("alerts");
  let data;
  try {
    data = await getJSON(`/overview/api/alerts?${query(["app"])}`);
  } catch (err) {
    if (generation !== state.generation) return;
    if (err instanceof AuthError) state.signedOut = err.message;
    section.hidden = false;
    section.dataset.state = "error";
    document.getElementById("alerts-list").replaceChildren();
    document.getElementById("alerts-note").textContent = `alerts: ${err.message || err}`;
    return;
  }
  if (generation !== state.generation) return;
  const list = document.getElementById("alerts-list");
  list.replaceChildren(...data.alerts.map(alertItem));
  const firing = data.alerts.filter((a) => a.state !== "Pending");
  const problems = data.delivery_problems || [];
  document.getElementById("alerts-note").textContent = problems.length
    ? `${problems.length} notification(s) could not be delivered in the last day (latest: ${problems[0].receiver}, `
      + `${problems[0].last_error})` : "";
  section.hidden = !data.available || (!data.alerts.length && !problems.length);
  section.dataset.state = firing.length ? "firing" : data.alerts.length ? "pending" : "ok";
  section.dataset.count = String(data.alerts.length);
  // A panel that shows a firing alert's data says so.
  const panelOf = new Map(state.spec.alert_panels.map((r) => [r.uid, r.panel]));
  const alerting = new Set(firing.map((a) => panelOf.get(a.rule_uid)).filter(Boolean));
  for (const entry of state.panels.values()) entry.el.classList.toggle("alerting", alerting.has(entry.spec.id));
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
      try {
        await resolveWindow();  // the options below are those of the new range
      } catch (err) {
        console.warn("time range:", err);
      }
      if (name === "range" || name === "app") await loadOptions("model", ["app"]);
      if (name !== "environment") await loadOptions("environment", ["app", "model"]);
      refresh();
    });
    window.addEventListener("resize", onResize);
  }
  try {
    await resolveWindow();
  } catch (err) {
    console.warn("time range:", err);
  }
  await loadAllOptions();
  await refresh();
  const wanted = /^#panel=([\w-]+)$/.exec(window.location.hash);
  if (wanted && state.panels.has(wanted[1])) state.panels.get(wanted[1]).el.scrollIntoView();
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
