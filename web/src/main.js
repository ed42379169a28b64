// sisock dashboard: node/field picker, panels on one time axis, live tail.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { ApiError, dataUrl, getFrame, getJSON, openLive, sendJSON } from "./api.js";
import { color, gapOf, joinTables, keyOf, makeOptions, seriesTable } from "./chart.js";
import { operatorProbe, startOperator } from "./operator.js";
import { FieldQueue, pickerModel } from "./picker.js";
import { PRESETS, parseView, viewQuery } from "./view.js";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v; // through the DOM: the page's CSP allows no inline style attributes
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};

const S = {
  view: parseView(location.search),
  nodes: [],
  fields: {}, // node -> {field: info}
  open: new Set(), // picker: nodes the user expanded
  fieldsFailed: new Map(), // node -> when its field list last failed to load
  closed: new Set(), // picker: nodes the user collapsed
  panels: [], // {fields, info, cats, raw, u, box, stride, gen}
  active: 0,
  range: [0, 1],
  pending: 0,
  live: null, // {es, nodes: Set}: the page's one live stream
  liveSeen: new Set(), // nodes whose live topic delivered samples
  down: new Set(), // nodes the hub does not list (or removed)
  // nodes whose samples during a router outage the panels lack: their first
  // live sample after it (the node is back) re-queries the view
  stale: new Set(),
  nodesLoaded: false,
  dragFrom: null, // the uPlot a drag started in (synced panels see its selection too)
  errors: new Map(),
};

// What tests and the benchmark read.
const probe = {
  requests: [], // {url, node, fields, min_stride, method, start, end, at}
  paints: [], // {panel, at, reason}
  live: [], // {node, t, drawnAt}
  picker: null, // {nodes, matched, hidden, waiting, at}: the picker's last render
  get view() { return S.view; },
  get range() { return S.range; },
  get pending() { return S.pending; },
  get errors() { return [...S.errors.values()]; },
  get panels() {
    return S.panels.map((p) => ({
      fields: p.fields.map(keyOf),
      stride: p.stride,
      data: p.u ? p.u.data.map((a) => Array.from(a)) : [[]],
      xscale: p.u ? [p.u.scales.x.min, p.u.scales.x.max] : null,
      cats: p.cats,
      units: p.u ? p.u.axes.slice(1).map((a) => a.label).filter(Boolean) : [],
      ticks: p.u && p.u.axes[0]._values ? p.u.axes[0]._values.slice() : [],
    }));
  },
};
probe.uPlot = uPlot; // for the benchmark's baseline (same plotting engine)
probe.operator = operatorProbe;
window.sisock = probe;

// ---------------------------------------------------------------- errors
function showError(key, err) {
  S.errors.set(key, err instanceof ApiError ? err.message : String(err.message || err));
  renderBanner();
}
function clearError(key) {
  if (S.errors.delete(key)) renderBanner();
}
function renderBanner() {
  const b = $("#banner");
  b.replaceChildren(...[...S.errors.values()].map((m) => el("div", { class: "msg" }, m)));
  b.hidden = S.errors.size === 0;
}

// ---------------------------------------------------------------- loading
function busy(delta) {
  S.pending += delta;
  $("#loading").hidden = S.pending === 0;
}

// ---------------------------------------------------------------- URL
function saveView() {
  const q = viewQuery(S.view);
  if (q !== location.search) history.replaceState(null, "", q);
  renderToolbar();
}

// ---------------------------------------------------------------- picker
// The hub's node list; field lists load separately (a few at a time, see
// picker.js), so a site with hundreds of nodes gets its page at once.
async function loadNodes() {
  try {
    S.nodes = await getJSON("api/nodes", "Listing data nodes");
    S.nodesLoaded = true;
    clearError("nodes");
  } catch (e) {
    showError("nodes", e);
    return;
  }
  renderPickerSoon();
}

async function loadFields(node) {
  try {
    const r = await getJSON(`api/nodes/${encodeURIComponent(node)}/fields`, `Fields of ${node}`);
    S.fields[node] = r.field;
    clearError("fields:" + node);
    return true;
  } catch (e) {
    S.fieldsFailed.set(node, Date.now());
    // said for the nodes on screen; the others' lists are asked again when wanted
    if (S.open.has(node) || S.panels.some((p) => p.fields.some((f) => f.node === node)) || S.nodes.length <= 12) showError("fields:" + node, e);
    return false;
  } finally {
    renderPickerSoon();
  }
}

// Three field lists in flight at most: the browser has six connections per
// host and the live stream and the panels' queries need theirs.
const fieldQueue = new FieldQueue(loadFields, 3);

// Field lists of listed nodes not loaded yet, in the background.
function loadAllFields() {
  fieldQueue.want(S.nodes.map((n) => n.name).filter((n) => !S.fields[n]));
}

// Renders caused by arriving field lists are coalesced (one per 250 ms): the
// page's live charts keep the main thread while hundreds of lists arrive.
let pickerTimer = null;
function renderPickerSoon() {
  if (!pickerTimer) pickerTimer = setTimeout(() => { pickerTimer = null; renderPicker(); }, 250);
}

function toggleNode(name, expanded) {
  if (expanded) { S.open.delete(name); S.closed.add(name); }
  else { S.closed.delete(name); S.open.add(name); }
  renderPicker();
}

function renderPicker() {
  clearTimeout(pickerTimer);
  pickerTimer = null;
  const query = $("#search").value;
  const m = pickerModel(S.nodes, S.fields, query, S.open, S.closed);
  const inView = new Set((S.panels[S.active]?.fields || []).map(keyOf));
  const groups = m.groups.map((g) => {
    const n = g.node;
    const head = el("button", {
      class: "node-name" + (g.expanded ? " open" : "") + (S.down.has(n.name) ? " down" : ""),
      "data-node": n.name,
      title: n.description || n.name,
      "aria-expanded": String(g.expanded),
      onclick: () => toggleNode(n.name, g.expanded),
    }, el("span", { class: "caret" }, g.expanded ? "▾" : "▸"), el("span", { class: "nname" }, n.name),
    el("small", {}, g.loaded ? String(g.total) : ""));
    const rows = !g.expanded ? [] : !g.loaded ? [el("div", { class: "empty" }, "loading fields…")]
      : g.fields.map(([f, info]) => el("button", {
        class: "field" + (inView.has(`${n.name}:${f}`) ? " on" : ""),
        "data-key": `${n.name}:${f}`,
        title: info.description || f,
        onclick: () => toggleField(n.name, f),
      }, el("span", {}, f), el("small", {}, info.type === "number" ? (info.units || "") : info.type)));
    return el("div", { class: "node" }, head, ...rows);
  });
  const loading = fieldQueue.waiting;
  if (!groups.length) {
    groups.push(el("div", { class: "empty" }, !S.nodes.length ? "no data nodes"
      : loading ? `no match yet: fields of ${loading} nodes are loading…` : "no field matches"));
  }
  if (m.hidden) groups.push(el("div", { class: "empty more" }, `${m.hidden} more nodes match: refine the search`));
  const q = query.trim();
  $("#picker-count").textContent = S.nodes.length <= 1 ? ""
    : (q ? `${m.matched} of ${S.nodes.length} nodes match` : `${S.nodes.length} nodes`)
      + (loading ? ` · loading fields of ${loading}` : "");
  $("#nodes").replaceChildren(...groups);
  // expanded nodes show their fields: load those first
  const need = m.groups.filter((g) => g.expanded && !g.loaded && !(Date.now() - (S.fieldsFailed.get(g.node.name) || 0) < 5000)).map((g) => g.node.name);
  if (need.length) fieldQueue.want(need, true);
  probe.picker = { nodes: m.groups.length, matched: m.matched, hidden: m.hidden, waiting: loading, loaded: S.nodes.filter((n) => S.fields[n.name]).length, at: performance.now() };
}

function toggleField(node, field) {
  if (S.panels.length === 0) addPanel([]);
  const p = S.panels[S.active];
  const i = p.fields.findIndex((f) => f.node === node && f.field === field);
  if (i >= 0) p.fields.splice(i, 1);
  else p.fields.push({ node, field });
  S.view.panels = S.panels.map((x) => x.fields.slice());
  saveView();
  relayout(p);
  renderPicker();
  syncLive();
}

// ---------------------------------------------------------------- panels
function addPanel(fields) {
  const p = { fields, info: {}, cats: {}, raw: {}, u: null, stride: null, gen: 0, fetched: new Set(), near: {}, nearAsked: new Set() };
  p.box = el("section", { class: "panel" });
  p.box.addEventListener("mousedown", () => activate(p));
  $("#panels").append(p.box);
  S.panels.push(p);
  S.active = S.panels.length - 1;
  return p;
}

// Value axes per side: one per unit, alternating left and right; every panel
// reserves the most any panel needs so that their time axes line up.
function slotsOf(p) {
  const units = new Set();
  for (const f of p.fields) {
    const info = (S.fields[f.node] || {})[f.field] || { type: "number", units: null };
    if (info.type !== "bool" && info.type !== "string") units.add(info.units || "");
  }
  const n = Math.max(1, units.size);
  return { left: Math.ceil(n / 2), right: Math.floor(n / 2) };
}

function refreshSlots() {
  const s = { left: 1, right: 0 };
  for (const p of S.panels) {
    const x = slotsOf(p);
    s.left = Math.max(s.left, x.left);
    s.right = Math.max(s.right, x.right);
  }
  const changed = !S.slots || s.left !== S.slots.left || s.right !== S.slots.right;
  S.slots = s;
  return changed;
}

// After the panels' fields changed: rebuild p (and the others when the
// shared axis slots changed, without fetching their data again).
function relayout(p) {
  if (refreshSlots()) for (const q of S.panels) if (q !== p) rebuildPanel(q, false);
  if (p) rebuildPanel(p);
}

function activate(p) {
  const i = S.panels.indexOf(p);
  if (i !== S.active) {
    S.active = i;
    S.panels.forEach((x, k) => x.box.classList.toggle("active", k === i));
    renderPicker();
  }
}

function removePanel(p) {
  if (p.u) p.u.destroy();
  p.box.remove();
  S.panels.splice(S.panels.indexOf(p), 1);
  S.active = Math.max(0, Math.min(S.active, S.panels.length - 1));
  S.view.panels = S.panels.map((x) => x.fields.slice());
  saveView();
  relayout(null);
  renderPicker();
  syncLive();
}

function panelWidth() {
  return Math.max(300, $("#panels").clientWidth - 24);
}

function rebuildPanel(p, fetch = true) {
  if (p.u) { p.u.destroy(); p.u = null; }
  p.info = {};
  for (const f of p.fields) {
    const info = (S.fields[f.node] || {})[f.field];
    p.info[keyOf(f)] = info ? { ...info } : { type: "number", units: null, timeline: null };
    if (!p.cats[keyOf(f)]) p.cats[keyOf(f)] = [];
  }
  const titles = p.fields.map((f) => {
    const d = p.info[keyOf(f)].description;
    return el("span", { class: "fname", title: d || "" }, keyOf(f), d ? el("small", { class: "desc" }, " " + d) : "");
  });
  const head = el("header", {},
    el("span", { class: "title" }, ...(p.fields.length ? titles.flatMap((t, i) => (i ? [", ", t] : [t])) : ["empty panel: pick fields on the left"])),
    el("button", { class: "csv", title: "download what is on screen as CSV", onclick: () => downloadCsv(p) }, "CSV"),
    el("button", { class: "close", title: "remove panel", onclick: () => removePanel(p) }, "✕"));
  const plot = el("div", { class: "plot" });
  p.why = el("div", { class: "why" });
  p.stats = el("table", { class: "stats" });
  p.box.replaceChildren(head, plot, p.why, p.stats);
  p.box.classList.toggle("active", S.panels.indexOf(p) === S.active);
  if (p.fields.length === 0) return;
  const opts = makeOptions(p, panelWidth(), 220, {
    bind: {
      mousedown: (u, targ, handler) => (e) => { S.dragFrom = u; return e.shiftKey ? startPan(u, e) : handler(e); },
      dblclick: () => () => { zoomOut(); return null; },
    },
    slots: S.slots,
    uplot: {
      // a drag selects a span; we zoom every panel to it and re-query
      setSelect: [(u) => {
        const { left, width } = u.select;
        if (width < 3) return;
        if (S.dragFrom && u !== S.dragFrom) { // a synced copy of another panel's drag
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          return;
        }
        const min = u.posToVal(left, "x");
        const max = u.posToVal(left + width, "x");
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        userRange(min, max);
      }],
      setCursor: [(u) => moveTip(p, u)],
      draw: [() => {
        probe.paints.push({ panel: S.panels.indexOf(p), at: performance.now(), reason: p.reason || "scale" });
        p.reason = null;
      }],
    },
  });
  p.u = new uPlot(opts, buildData(p), plot);
  p.tip = el("div", { class: "tip" });
  p.tip.hidden = true;
  p.u.over.append(p.tip);
  p.u.over.addEventListener("mouseenter", () => { p.hover = true; });
  p.u.over.addEventListener("mouseleave", () => { p.hover = false; p.tip.hidden = true; });
  p.u.setScale("x", { min: S.range[0], max: S.range[1] });
  renderWhy(p);
  if (fetch) fetchPanel(p);
}

function buildData(p) {
  const tables = p.fields.map((f) => {
    const k = keyOf(f);
    const r = p.raw[k];
    if (!r || r.t.length === 0) return [[], []];
    return seriesTable(r.t, r.v, p.info[k].type, p.cats[k], gapOf(r.t, p.stride));
  });
  const nonEmpty = tables.filter((t) => t[0].length);
  if (nonEmpty.length === 0) return [[], ...p.fields.map(() => [])];
  return joinTables(tables.map((t) => (t[0].length ? t : [[S.range[0]], [null]])));
}

function redraw(p, reason) {
  if (!p.u) return;
  p.reason = reason;
  p.u.setData(buildData(p), false);
  p.u.setScale("x", { min: S.range[0], max: S.range[1] });
  renderWhy(p);
  renderStats(p);
}

// The legend's table: min, max, mean and last of each field over the view
// (of the points drawn: with minmax downsampling the mean is of bin extremes).
function renderStats(p) {
  if (!p.stats || !p.u) return;
  const [a, b] = S.range;
  const x = p.u.data[0];
  const rows = p.fields.map((f, j) => {
    const k = keyOf(f);
    const info = p.info[k];
    const y = p.u.data[j + 1] || [];
    let n = 0, sum = 0, mn = Infinity, mx = -Infinity, last = null;
    for (let i = 0; i < x.length; i++) {
      const v = y[i];
      if (v === null || v === undefined || x[i] < a || x[i] > b) continue;
      n++; sum += v; if (v < mn) mn = v; if (v > mx) mx = v; last = v;
    }
    const fmt = (v) => (v === null || !isFinite(v) ? "–" : p.u.series[j + 1].value(p.u, v));
    const state = info.type === "bool" || info.type === "string";
    const cells = state
      ? ["", "", info.type === "bool" && n ? `${Math.round((100 * sum) / n)} % on` : "", fmt(last)]
      : [fmt(mn), fmt(mx), n ? fmt(sum / n) : "–", fmt(last)];
    return el("tr", {}, el("td", {}, el("span", { class: "sw", style: `background:${color(j)}` }), k),
      ...cells.map((c) => el("td", {}, c)));
  });
  p.stats.replaceChildren(el("tr", {}, ...["", "min", "max", "mean", "last"].map((h) => el("th", {}, h))), ...rows);
}

// The tooltip at the cursor of the panel under the mouse: time and each
// field's nearest value at that time.
function moveTip(p, u) {
  const { left, top, idx } = u.cursor;
  if (!p.tip || !p.hover || idx === null || idx === undefined || left < 0) { if (p.tip) p.tip.hidden = true; return; }
  const x = u.data[0];
  const near = (ys) => { // joined tables leave holes: look around idx for this field's sample
    for (let d = 0; d < 50; d++) {
      if (ys[idx - d] !== undefined && ys[idx - d] !== null && idx - d >= 0) return ys[idx - d];
      if (ys[idx + d] !== undefined && ys[idx + d] !== null && idx + d < ys.length) return ys[idx + d];
    }
    return null;
  };
  const rows = [el("div", { class: "t" }, new Date(x[idx] * 1000).toISOString().slice(0, 19).replace("T", " ") + " UTC")];
  for (let i = 1; i < u.series.length; i++) {
    const sr = u.series[i];
    rows.push(el("div", {}, el("span", { class: "sw", style: `background:${typeof sr.stroke === "function" ? sr.stroke(u, i) : sr.stroke}` }),
      `${keyOf(p.fields[i - 1])}: `, el("b", {}, sr.value(u, near(u.data[i])))));
  }
  p.tip.replaceChildren(...rows);
  p.tip.hidden = false;
  const w = p.tip.offsetWidth;
  const h = p.tip.offsetHeight;
  const W = u.over.clientWidth;
  const H = u.over.clientHeight;
  p.tip.style.left = `${left + 14 + w > W ? Math.max(0, left - 14 - w) : left + 14}px`;
  p.tip.style.top = `${top + 14 + h > H ? Math.max(0, top - 14 - h) : top + 14}px`;
}

// ---------------------------------------------------------------- empty panels
// Why a field of a panel shows nothing: null when it has samples in view.
function whyEmpty(p, f) {
  const k = keyOf(f);
  const r = p.raw[k];
  if (r && r.t.length) {
    const [a, b] = S.range;
    if (r.t[0] <= b && r.t[r.t.length - 1] >= a) return null;
  }
  if (S.down.has(f.node) || (S.nodesLoaded && !S.nodes.some((n) => n.name === f.node))) {
    return { kind: "down", text: `node ${f.node} is down: the hub does not list it` };
  }
  if (p.loading) return { kind: "loading", text: `loading ${k}…` };
  if (!p.fetched || !p.fetched.has(k)) return { kind: "loading", text: `loading ${k}…` };
  const known = S.fields[f.node];
  if (known && !(f.field in known) && !(r && r.t.length)) {
    return { kind: "unknown", text: `unknown field: node ${f.node} has no field '${f.field}'` };
  }
  return { kind: "nodata", text: `${k}: no data in this range`, near: p.near[k] };
}

function renderWhy(p) {
  if (!p.why) return;
  const reasons = p.fields.map((f) => whyEmpty(p, f)).filter(Boolean);
  const allEmpty = reasons.length === p.fields.length && p.fields.length > 0;
  p.box.classList.toggle("empty", allEmpty);
  p.why.classList.toggle("overlay", allEmpty);
  p.why.replaceChildren(...reasons.map((w) => {
    const line = el("div", { class: "reason " + w.kind }, w.text);
    if (w.kind === "nodata") {
      if (w.near === undefined) line.append(" (looking for data before and after it…)");
      else if (w.near === null) line.append("; the node has no data for it at any time");
      else {
        const [a, b] = S.range;
        const ago = w.near < a ? `${fmtSpan(a - w.near)} before` : `${fmtSpan(w.near - b)} after`;
        line.append(`; nearest data: ${fmtTime(w.near)} UTC (${ago}) `,
          el("button", { class: "go", onclick: () => goNear(w.near) }, "go there"));
      }
    }
    return line;
  }));
  for (const f of p.fields) {
    const k = keyOf(f);
    const w = reasons.find((x) => x.kind === "nodata" && x.text.startsWith(k + ":"));
    if (w && w.near === undefined && !p.nearAsked.has(k)) findNearest(p, f);
  }
}

function fmtTime(t) { return new Date(t * 1000).toISOString().slice(0, 19).replace("T", " "); }
function fmtSpan(s) {
  if (s >= 2 * 86400) return `${Math.round(s / 86400)} d`;
  if (s >= 2 * 3600) return `${Math.round(s / 3600)} h`;
  if (s >= 120) return `${Math.round(s / 60)} min`;
  return `${Math.round(s)} s`;
}

function goNear(t) {
  const [a, b] = S.range;
  const span = b - a;
  if (t < a) userRange(t - span * 0.8, t + span * 0.2);
  else userRange(t - span * 0.2, t + span * 0.8);
}

// The sample of node:field nearest to the view, before or after it: a coarse
// query over a long span (cheap summary levels), refined twice around the hit.
async function findNearest(p, f) {
  const k = keyOf(f);
  p.nearAsked.add(k);
  const [a, b] = S.range;
  const now = Date.now() / 1000;
  const kind = p.info[k]?.type === "string" ? "string" : "number";
  const probeOne = async (start, end, stride, method) => {
    if (!(end > start)) return null;
    const fr = await getFrame(dataUrl(f.node, [f.field], start, end, stride, method), `Nearest data of ${k}`);
    const fd = fr.fields[f.field];
    const t = fd && fd.timeline ? fr.times[fd.timeline] : null;
    if (!t || !t.length) return null;
    return method === "last" ? t[t.length - 1] : t[0];
  };
  const search = async (before) => {
    const method = kind === "string" ? (before ? "last" : "first") : (before ? "last" : "first");
    const steps = [30 * 86400, 3600, 10];
    let lo = before ? Math.max(1, a - 3 * 365 * 86400) : b;
    let hi = before ? a : now + 60;
    let hit = null;
    for (const st of steps) {
      const found = await probeOne(lo, hi, st, method);
      if (found === null) return hit;
      hit = found;
      lo = Math.max(before ? lo : b, found - st);
      hi = Math.min(before ? a : hi, found + st);
    }
    return hit;
  };
  let near = null;
  try {
    const [x, y] = await Promise.all([search(true), search(false)]);
    if (x !== null && y !== null) near = a - x <= y - b ? x : y;
    else near = x ?? y;
  } catch (e) {
    near = null;
  }
  if (S.range[0] !== a || S.range[1] !== b) { p.nearAsked.delete(k); return; }
  p.near[k] = near;
  renderWhy(p);
}

// ---------------------------------------------------------------- data
// One request per (node, kind) for all the given panels: a node reads each
// file once for every field it is asked for, so panels of the same node
// share a query. A later fetch of a panel makes older answers for it stale
// (generation counter) instead of aborting queries other panels share.
async function fetchPanels(panels) {
  panels = panels.filter((p) => p.u && p.fields.length);
  if (!panels.length) return;
  const [start, end] = S.range;
  const px = Math.max(100, Math.min(...panels.map((p) => p.u.over.clientWidth || panelWidth())));
  const stride = Math.max(1e-6, (end - start) / px);
  const gen = new Map(panels.map((p) => [p, (p.gen = (p.gen || 0) + 1)]));
  const groups = new Map();
  for (const p of panels) {
    for (const f of p.fields) {
      const type = p.info[keyOf(f)].type;
      const kind = type === "string" || type === "bool" ? type : "number";
      const g = `${f.node}|${kind}`;
      if (!groups.has(g)) groups.set(g, { node: f.node, kind, fields: [] });
      if (!groups.get(g).fields.includes(f.field)) groups.get(g).fields.push(f.field);
    }
  }
  busy(1);
  for (const p of panels) {
    p.box.classList.add("loading");
    p.loading = true;
    p.near = {};
    p.nearAsked = new Set();
    renderWhy(p);
  }
  const answers = new Map(); // "node:field" -> {t, v}
  try {
    await Promise.all([...groups.values()].map(async (g) => {
      // bools: the fraction of the bin that is true (drawn as the band's shade)
      const method = g.kind === "string" ? "last" : g.kind === "bool" ? "mean" : "minmax";
      const url = dataUrl(g.node, g.fields, start, end, stride, method);
      const req = { url, node: g.node, fields: g.fields, min_stride: stride, method, start, end, at: performance.now() };
      probe.requests.push(req);
      const key = `data:${g.node}:${g.kind}`;
      try {
        const what = `Loading ${g.fields.map((f) => g.node + ":" + f).join(", ")}`;
        let frame;
        try {
          frame = await getFrame(url, what);
        } catch (e) {
          // fields the node lacks: their panels say so; ask again for the others
          if (e.error !== "unknown_field" || !Array.isArray(e.extra.fields)) throw e;
          const missing = new Set(e.extra.fields);
          for (const f of missing) answers.set(`${g.node}:${f}`, { t: [], v: [] });
          g.fields = g.fields.filter((f) => !missing.has(f));
          frame = g.fields.length
            ? await getFrame(dataUrl(g.node, g.fields, start, end, stride, method), what)
            : { fields: {}, times: {}, bytes: 0 };
        }
        req.doneAt = performance.now();
        req.bytes = frame.bytes;
        clearError(key);
        for (const f of g.fields) {
          const fd = frame.fields[f];
          const t = fd && fd.timeline ? frame.times[fd.timeline] : null;
          answers.set(`${g.node}:${f}`, t ? { t, v: fd.values } : { t: [], v: [] });
        }
      } catch (e) {
        showError(key, e);
      }
    }));
    for (const p of panels) {
      if (p.gen !== gen.get(p) || !p.u) continue; // superseded or removed
      p.stride = stride;
      p.loading = false;
      for (const f of p.fields) {
        p.fetched.add(keyOf(f));
        if (answers.has(keyOf(f))) p.raw[keyOf(f)] = answers.get(keyOf(f));
      }
      redraw(p, "fetch");
    }
  } finally {
    busy(-1);
    for (const p of panels) {
      if (p.gen !== gen.get(p)) continue;
      p.box.classList.remove("loading");
      if (p.loading) { p.loading = false; for (const f of p.fields) p.fetched.add(keyOf(f)); renderWhy(p); }
    }
  }
}

function fetchPanel(p) {
  return fetchPanels([p]);
}

// Every caller in one turn of the event loop shares one fetch: a zoom, the
// URL update and the live switch each ask for data, but once is enough.
let fetchQueued = null;
function fetchAll() {
  if (!fetchQueued) {
    fetchQueued = Promise.resolve().then(() => {
      fetchQueued = null;
      return fetchPanels(S.panels);
    });
  }
  return fetchQueued;
}

let refetchTimer = null;
function refetchSoon() {
  clearTimeout(refetchTimer);
  refetchTimer = setTimeout(fetchAll, 120);
}

// ---------------------------------------------------------------- range
async function resolveRange() {
  const now = Date.now() / 1000;
  if (S.view.range === null) { S.range = [S.view.from, S.view.to]; return; }
  const span = PRESETS[S.view.range];
  if (span) { S.range = [now - span, now]; return; }
  // "all": the earliest sample of every node in view (coarse, cheap query)
  let first = now - 86400;
  const nodes = new Map();
  for (const p of S.panels) for (const f of p.fields) if ((S.fields[f.node] || {})[f.field]?.type !== "string") nodes.set(f.node, f.field);
  const earliest = async (node, field, start, end, stride) => {
    const fr = await getFrame(dataUrl(node, [field], start, end, stride, "first"), `Extent of ${node}`);
    const t = Object.values(fr.times).find((x) => x.length);
    return t ? t[0] - stride / 2 : null; // "first" stamps the bin centre
  };
  await Promise.all([...nodes].map(async ([node, field]) => {
    try {
      const month = 30 * 86400;
      const coarse = await earliest(node, field, 1, now, month); // cheap: summary levels
      if (coarse === null) return;
      const fine = await earliest(node, field, coarse, Math.min(now, coarse + month), 60);
      first = Math.min(first, fine ?? coarse);
    } catch (e) { showError("extent:" + node, e); }
  }));
  S.range = [Math.max(1, first), now];
}

function setRangeAll(min, max) {
  S.range = [min, max];
  for (const p of S.panels) if (p.u) p.u.setScale("x", { min, max });
}

function userRange(min, max) {
  if (!(max > min)) return;
  if (S.view.range === null && S.view.from === min && S.view.to === max) return; // already there
  S.view.range = null;
  S.view.from = min;
  S.view.to = max;
  setRangeAll(min, max);
  probe.zoomAt = performance.now();
  saveView();
  syncLive();
  fetchAll();
}

function startPan(u, e) {
  const x0 = e.clientX;
  const [min0, max0] = [u.scales.x.min, u.scales.x.max];
  const w = u.over.clientWidth;
  const move = (ev) => {
    const dt = ((x0 - ev.clientX) / w) * (max0 - min0);
    setRangeAll(min0 + dt, max0 + dt);
  };
  const up = (ev) => {
    window.removeEventListener("mousemove", move);
    window.removeEventListener("mouseup", up);
    const dt = ((x0 - ev.clientX) / w) * (max0 - min0);
    userRange(min0 + dt, max0 + dt);
  };
  window.addEventListener("mousemove", move);
  window.addEventListener("mouseup", up);
  return null;
}

async function setPreset(name) {
  S.view.range = name;
  S.view.live = true;
  saveView();
  busy(1); // "all" asks every node for its first sample first
  try { await resolveRange(); } finally { busy(-1); }
  setRangeAll(...S.range);
  syncLive();
  fetchAll();
}

function shift(frac) {
  const [a, b] = S.range;
  const d = (b - a) * frac;
  userRange(a + d, b + d);
}

function zoomOut() {
  const [a, b] = S.range;
  const d = (b - a) / 2;
  userRange(a - d, Math.min(b + d, Date.now() / 1000 + d));
}

// ---------------------------------------------------------------- live tail
function liveWanted() {
  return S.view.live && S.view.range !== null && S.view.range !== "all";
}

function liveNodes() {
  const want = new Set();
  const listed = (n) => !S.nodesLoaded || S.nodes.some((x) => x.name === n);
  if (liveWanted()) for (const p of S.panels) for (const f of p.fields) if (!S.down.has(f.node) && listed(f.node)) want.add(f.node);
  return want;
}

// One live stream for the page over every node in view; reopened only when
// that set changes.
function syncLive() {
  const want = liveNodes();
  const same = S.live && S.live.nodes.size === want.size && [...want].every((n) => S.live.nodes.has(n));
  if (!same) {
    if (S.live) S.live.es.close();
    S.live = null;
    for (const n of [...S.liveSeen]) if (!want.has(n)) S.liveSeen.delete(n);
    if (want.size) {
      const nodes = [...want].sort();
      S.live = { nodes: new Set(nodes), es: openLive(nodes, onLive) };
    }
  }
  renderToolbar();
}

function nodeDown(node, message) {
  S.down.add(node);
  S.liveSeen.delete(node);
  showError("node:" + node, new Error(message));
  for (const p of S.panels) if (p.fields.some((f) => f.node === node)) renderWhy(p);
  syncLive();
}

let liveFrame = 0;
let liveNewest = 0;
const dirty = new Set();
function onLive(node, ev, d) {
  if (ev === "gone") {
    nodeDown(node, `Data node '${node}' left the hub (stopped or lost): its live tail is paused`);
    return;
  }
  if (ev === "missing") {
    nodeDown(node, `Data node '${node}' is not listed by the hub: no live tail`);
    return;
  }
  if (ev === "added") {
    clearError("node:" + node);
    S.down.delete(node);
    syncLive();
    fetchAll();
    return;
  }
  if (ev === "hello") return;
  if (ev === "router") {
    if (!d.connected) { routerAway(); showError("router", new Error("The web bridge lost the router: retrying every 0.5 s")); }
    else { clearError("router"); fetchAll(); }
    return;
  }
  if (ev === "dropped") { fetchAll(); return; } // the bridge left samples out for us: re-query
  if (ev === "error") return; // EventSource reconnects by itself; /api/status reports the bridge
  if (ev !== "data" || !liveWanted() || !node) return;
  clearError("node:" + node);
  if (S.stale.delete(node)) refetchSoon(); // back after an outage: fetch what it kept meanwhile
  if (!S.liveSeen.has(node)) { S.liveSeen.add(node); renderToolbar(); }
  const tls = d.timeline || {};
  for (const p of S.panels) {
    let touched = false;
    for (const f of p.fields) {
      if (f.node !== node || !(f.field in d.data)) continue;
      const k = keyOf(f);
      const tlName = p.info[k].timeline in tls ? p.info[k].timeline : Object.keys(tls)[0];
      const ts = tlName ? tls[tlName].t : [];
      const vs = d.data[f.field].map((v) => (v === null ? NaN : v));
      if (ts.length !== vs.length || ts.length === 0) continue;
      const r = p.raw[k] || { t: [], v: [] };
      const cut = r.t.length ? r.t[r.t.length - 1] : -Infinity;
      const keep = ts.map((t, i) => i).filter((i) => ts[i] > cut);
      if (!keep.length) continue;
      r.t = Array.from(r.t).concat(keep.map((i) => ts[i]));
      r.v = Array.from(r.v).concat(keep.map((i) => vs[i]));
      p.raw[k] = r;
      liveNewest = Math.max(liveNewest, ts[ts.length - 1]);
      touched = true;
    }
    if (touched) dirty.add(p);
  }
  if (!dirty.size) return;
  if (!liveFrame) liveFrame = requestAnimationFrame(drawLive);
}

// The live tail's frame: it runs after whatever the user did meanwhile, so
// it reads the view again (a zoom may have left the preset: no tail then).
function drawLive() {
  liveFrame = 0;
  const span = PRESETS[S.view.range];
  if (!liveWanted() || !(span > 0)) { dirty.clear(); return; }
  const end = Math.max(Date.now() / 1000, liveNewest);
  S.range = [end - span, end];
  for (const p of dirty) {
    const k0 = S.range[0];
    for (const r of Object.values(p.raw)) {
      let i = 0;
      while (i < r.t.length && r.t[i] < k0) i++;
      if (i > 0 && Array.isArray(r.t)) { r.t.splice(0, i); r.v.splice(0, i); }
    }
    redraw(p, "live");
  }
  dirty.clear();
  setRangeAll(...S.range);
  probe.live.push({ t: liveNewest, drawnAt: Date.now() / 1000 });
}

// ---------------------------------------------------------------- saved views
// Named views kept by the server (GET/POST /api/views, GET /api/views/NAME),
// seen by everyone using it; export/import as the same JSON document.
function viewDoc(name) {
  const v = S.view;
  return {
    name,
    panels: S.panels.map((p) => p.fields.map(keyOf)),
    range: v.range,
    from: v.range === null ? v.from : null,
    to: v.range === null ? v.to : null,
    live: !!v.live,
  };
}

function openView(d) {
  const view = {
    panels: (d.panels || []).map((p) => p.map((x) => {
      const i = x.indexOf(":");
      return { node: x.slice(0, i), field: x.slice(i + 1) };
    })),
    range: d.range ?? null, from: d.from, to: d.to, live: d.live !== false, name: d.name,
  };
  location.assign(location.pathname + viewQuery(view));
}

async function loadViews() {
  try {
    S.views = await getJSON("api/views", "Saved views");
    clearError("views");
  } catch (e) {
    showError("views", e);
    return;
  }
  $("#views").replaceChildren(
    el("option", { value: "" }, S.views.length ? "saved views…" : "no saved views"),
    ...S.views.map((v) => el("option", { value: v.name }, `${v.name} (${v.panels} panel${v.panels === 1 ? "" : "s"})`)));
}

async function saveViewAs() {
  const name = (prompt("Save these panels and this range, for everyone, as:", S.viewName || "") || "").trim();
  if (!name) return;
  try {
    await sendJSON("POST", "api/views", viewDoc(name), `Saving view '${name}'`);
    S.viewName = name;
    S.view.name = name;
    saveView();
    clearError("views");
  } catch (e) { showError("views", e); }
  await loadViews();
  $("#views").value = name;
}

async function pickView(name) {
  if (!name) return;
  try {
    openView(await getJSON("api/views/" + encodeURIComponent(name), `Opening view '${name}'`));
  } catch (e) { showError("views", e); }
}

function exportView() {
  const name = S.viewName || $("#views").value || "sisock view";
  const blob = new Blob([JSON.stringify(viewDoc(name), null, 1) + "\n"], { type: "application/json" });
  const a = el("a", { href: URL.createObjectURL(blob), download: `${name.replace(/[^\w.-]+/g, "_")}.json` });
  document.body.append(a);
  a.click();
  a.remove();
}

async function importView(file) {
  try {
    const doc = JSON.parse(await file.text());
    const saved = await sendJSON("POST", "api/views", doc, `Importing view from ${file.name}`);
    openView(saved);
  } catch (e) {
    showError("views", e instanceof SyntaxError ? new Error(`Importing ${file.name}: not JSON (${e.message})`) : e);
  }
}

// ---------------------------------------------------------------- CSV
function downloadCsv(p) {
  if (!p.u) return;
  const [x, ...ys] = p.u.data;
  const [a, b] = S.range;
  const keys = p.fields.map(keyOf);
  const lines = [];
  if (p.stride && p.raw && Object.values(p.raw).some((r) => r.t.length > 1)) {
    lines.push(`# downsampled: each row is a bin of ${p.stride.toPrecision(4)} s (numbers: the bin's min and max, at their times; states: the bin's last value), not every sample.`);
    lines.push("# full resolution: narrow the view, or GET /api/data without min_stride.");
  }
  lines.push("time,t," + keys.map((k) => `"${k}"`).join(","));
  for (let i = 0; i < x.length; i++) {
    if (x[i] < a || x[i] > b) continue;
    if (ys.every((y) => y[i] === null || y[i] === undefined)) continue;
    const cells = ys.map((y, j) => {
      const v = y[i];
      if (v === null || v === undefined) return "";
      const info = p.info[keys[j]];
      if (info.type === "string") return `"${String(p.cats[keys[j]][v]).replace(/"/g, '""')}"`;
      return String(v);
    });
    lines.push(`${new Date(x[i] * 1000).toISOString()},${x[i]},${cells.join(",")}`);
  }
  const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
  const a2 = el("a", { href: URL.createObjectURL(blob), download: `sisock_${Math.round(a)}_${Math.round(b)}.csv` });
  document.body.append(a2);
  a2.click();
  a2.remove();
}

// ---------------------------------------------------------------- toolbar
function toIso(t) { return isFinite(t) ? new Date(t * 1000).toISOString().slice(0, 19).replace("T", " ") : ""; }

function renderToolbar() {
  for (const b of document.querySelectorAll("#presets button")) b.classList.toggle("on", b.dataset.range === S.view.range);
  $("#live").checked = liveWanted();
  const streaming = S.live ? [...S.live.nodes].filter((n) => S.liveSeen.has(n)) : [];
  $("#live-state").textContent = liveWanted() ? (streaming.length ? `live: ${streaming.join(", ")}` : S.live ? "live: no samples yet" : "live: no node in view") : "";
  if (document.activeElement !== $("#from")) $("#from").value = toIso(S.range[0]);
  if (document.activeElement !== $("#to")) $("#to").value = toIso(S.range[1]);
}

function applyAbsolute() {
  const parse = (v) => Date.parse(v.trim().replace(" ", "T") + "Z") / 1000;
  const from = parse($("#from").value);
  const to = parse($("#to").value);
  const bad = !isFinite(from) ? `'from' is not a time: ${JSON.stringify($("#from").value)}`
    : !isFinite(to) ? `'to' is not a time: ${JSON.stringify($("#to").value)}`
    : to > from ? null : "'to' must be after 'from'";
  if (bad) {
    showError("range", new Error(`Absolute range: ${bad} (UTC, YYYY-MM-DD HH:MM:SS)`));
    return;
  }
  clearError("range");
  userRange(from, to);
}

// The router is away: live samples stop reaching the page while the nodes
// go on sampling and archiving. Each node on screen is re-queried once its
// live samples flow again (a re-query as soon as the bridge is back would
// often come before the node is).
function routerAway() {
  for (const p of S.panels) for (const f of p.fields) S.stale.add(f.node);
}

async function pollStatus() {
  try {
    const s = await getJSON("api/status", "Web bridge status");
    clearError("bridge");
    $("#status").className = s.connected ? "ok" : "bad";
    $("#status").title = s.connected ? `connected to ${s.router}` : `router ${s.router} away`;
    if (!s.connected) {
      routerAway();
      showError("router", new Error(`The web bridge is not connected to the router at ${s.router}: retrying`));
    }
    else if (S.errors.has("router")) { clearError("router"); fetchAll(); }
    if (s.connected && s.hub) await nodesBack(new Set(s.nodes || []));
  } catch (e) {
    $("#status").className = "bad";
    showError("bridge", e);
  }
}

// The hub lists a node again (restarted) or a new one: the live stream, the
// picker and the panels take it back (the stream itself only relays the
// nodes it was opened for).
async function nodesBack(names) {
  let changed = false;
  for (const n of [...S.down]) {
    if (names.has(n)) { S.down.delete(n); clearError("node:" + n); changed = true; }
  }
  const known = new Set(S.nodes.map((x) => x.name));
  if ([...names].some((n) => !known.has(n))) { await loadNodes(); loadAllFields(); changed = true; }
  // nodes the hub no longer lists leave the picker (and its count); panels
  // showing them say so, and they come back when the hub lists them again
  const gone = S.nodes.filter((x) => !names.has(x.name));
  if (gone.length) {
    S.nodes = S.nodes.filter((x) => names.has(x.name));
    for (const x of gone) { delete S.fields[x.name]; fieldQueue.forget(x.name); }
    renderPickerSoon();
    changed = true;
  }
  if (!changed) return;
  for (const p of S.panels) renderWhy(p);
  syncLive();
  fetchAll();
}

// A first view for a newcomer: one panel per node (up to four) with the
// node's first numeric field, last hour, live.
function defaultPanels() {
  const out = [];
  for (const n of S.nodes) {
    const first = Object.entries(S.fields[n.name] || {}).find(([, info]) => info.type === "number");
    if (first) out.push([{ node: n.name, field: first[0] }]);
    if (out.length === 4) break;
  }
  return out;
}

// ---------------------------------------------------------------- start
async function main() {
  $("#presets").replaceChildren(...Object.keys(PRESETS).map((r) => el("button", { "data-range": r, onclick: () => setPreset(r) }, r)));
  $("#search").addEventListener("input", renderPicker);
  $("#search").addEventListener("keydown", (e) => { // Enter picks the only field shown
    if (e.key !== "Enter") return;
    const shown = document.querySelectorAll("#nodes .field");
    if (shown.length === 1) shown[0].click();
  });
  $("#add-panel").addEventListener("click", () => { addPanel([]); rebuildPanel(S.panels[S.active]); S.panels.forEach((x, k) => x.box.classList.toggle("active", k === S.active)); renderPicker(); });
  $("#live").addEventListener("change", (e) => { S.view.live = e.target.checked; if (e.target.checked && S.view.range === null) { setPreset("1h"); return; } saveView(); syncLive(); });
  $("#apply").addEventListener("click", applyAbsolute);
  $("#back").addEventListener("click", () => shift(-0.5));
  $("#fwd").addEventListener("click", () => shift(0.5));
  $("#zoomout").addEventListener("click", zoomOut);
  $("#views").addEventListener("change", (e) => pickView(e.target.value));
  $("#save-view").addEventListener("click", saveViewAs);
  $("#export-view").addEventListener("click", exportView);
  $("#import-view").addEventListener("change", (e) => { if (e.target.files[0]) importView(e.target.files[0]); e.target.value = ""; });
  S.viewName = S.view.name || "";
  startOperator();
  window.addEventListener("resize", () => { for (const p of S.panels) if (p.u) p.u.setSize({ width: panelWidth(), height: 220 }); refetchSoon(); });
  await loadNodes();
  // first the fields of the nodes in view (their types and units shape the panels)
  const listed = new Set(S.nodes.map((n) => n.name));
  if (S.view.chosen) await fieldQueue.want([...new Set(S.view.panels.flat().map((f) => f.node))].filter((n) => listed.has(n)), true);
  else {
    await fieldQueue.want(S.nodes.slice(0, 8).map((n) => n.name), true);
    S.view.panels = defaultPanels();
  }
  for (const fields of S.view.panels) addPanel(fields.slice());
  await resolveRange();
  refreshSlots();
  for (const p of S.panels) rebuildPanel(p, false);
  fetchAll().finally(loadAllFields); // one query per node for every panel; then the picker's fields
  S.active = 0;
  S.panels.forEach((x, k) => x.box.classList.toggle("active", k === 0));
  renderPicker();
  saveView();
  syncLive();
  pollStatus();
  setInterval(pollStatus, 5000);
  loadViews();
  probe.fieldsAtReady = Object.keys(S.fields).length;
  probe.ready = true;
}

main();
