// twinflow web view: fleet overview → twin page, live over server-sent events (no build step).
"use strict";

const api = {
  token: null,
  async call(method, path, body, headers = {}) {
    const h = { Accept: "application/json", ...headers };
    if (this.token) h.Authorization = "Bearer " + this.token;
    if (body !== undefined) h["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
    return { status: res.status, ok: res.ok, data, headers: res.headers };
  },
  get(path) { return this.call("GET", path); },
};

// ------------------------------------------------------------------ server-sent events with a bearer token
// EventSource cannot send an Authorization header, so the stream is read with fetch; it reconnects with
// Last-Event-ID, which the server resumes from (also after an `overflow` event: the page fell too far behind).
class EventStream {
  constructor(path, onEvent) { this.path = path; this.onEvent = onEvent; this.lastId = null; this.stopped = false; this.ctrl = null; this.run(); }
  stop() { this.stopped = true; if (this.ctrl) this.ctrl.abort(); setLive(false); }
  async run() {
    while (!this.stopped) {
      this.ctrl = new AbortController();
      try {
        const headers = { Authorization: "Bearer " + api.token, Accept: "text/event-stream" };
        if (this.lastId) headers["Last-Event-ID"] = this.lastId;
        const res = await fetch(this.path, { headers, signal: this.ctrl.signal });
        if (!res.ok) throw new Error("events: HTTP " + res.status);
        setLive(true);
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            this.dispatch(buf.slice(0, cut));
            buf = buf.slice(cut + 2);
          }
        }
      } catch (e) { if (this.stopped) return; }
      setLive(false);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  dispatch(block) {
    let id = null, type = "message", data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "id") id = val; else if (field === "event") type = val; else if (field === "data") data.push(val);
    }
    if (id) this.lastId = id;
    if (!data.length) return;
    if (type === "overflow") { console.warn("event stream: the server says we fell behind; resuming from", this.lastId); return; }
    try { this.onEvent(type, JSON.parse(data.join("\n"))); } catch (e) { console.error(e); }
  }
}

function setLive(on) { const el = document.getElementById("live"); el.className = "live " + (on ? "on" : "off"); }

// ------------------------------------------------------------------ helpers
const $ = (sel, root = document) => root.querySelector(sel);
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
const badge = (text, cls) => el("span", { class: "badge " + (cls || text) }, text);
const fmt = (v, d = 3) => (v === null || v === undefined ? "–" : typeof v === "number" ? Number(v.toPrecision(d + 2)).toString() : String(v));
const time = (t) => {  // the time of day; with the date when it is not today (an output of yesterday, offline since Monday)
  if (!t) return "–";
  const d = new Date(t);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
};
const hours = (h) => (h < 48 ? `${h.toFixed(1)} h` : `${(h / 24).toFixed(1)} d`);
// a twin predicted to fail (GET /failures): when, and how likely; red within a day, orange later
function failureBadge(p) {
  if (!p) return "–";
  const left = (Date.parse(p.predicted_failure_at) - Date.now()) / 3600e3;
  return el("span", { title: `predicted ${new Date(p.predicted_failure_at).toLocaleString()} (model ${p.model || "built-in"})` },
    badge(left > 0 ? `in ${hours(left)}` : "overdue", left <= 24 ? "critical" : "major"), ` p ${fmt(p.failure_probability, 2)}`);
}
const BUILTIN = "twinflow";  // the built-in models' outputs (`model` of GET /twins/{id}/models)
// a twin page's address: #/twins/ID, or #/twins/ID?model=NAME for a model of your own's outputs
const twinHash = (twinId, model) => "#/twins/" + encodeURIComponent(twinId) + (model && model !== BUILTIN ? "?model=" + encodeURIComponent(model) : "");
const CHART = { displaylogo: false, responsive: true };
const LAYOUT = { margin: { l: 56, r: 16, t: 30, b: 40 }, xaxis: { type: "date" }, legend: { orientation: "h", y: -0.25 }, font: { size: 11 } };
let stream = null;
let timers = [];
let pageGen = 0; // bumped on every navigation: late answers for a page left behind are dropped

function plot(id, traces, layout) {
  const d = document.getElementById(id);
  if (!d) return;
  const m = d.querySelector(":scope > p.muted");
  if (m) m.remove();
  Plotly.react(d, traces, layout, CHART);
}
function noData(id, text) {
  const d = document.getElementById(id);
  if (!d) return;
  if (d.data) Plotly.purge(d);
  d.replaceChildren(el("p", { class: "muted" }, text));
}

function cleanup() { pageGen++; if (stream) stream.stop(); stream = null; timers.forEach(clearInterval); timers = []; }

// ------------------------------------------------------------------ fleet
async function fleetPage(main) {
  main.replaceChildren(el("h1", {}, "Fleet"), el("div", { class: "card", id: "fleet" }, el("p", { class: "muted" }, "loading…")));
  const gen = pageGen;
  async function load() {
    const [r, f] = await Promise.all([api.get("/api/v1/twins?limit=500"), api.get("/api/v1/failures?limit=500")]);
    if (gen !== pageGen) return;
    if (!r.ok) return showProblem($("#fleet"), r);
    const failing = new Map(f.ok ? f.data.items.map((p) => [p.twin_id, p]) : []);  // soon (24 h) or likely
    const rows = r.data.items.map((t) => el("tr", { class: "twin-row", "data-twin": t.twin_id, onclick: () => (location.hash = twinHash(t.twin_id)) },
      el("td", {}, el("a", { href: twinHash(t.twin_id) }, t.twin_id)),
      el("td", {}, badge(t.status)), el("td", {}, t.mode),
      el("td", {}, t.health === null || t.health === undefined ? "–" : fmt(t.health, 2)),
      el("td", {}, t.anomaly ? `${fmt(t.anomaly.score)} / ${fmt(t.anomaly.threshold)}` : "–"),
      el("td", { "data-testid": "open-alerts" }, t.open_alerts ? [String(t.open_alerts), " ", badge(t.worst_severity)] : "0"),
      el("td", { "data-testid": "predicted-failure" }, failureBadge(failing.get(t.twin_id))),
      el("td", {}, String(t.conflicts)), el("td", {}, time(t.event_time))));
    $("#fleet").replaceChildren(el("table", { id: "fleet-table" },
      el("thead", {}, el("tr", {}, ["twin", "status", "mode", "health", "anomaly score / threshold", "open alerts", "predicted failure", "conflicts", "updated"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)), rows.length ? "" : el("p", { class: "muted" }, "no twins yet"));
  }
  await load();
  let pending = false;
  stream = new EventStream("/api/v1/events?types=state,alert", () => {
    if (pending) return;
    pending = true;
    setTimeout(() => { pending = false; load(); }, 1000);
  });
}

// ------------------------------------------------------------------ twin page
async function twinPage(main, twinId, model) {
  const enc = encodeURIComponent(twinId);
  main.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← fleet")),
    el("h1", {}, twinId, " ", el("span", { id: "status" })),
    el("div", { class: "card kv", id: "summary" }),
    el("div", { class: "card row", id: "model-picker", hidden: "" }),
    el("div", { class: "card" }, el("h2", {}, "Desired vs reported"), el("div", { id: "params" }), el("form", { id: "desired-form" }), el("p", { id: "desired-result" })),
    el("div", { class: "card" }, el("h2", {}, "Live values (last 10 minutes)"), el("div", { id: "live-chart", class: "grid small" })),
    el("div", { class: "card" }, el("h2", {}, "Anomaly score and health"), el("div", { id: "score-now", class: "kv" }), el("div", { id: "score-chart", class: "chart" })),
    el("div", { class: "card" }, el("h2", {}, "Remaining useful life and failure probability (last 24 hours)"), el("div", { id: "failure-now", class: "kv" }), el("div", { id: "failure-chart", class: "chart" })),
    el("div", { class: "card" }, el("h2", {}, "Forecasts (prediction interval)"), el("div", { id: "forecasts", class: "grid" })),
    el("div", { class: "card" }, el("h2", {}, "Alerts ", el("span", { id: "alerts-model", class: "muted", "data-testid": "alerts-model" })),
      el("div", { id: "alerts" }),
      el("p", {}, el("a", { href: deliveriesHash({ twin: twinId }), "data-testid": "twin-deliveries" }, "webhook deliveries of this twin's alerts"))),
  );
  const st = { doc: null, etag: null, live: {}, model: model || BUILTIN };
  const gen = pageGen;
  const get = async (path) => { const r = await api.get(path); return gen === pageGen ? r : { ok: false, gone: true }; };
  // a read of the picked model's outputs (`sep`: "?" or "&"); an answer for a model picked before is dropped
  const getOutputs = async (path, sep) => {
    const m = st.model;
    const r = await get(m === BUILTIN ? path : `${path}${sep}model=${encodeURIComponent(m)}`);
    return m === st.model ? r : { ok: false, gone: true };
  };

  async function loadState() {
    const r = await get(`/api/v1/twins/${enc}`);
    if (r.gone) return;
    if (!r.ok) return showProblem($("#summary"), r);
    st.etag = r.headers.get("ETag");
    renderState(r.data);
  }
  // State events can come many times a second: the data is taken at once, the page is painted at most
  // twice a second (table cells updated in place) and the charts redrawn at most once a second.
  function renderState(doc) {
    st.doc = doc;
    for (const [n, v] of Object.entries(doc.reported || {})) {
      const s = (st.live[n] = st.live[n] || { x: [], y: [] });
      if (!s.x.length || s.x[s.x.length - 1] !== v.ts) { s.x.push(v.ts); s.y.push(v.value); }
    }
    if (!st.paintTimer) st.paintTimer = setTimeout(paint, st.painted ? 500 : 0);
  }
  function paint() {
    st.paintTimer = null;
    st.painted = true;
    const doc = st.doc;
    if (gen !== pageGen || !$("#summary")) return;
    const conn = doc.connectivity;  // null: a version stored before migration 0145
    const lost = (conn && conn.unreachable) || {};  // sensors whose last status said no communication
    const nLost = Object.keys(lost).length;
    $("#status").replaceChildren(badge(doc.status), " ", badge(doc.mode, "mode"),
      ...(conn && conn.state !== "online" ? [" ", el("span", { "data-testid": "connectivity", title: conn.reason || "" },
        badge(`device ${conn.state}`, conn.state), conn.since ? ` since ${time(conn.since)}` : "", conn.reason ? ` (${conn.reason})` : "")] : []),
      ...(conn && conn.state === "online" && nLost ? [" ", el("span", { "data-testid": "unreachable-count" },
        badge(`${nLost} sensor${nLost > 1 ? "s" : ""} unreachable`, "offline"))] : []));
    $("#summary").replaceChildren(
      el("div", {}, "state version", el("b", { "data-testid": "version" }, String(doc.version))),
      el("div", {}, "desired version (ETag)", el("b", { "data-testid": "desired-version" }, String(doc.desired_version ?? doc.version))),
      el("div", {}, "consistency", el("b", {}, fmt(doc.consistency_score, 2))),
      el("div", {}, "sync latency", el("b", {}, doc.sync_latency_ms === null ? "–" : fmt(doc.sync_latency_ms, 2) + " ms")),
      el("div", {}, "updated", el("b", {}, time(doc.event_time))));
    const names = [...new Set([...Object.keys(doc.reported || {}), ...Object.keys(doc.desired || {})])].sort();
    const cells = (n) => {
      const rep = doc.reported[n], des = doc.desired[n], cmd = (doc.commands || {})[n];
      const synced = !(doc.conflicts || []).includes(n);
      const value = rep ? fmt(rep.value) : "–";  // an unreachable sensor: its last value, marked
      return [n, n in lost ? el("span", { title: `no communication since ${time(lost[n])}` }, value, " ",
        badge("unreachable", "offline")) : value, des ? fmt(des.value) : "–", doc.delta && n in doc.delta ? fmt(doc.delta[n]) : "–",
        synced ? badge("yes", "ok") : badge("no", "desynced"), cmd ? `${cmd.status} (attempt ${cmd.attempt})` : ""];
    };
    const ids = [null, "reported", "desired", null, "in-sync", null];
    const table = $("#params-table");
    if (table && table.dataset.names === names.join(",")) {
      for (const n of names) {  // same parameters: update the cells in place
        const tds = table.querySelector(`tr[data-param="${CSS.escape(n)}"]`).children;
        cells(n).forEach((c, i) => { if (typeof c === "string") { if (tds[i].textContent !== c) tds[i].textContent = c; } else if (tds[i].textContent !== c.textContent) tds[i].replaceChildren(c); });
      }
    } else {
      $("#params").replaceChildren(el("table", { id: "params-table", "data-names": names.join(",") },
        el("thead", {}, el("tr", {}, ["parameter", "reported", "desired", "delta", "in sync", "command"].map((h) => el("th", {}, h)))),
        el("tbody", {}, names.map((n) => el("tr", { "data-param": n }, cells(n).map((c, i) => el("td", ids[i] ? { "data-testid": ids[i] } : {}, c)))))));
    }
    if (!$("#desired-form").childElementCount) buildForm(names);
    const now = Date.now();
    if (!st.drawnAt || now - st.drawnAt >= 1000) { st.drawnAt = now; drawLive(); }
  }
  function buildForm(names) {
    const f = $("#desired-form");
    const sel = el("select", { name: "param", "data-testid": "param" }, names.map((n) => el("option", { value: n }, n)));
    const val = el("input", { name: "value", type: "number", step: "any", required: "", "data-testid": "value" });
    const why = el("input", { name: "reason", placeholder: "reason (audit trail)", "data-testid": "reason" });
    f.replaceChildren(el("div", { class: "row" }, "set", sel, "to", val, why, el("button", { class: "primary", type: "submit" }, "Send (If-Match)")));
    f.onsubmit = async (ev) => {
      ev.preventDefault();
      const out = $("#desired-result");
      out.className = "muted"; out.textContent = "sending…";
      const r = await api.call("PATCH", `/api/v1/twins/${enc}/desired`, { values: { [sel.value]: Number(val.value) }, reason: why.value }, { "If-Match": st.etag || "*" });
      if (r.status === 202) {
        out.className = "okmsg";
        out.removeAttribute("data-testid");
        out.textContent = r.data.status === "pending" ? `accepted (${r.data.tracking_id}); waiting for the gate's verdict…`
          : `accepted (${r.data.tracking_id}): desired version ${r.data.desired_version}; waiting for the device…`;
        st.pendingId = r.data.status === "pending" ? r.data.tracking_id : null;
        st.waiting = { param: sel.value, value: Number(val.value) };
      }
      else {
        out.className = "error"; out.setAttribute("data-testid", "refused");
        if (r.status === 403 && r.data.reason) {  // the policy's verdict: say why, in its own words
          out.replaceChildren(`${r.status} denied by the policy: `, el("b", { "data-testid": "deny-reason" }, r.data.reason),
            ` (${(r.data.detail || "").replace(/^denied: \S+ ?/, "")}); tracking id ${r.data.tracking_id || "–"}`);
        } else out.textContent = `${r.status} ${r.data.title || ""}: ${r.data.detail || ""}`;
        if (r.status === 412) loadState();
      }
    };
  }
  function drawLive() {  // one chart per sensor: each has its own scale and unit
    const names = Object.keys(st.live).sort();
    if (!names.length) return noData("live-chart", "no readings in the last 10 minutes");
    const box = $("#live-chart");
    if (!box) return;
    const m = box.querySelector(":scope > p.muted");
    if (m) m.remove();
    const now = Date.now();
    const start = Math.max(now - 10 * 60e3, Math.min(...names.map((n) => Date.parse(st.live[n].x[0]))));
    const range = [new Date(start).toISOString(), new Date(now).toISOString()];
    for (const n of names) {
      const id = "live-" + n.replace(/[^A-Za-z0-9_-]/g, "_");
      if (!document.getElementById(id)) box.append(el("div", { id, class: "chart small", "data-testid": "live-sensor" }));
      const s = st.live[n];
      // a value that rarely changes is reported rarely: draw it as a step up to now on the shared window
      if (s.x.length > 6000) { s.x.splice(0, s.x.length - 3000); s.y.splice(0, s.y.length - 3000); }
      const x = [...s.x.slice(-3000), range[1]], y = [...s.y.slice(-3000), s.y[s.y.length - 1]];
      plot(id, [{ name: n, x, y, mode: "lines", type: "scatter", line: { width: 1.5, shape: "hv" } }],
        { ...LAYOUT, margin: { l: 56, r: 12, t: 26, b: 32 }, showlegend: false, title: { text: n, font: { size: 12 } },
          xaxis: { type: "date", range }, yaxis: { automargin: true } });
    }
  }
  async function loadTelemetry() {
    const r = await get(`/api/v1/twins/${enc}/telemetry?from=${new Date(Date.now() - 10 * 60e3).toISOString()}`);
    if (!r.ok) return;
    for (const [n, s] of Object.entries(r.data.series)) st.live[n] = { x: s.ts, y: s.value };
    drawLive();
  }
  async function loadScores() {
    const r = await getOutputs(`/api/v1/twins/${enc}/scores?from=${new Date(Date.now() - 15 * 60e3).toISOString()}`, "&");
    if (!r.ok) return;
    const d = r.data, h = d.health_thresholds;
    if (!d.ts.length) {
      $("#score-now").replaceChildren();
      return noData("score-chart", "no anomaly scores yet (models warming up?)");
    }
    const i = d.ts.length - 1;
    const health = [...d.health].reverse().find((v) => v !== null);
    const healthState = health === undefined ? null : health < h.critical_below ? "critical" : health < h.major_below ? "major"
      : health < h.open_below ? "minor" : "ok";
    $("#score-now").replaceChildren(
      el("div", {}, "anomaly score", el("b", { "data-testid": "score" }, fmt(d.score[i], 2)),
        " threshold ", el("span", { "data-testid": "score-threshold" }, fmt(d.threshold[i], 2)), " ",
        d.score[i] >= d.threshold[i] ? badge("above", "critical") : badge("below", "ok")),
      el("div", {}, "health index", el("b", { "data-testid": "health" }, health === undefined ? "not learned yet" : fmt(health, 2)),
        "condition alarm below ", el("span", { "data-testid": "health-open" }, fmt(h.open_below)),
        ", clears above ", el("span", { "data-testid": "health-clear" }, fmt(h.clear_above)),
        " (major below ", fmt(h.major_below), ", critical below ", fmt(h.critical_below), ") ",
        healthState ? badge(healthState) : ""));
    const edge = [d.ts[0], d.ts[i]];
    const traces = [
      { name: "anomaly score", x: d.ts, y: d.score, mode: "lines", line: { color: "#d62728" } },
      { name: "score threshold", x: d.ts, y: d.threshold, mode: "lines", line: { color: "#555", dash: "dash" } },
    ];
    if (health !== undefined) {
      traces.push({ name: "health index", x: d.ts, y: d.health, mode: "lines", line: { color: "#2ca02c" } });
      traces.push({ name: `health alarm (below ${fmt(h.open_below)})`, x: edge, y: [h.open_below, h.open_below], mode: "lines", line: { color: "#2ca02c", dash: "dot" } });
    }
    plot("score-chart", traces, { ...LAYOUT, yaxis: { title: { text: "score / health (0…1)" }, range: [0, Math.max(1.05, d.score.reduce((m, v) => (v > m ? v : m), 0))] } });
  }
  async function loadForecasts() {
    const r = await getOutputs(`/api/v1/twins/${enc}/forecasts`, "?");
    if (!r.ok) return;
    const box = $("#forecasts");
    const entries = Object.entries(r.data);
    if (!entries.length) return box.replaceChildren(el("p", { class: "muted" }, "no forecasts yet"));
    box.replaceChildren(...entries.map(([sensor]) => el("div", { id: "fc-" + sensor, class: "chart", "data-testid": "forecast-chart" })));
    for (const [sensor, f] of entries) {
      const mode = f.target_ts.length <= 20 ? "lines+markers" : "lines";
      const traces = [
        { name: "upper", x: f.target_ts, y: f.upper, mode: "lines", line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
        { name: "interval", x: f.target_ts, y: f.lower, mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(31,119,180,0.2)" },
        { name: "forecast", x: f.target_ts, y: f.predicted, mode, line: { color: "#1f77b4" } },
      ];
      const seen = st.live[sensor];  // the recent readings before the forecast, for context
      if (seen && seen.x.length) {
        const from = Date.parse(f.made_at) - Math.max(60e3, 3 * (Date.parse(f.target_ts[f.target_ts.length - 1]) - Date.parse(f.made_at)));
        const keep = seen.x.map((t, i) => [t, i]).filter(([t]) => Date.parse(t) >= from);
        traces.push({ name: "observed", x: keep.map(([t]) => t), y: keep.map(([, i]) => seen.y[i]), mode: "lines", line: { color: "#555", width: 1 } });
      }
      if (f.limit !== null) traces.push({ name: "limit", x: [f.target_ts[0], f.target_ts[f.target_ts.length - 1]], y: [f.limit, f.limit], mode: "lines", line: { color: "#d62728", dash: "dot" } });
      plot("fc-" + sensor, traces, { ...LAYOUT, title: { text: `${sensor} (made ${time(f.made_at)})`, font: { size: 12 } } });
    }
  }
  async function loadFailures() {
    const r = await getOutputs(`/api/v1/twins/${enc}/failures`, "?");
    if (!r.ok) return;
    const d = r.data;
    if (!d.ts.length) {
      $("#failure-now").replaceChildren();
      return noData("failure-chart", "no failure predictions in the last 24 hours");
    }
    const i = d.ts.length - 1;
    const rulH = d.rul_s.map((s) => s / 3600);
    const at = new Date(Date.parse(d.ts[i]) + d.rul_s[i] * 1000);
    $("#failure-now").replaceChildren(
      el("div", {}, "remaining useful life", el("b", { "data-testid": "rul" }, hours(rulH[i])),
        "predicted failure ", el("span", { "data-testid": "failure-at" }, at.toLocaleString())),
      el("div", {}, "failure probability", el("b", { "data-testid": "failure-probability" }, fmt(d.failure_probability[i], 2)),
        d.horizon_s[i] ? `within ${hours(d.horizon_s[i] / 3600)}` : ""),
      el("div", {}, "predicted", el("b", {}, time(d.ts[i])), "model ", el("span", { "data-testid": "failure-model" }, d.model[i] || "built-in")));
    const mode = d.ts.length <= 20 ? "lines+markers" : "lines";
    plot("failure-chart", [
      { name: "remaining useful life (h)", x: d.ts, y: rulH, mode, line: { color: "#1f77b4" } },
      { name: "failure probability", x: d.ts, y: d.failure_probability, mode, yaxis: "y2", line: { color: "#d62728" } },
    ], { ...LAYOUT, margin: { ...LAYOUT.margin, r: 56 }, yaxis: { title: { text: "RUL (h)" }, rangemode: "tozero" },
      yaxis2: { title: { text: "probability" }, overlaying: "y", side: "right", range: [0, 1.05], dtick: 0.25, showgrid: false } });
  }
  // The models with outputs for the twin (GET /twins/{id}/models): a picker when there is more than one (or
  // the page's address names a model of your own); the scores, forecasts and failure cards show the one picked.
  async function loadModels() {
    const r = await get(`/api/v1/twins/${enc}/models`);
    if (!r.ok) return;
    const items = r.data.items;
    if (!items.some((m) => m.model === st.model)) items.push({ model: st.model, last_output: null });
    const box = $("#model-picker");
    if (items.length < 2) { box.hidden = true; return; }
    const label = (m) => (m.model === BUILTIN ? "built-in models" : m.model) + (m.last_output ? ` (last output ${time(m.last_output)})` : " (no outputs in the last 24 hours)");
    const old = $("#model-select");
    if (old && old.dataset.models === items.map((m) => m.model).join(",")) {  // same models: refresh the labels only
      items.forEach((m, i) => { old.options[i].textContent = label(m); });
      return;
    }
    const sel = el("select", { id: "model-select", "data-testid": "model", "data-models": items.map((m) => m.model).join(",") },
      items.map((m) => el("option", { value: m.model }, label(m))));
    sel.value = st.model;
    sel.onchange = () => pickModel(sel.value);
    box.replaceChildren(el("b", {}, "model outputs"), sel, el("span", { class: "muted" }, "anomaly scores, failure predictions and forecasts of this model"));
    box.hidden = false;
  }
  function pickModel(m) {
    st.model = m;
    history.replaceState(null, "", twinHash(twinId, m));  // a link to the page shows the same model
    $("#score-now").replaceChildren(); $("#failure-now").replaceChildren();
    noData("score-chart", "loading…"); noData("failure-chart", "loading…");
    loadScores(); loadFailures(); loadForecasts(); loadAlerts();
  }
  // the twin's active alerts: every one, or with a model of your own picked those it raised (`?model=`)
  async function loadAlerts() {
    const r = await getOutputs(`/api/v1/alerts?state=active&twin=${enc}`, "&");
    if (r.gone) return;
    const scope = st.model === BUILTIN ? "" : `raised by ${st.model}`;
    $("#alerts-model").textContent = scope ? `(${scope})` : "(all models)";
    if (!r.ok) return showProblem($("#alerts"), r);
    const items = r.data.items;
    $("#alerts").replaceChildren(items.length ? el("table", { id: "alerts-table" },
      el("thead", {}, el("tr", {}, ["kind", "severity", "ISA-18.2 state", "opened", "summary", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, items.map((a) => el("tr", { "data-alert": a.alert_id },
        el("td", {}, a.kind, a.chattering ? " (chattering)" : "", a.standing ? " (standing)" : ""),
        el("td", {}, badge(a.severity)),
        el("td", { "data-testid": "isa-state" }, badge(a.isa_state), a.shelved_until ? ` until ${time(a.shelved_until)}` : "", a.suppressed_by ? ` by ${a.suppressed_by}` : ""),
        el("td", {}, time(a.opened_at)), el("td", {}, a.summary),
        el("td", { class: "row" },
          a.state === "open" && a.condition === "active" && !a.shelved_until ? el("button", { "data-testid": "ack", onclick: () => alertAction(a.alert_id, "ack") }, "Acknowledge") : "",
          !a.shelved_until ? el("button", { "data-testid": "shelve", onclick: () => shelve(a.alert_id) }, "Shelve…") : el("button", { "data-testid": "unshelve", onclick: () => alertAction(a.alert_id, "unshelve") }, "Unshelve"),
          el("a", { href: deliveriesHash({ alert: a.alert_id }), "data-testid": "alert-deliveries" }, "deliveries"))))))
      : el("p", { class: "muted" }, scope ? `no active alerts ${scope}` : "no active alerts"));
  }
  async function alertAction(id, action, body) {
    const r = await api.call("POST", `/api/v1/alerts/${encodeURIComponent(id)}/${action}`, body || {});
    if (!r.ok) alert(`${r.status}: ${r.data.detail}`);
    loadAlerts();
  }
  function shelve(id) {
    const minutes = prompt("Shelve for how many minutes?", "30");
    if (!minutes) return;
    const reason = prompt("Reason (kept with the alarm)", "");
    if (!reason) return;
    alertAction(id, "shelve", { duration_s: Number(minutes) * 60, reason });
  }

  await Promise.all([loadState(), loadTelemetry(), loadScores(), loadFailures(), loadForecasts(), loadAlerts(), loadModels()]);
  stream = new EventStream(`/api/v1/twins/${enc}/events`, (type, data) => {
    if (type === "state") {
      const desiredVersion = data.desired_version ?? data.version;  // the server's ETag rule (state_cache.py)
      st.etag = `"${desiredVersion}"`;
      renderState({ ...data, desired_version: desiredVersion });
      const w = st.waiting, want = w && data.desired[w.param];
      if (want && want.value === w.value && !(data.conflicts || []).includes(w.param) && data.status === "synchronized") {
        const out = $("#desired-result");
        out.className = "okmsg"; out.textContent = `${st.waiting.param} = ${st.waiting.value}: synchronized`;
        out.setAttribute("data-testid", "synchronized");
        st.waiting = null;
      }
    } else if (type === "alert") loadAlerts();
    else if (type === "desired" && st.pendingId && data.request_id === st.pendingId) {
      // the gate's verdict on a change that was still pending when the PATCH answered
      const out = $("#desired-result");
      st.pendingId = null;
      if (data.decision === "applied") { out.className = "okmsg"; out.textContent = `applied by the gate (desired version ${data.desired_version}); waiting for the device…`; }
      else { out.className = "error"; out.textContent = `denied: ${data.reason} ${data.detail || ""}`; st.waiting = null; }
    }
  });
  timers.push(setInterval(loadScores, 5000), setInterval(loadForecasts, 15000), setInterval(loadFailures, 15000), setInterval(loadModels, 30000));
}

// a refusal as the server gave it (an RFC 9457 problem): its status, title and detail
const problemText = (r) => `${r.status} ${(r.data && r.data.title) || ""}: ${(r.data && r.data.detail) || ""}`;
function showProblem(box, r) {
  box.replaceChildren(el("p", { class: "error" }, problemText(r)));
}

// ------------------------------------------------------------------ webhook deliveries (the alerts' outbox)
// #/deliveries?state=failed&twin=ID&alert=ID&offset=N: GET /alerts/deliveries; queue failed ones again with the
// page's token (POST /alerts/{id}/redeliver, POST /alerts/deliveries/redeliver); the server decides, the page
// shows its answer (the message, or the problem: 401, 403, 409 …).
const DELIVERY_STATES = ["all", "failed", "pending", "delivered"];
const DELIVERIES_PAGE = 50;
function deliveriesHash(q) {
  const p = new URLSearchParams();
  for (const k of ["state", "twin", "alert", "offset"]) if (q[k] && !(k === "state" && q[k] === "all") && q[k] !== "0") p.set(k, q[k]);
  const t = p.toString();
  return "#/deliveries" + (t ? "?" + t : "");
}

async function deliveriesPage(main, q) {
  const state = DELIVERY_STATES.includes(q.state) ? q.state : "all";
  const offset = Math.max(0, parseInt(q.offset, 10) || 0);
  const filters = { state, twin: q.twin || null, alert: q.alert || null };
  const go = (change) => (location.hash = deliveriesHash({ ...filters, offset: 0, ...change }));
  main.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← fleet")),
    el("h1", {}, "Webhook deliveries"),
    el("p", { class: "muted" }, "Every alert version is POSTed to the webhook (alerts.webhook_url) through an outbox: a pending one is tried "
      + "again, a failed one waits until someone queues it again (after fixing the receiver or the URL)."),
    el("div", { class: "card row", id: "deliveries-filter" }),
    el("p", { id: "deliveries-result" }),
    el("div", { class: "card" }, el("p", { id: "deliveries-error", class: "error", hidden: "" }),
      el("div", { id: "deliveries" }, el("p", { class: "muted" }, "loading…"))));
  const gen = pageGen;
  let shown = null;  // the last answer drawn: an unchanged one is not drawn again
  async function load() {
    const p = new URLSearchParams({ state, limit: DELIVERIES_PAGE, offset });
    if (filters.twin) p.set("twin", filters.twin);
    if (filters.alert) p.set("alert", filters.alert);
    const r = await api.get("/api/v1/alerts/deliveries?" + p);
    if (gen !== pageGen) return;
    const err = $("#deliveries-error");  // a refused read: said above the last list read (kept, with its buttons)
    if (!r.ok) { err.textContent = problemText(r); err.hidden = false; return; }
    err.hidden = true;
    const text = JSON.stringify(r.data);
    if (text === shown) return;
    shown = text;
    drawFilter(r.data);
    drawTable(r.data);
  }
  function drawFilter(d) {
    const sel = el("select", { id: "delivery-state", "data-testid": "delivery-state" },
      DELIVERY_STATES.map((n) => el("option", { value: n }, n)));
    sel.value = state;
    sel.onchange = () => go({ state: sel.value });
    const chip = (k, label) => (filters[k] ? [el("span", { "data-testid": "filter-" + k }, `${label} ${filters[k]} `,
      el("a", { href: deliveriesHash({ ...filters, [k]: null }), title: "show every " + label + "'s" }, "✕"))] : []);
    $("#deliveries-filter").replaceChildren(el("b", {}, "status"), sel, ...chip("twin", "twin"), ...chip("alert", "alert"),
      el("button", { class: "primary", "data-testid": "redeliver-all", title: "POST /api/v1/alerts/deliveries/redeliver: every failed delivery in the outbox, of every twin",
        onclick: () => redeliver("/api/v1/alerts/deliveries/redeliver") }, "Redeliver every failed delivery"),
      el("span", { class: "muted", "data-testid": "outbox-counts" }, `in the outbox: ${d.counts.failed} failed, ${d.counts.pending} pending, ${d.counts.delivered} delivered`));
  }
  function drawTable(d) {
    const rows = d.items.map((x) => el("tr", { "data-delivery": `${x.alert_id}:${x.version}`, "data-alert": x.alert_id },
      el("td", {}, el("a", { href: deliveriesHash({ alert: x.alert_id }) }, x.alert_id), el("br"), el("a", { href: twinHash(x.twin_id), class: "muted" }, x.twin_id)),
      el("td", {}, `v${x.version}`),
      el("td", { "data-testid": "delivery-state" }, badge(x.state, "delivery-" + x.state)),
      el("td", { "data-testid": "attempts" }, String(x.attempts)),
      el("td", { "data-testid": "http-status" }, x.http_status === null ? "–" : String(x.http_status)),
      el("td", { "data-testid": "last-error" }, x.last_error || "–"),
      el("td", {}, time(x.created_at)),
      el("td", {}, x.state === "pending" ? ["next ", time(x.next_attempt_at), x.last_attempt_at ? [el("br"), "last ", time(x.last_attempt_at)] : ""]
        : [x.state, " ", time(x.settled_at)]),
      el("td", { "data-testid": "redelivered-by" }, x.redelivered_by ? [x.redelivered_by, el("br"), time(x.redelivered_at)] : "–"),
      el("td", {}, x.state === "failed" ? el("button", { "data-testid": "redeliver", title: `POST /api/v1/alerts/${x.alert_id}/redeliver: every failed version of this alert`,
        onclick: () => redeliver(`/api/v1/alerts/${encodeURIComponent(x.alert_id)}/redeliver`, {}) }, "Redeliver alert") : "")));
    const last = Math.min(offset + d.items.length, d.total);
    $("#deliveries").replaceChildren(
      rows.length ? el("table", { id: "deliveries-table" },
        el("thead", {}, el("tr", {}, ["alert / twin", "version", "status", "attempts", "webhook answer", "last error", "queued", "tried / settled", "queued again by", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)) : el("p", { class: "muted" }, "no deliveries" + (state === "all" ? "" : ` ${state}`)),
      el("p", { class: "row", "data-testid": "deliveries-page" }, d.total ? `${offset + 1}–${last} of ${d.total}` : "",
        offset > 0 ? el("a", { href: deliveriesHash({ ...filters, offset: String(Math.max(0, offset - DELIVERIES_PAGE)) }) }, "← newer") : "",
        last < d.total ? el("a", { href: deliveriesHash({ ...filters, offset: String(offset + DELIVERIES_PAGE) }) }, "older →") : ""));
  }
  async function redeliver(path, body) {
    const out = $("#deliveries-result");
    out.className = "muted"; out.removeAttribute("data-testid"); out.textContent = "queueing…";
    const r = await api.call("POST", path, body);
    if (gen !== pageGen) return;
    if (r.ok) { out.className = "okmsg"; out.setAttribute("data-testid", "queued"); out.textContent = r.data.message; }
    else { out.className = "error"; out.setAttribute("data-testid", "refused"); out.textContent = problemText(r); }
    load();
  }
  await load();
  timers.push(setInterval(load, 3000));  // attempts and settlements are not events: the outbox is read again
  let pending = false;
  stream = new EventStream("/api/v1/events?types=alert", () => {  // a new alert version: a new row
    if (pending) return;
    pending = true;
    setTimeout(() => { pending = false; load(); }, 1000);
  });
}

// ------------------------------------------------------------------ routing and sign-in
async function route() {
  cleanup();
  const main = $("#main");
  const d = location.hash.match(/^#\/deliveries(?:\?(.*))?$/);
  if (d) return deliveriesPage(main, Object.fromEntries(new URLSearchParams(d[1] || "")));
  const m = location.hash.match(/^#\/twins\/([^?]+)(?:\?model=(.*))?$/);
  if (m) await twinPage(main, decodeURIComponent(m[1]), m[2] ? decodeURIComponent(m[2]) : null); else await fleetPage(main);
}

async function signIn() {
  const fromHash = location.hash.match(/[#&]token=([^&]+)/);
  if (fromHash) {  // `make demo` prints a URL with the token in the fragment (never sent to the server)
    sessionStorage.setItem("twinflow.token", decodeURIComponent(fromHash[1]));
    history.replaceState(null, "", location.pathname + "#/");
  }
  api.token = sessionStorage.getItem("twinflow.token");
  const me = api.token ? await api.get("/api/v1/me") : { ok: false };
  if (me.ok) { $("#who").textContent = me.data.subject; return true; }
  const form = $("#login").content.cloneNode(true);
  $("#main").replaceChildren(form);
  $("#login-form").onsubmit = async (ev) => {
    ev.preventDefault();
    api.token = $("#token-input").value.trim();
    const r = await api.get("/api/v1/me");
    if (!r.ok) { $("#login-error").textContent = r.data.detail; return; }
    sessionStorage.setItem("twinflow.token", api.token);
    $("#who").textContent = r.data.subject;
    route();
  };
  return false;
}

window.addEventListener("hashchange", () => { if (api.token) route(); });
signIn().then((ok) => { if (ok) route(); });
