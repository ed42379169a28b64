// Turning fetched arrays into uPlot data and options (no I/O here).
import uPlot from "uplot";

const COLORS = ["#2f7ed8", "#e4572e", "#17a673", "#a05fd6", "#f2a541", "#00a6c4", "#c2185b", "#6b7b8c"];
export const color = (i) => COLORS[i % COLORS.length];

export const keyOf = (f) => `${f.node}:${f.field}`;

// One field's samples as plain arrays with null for NaN and a null point
// inserted where the time step jumps (a gap in the data), so lines break.
export function seriesTable(t, values, type, cats, gap) {
  const n = t.length;
  const xs = [];
  const ys = [];
  for (let i = 0; i < n; i++) {
    if (i > 0 && gap > 0 && t[i] - t[i - 1] > gap) {
      xs.push((t[i] + t[i - 1]) / 2);
      ys.push(null);
    }
    let v = values[i];
    if (type === "string") {
      if (v === null || v === undefined) v = null;
      else {
        let k = cats.indexOf(v);
        if (k < 0) { cats.push(v); k = cats.length - 1; }
        v = k;
      }
    } else if (typeof v === "boolean") v = v ? 1 : 0;
    else if (v === null || Number.isNaN(v)) v = null;
    xs.push(t[i]);
    ys.push(v);
  }
  return [xs, ys];
}

// The time jump that counts as a gap: 3x the stride or 3x the median step.
export function gapOf(t, stride) {
  if (t.length < 3) return 0;
  const steps = [];
  const every = Math.max(1, Math.floor(t.length / 200));
  // minmax puts two samples in each bin, half a stride apart: steps shorter than the
  // stride say nothing about gaps (with only those, the stride itself is the step)
  for (let i = 1; i < t.length; i += every) {
    const d = t[i] - t[i - 1];
    if (!stride || d >= stride * 0.99) steps.push(d);
  }
  if (steps.length === 0) return stride ? 3 * stride : 0;
  steps.sort((a, b) => a - b);
  const median = steps[Math.floor(steps.length / 2)];
  return 3 * Math.max(median, stride || 0);
}

export function joinTables(tables) {
  if (tables.length === 0) return [[]];
  if (tables.length === 1) return tables[0];
  // mode 1: keep our explicit nulls as gaps; join's own holes are skipped
  return uPlot.join(tables, tables.map(() => [1]));
}

function fmtNumber(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(4);
  return String(Math.round(v * 1e6) / 1e6);
}

// Time-axis ticks in ISO 8601, 24-hour, UTC: the date under the first tick
// and wherever the day changes; dates alone when ticks are days apart.
export function isoTicks(u, splits, ax, space, incr) {
  let prevDay = null;
  return splits.map((v) => {
    if (v === null || v === undefined) return "";
    const s = new Date(v * 1000).toISOString();
    const day = s.slice(0, 10);
    let out;
    if (incr >= 28 * 86400) out = s.slice(0, 7);
    else if (incr >= 86400) out = day;
    else {
      const tm = incr < 1 ? s.slice(11, 23) : incr < 60 ? s.slice(11, 19) : s.slice(11, 16);
      out = day !== prevDay ? `${tm}\n${day}` : tm;
    }
    prevDay = day;
    return out;
  });
}

//: Colours of states: bool off/on, then string categories in order of appearance.
const STATE_COLORS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#b877d9", "#f2495c", "#8ab8ff", "#fade2a", "#37872d", "#c4162a"];
const OFF = [0xc7, 0xd0, 0xd9];
const ON = [0x37, 0x87, 0x2d];
export function stateColor(info, v) {
  if (info.type === "bool") { // v: the fraction of the bin that is true
    const f = Math.max(0, Math.min(1, v));
    return `rgb(${OFF.map((c, i) => Math.round(c + (ON[i] - c) * f)).join(",")})`;
  }
  return STATE_COLORS[v % STATE_COLORS.length];
}

// The colour of a string state: from its text, the same in every view and panel.
export function textColor(text) {
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) >>> 0;
  return STATE_COLORS[h % STATE_COLORS.length];
}

// A bool's value in words: on, off, or the share of the time it was on.
export function boolText(v) {
  if (v >= 0.995) return "on";
  if (v <= 0.005) return "off";
  return `on ${Math.round(v * 100)} %`;
}

// Draws the panel's bool/string fields as state timelines: one row per field
// (rows at the bottom of the plot), a coloured band per run of one value,
// labelled where the band is wide enough, as Grafana's state-timeline panel.
export function drawStates(u, panel, states) {
  if (!states.length) return;
  const ctx = u.ctx;
  const { left, top, width, height } = u.bbox;
  const dpr = uPlot.pxRatio;
  const xs = u.data[0];
  const xmin = u.scales.x.min;
  const xmax = u.scales.x.max;
  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top, width, height);
  ctx.clip();
  ctx.font = `${Math.round(11 * dpr)}px system-ui, sans-serif`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  for (const st of states) {
    const ys = u.data[st.idx];
    const y0 = Math.round(u.valToPos(st.row + 0.92, "state", true));
    const y1 = Math.round(u.valToPos(st.row + 0.08, "state", true));
    const h = Math.max(1, y1 - y0);
    const isBool = st.info.type === "bool";
    // bools are bin fractions: runs of the same shade (quarters) merge
    const norm = (v) => (isBool ? Math.round(v * 4) / 4 : v);
    const label = (v) => (isBool ? boolText(v) : (panel.cats[st.key] || [])[v] ?? "");
    const runs = [];
    let cur = null;
    for (let i = 0; i < xs.length; i++) {
      const v = ys[i];
      if (v === undefined) continue; // another field's sample
      if (v === null) { if (cur) { cur.x1 = xs[i]; runs.push(cur); cur = null; } continue; }
      const nv = norm(v);
      if (cur && cur.v === nv) continue;
      if (cur) { cur.x1 = xs[i]; runs.push(cur); }
      cur = { v: nv, x0: xs[i], x1: null };
    }
    if (cur) { cur.x1 = Math.max(xmax, cur.x0); runs.push(cur); }
    for (const r of runs) {
      if (r.x1 < xmin || r.x0 > xmax) continue;
      const a = Math.max(left, u.valToPos(r.x0, "x", true));
      const b = Math.min(left + width, u.valToPos(r.x1, "x", true));
      const w = Math.max(1, b - a);
      const text = label(r.v);
      // a string's colour follows its text, so a state keeps its colour in every view
      ctx.fillStyle = isBool ? stateColor(st.info, r.v) : textColor(text);
      ctx.fillRect(a, y0, w, h);
      ctx.font = `${Math.round(Math.min(11 * dpr, h - 2 * dpr))}px system-ui, sans-serif`;
      const tw = ctx.measureText(text).width;
      if (tw + 8 * dpr < w && h > 8 * dpr) {
        ctx.fillStyle = "#111";
        ctx.fillText(text, a + 4 * dpr, y0 + h / 2);
      }
    }
    // the row's name at its left edge
    const name = st.key.split(":").slice(1).join(":");
    ctx.font = `600 ${Math.round(11 * dpr)}px system-ui, sans-serif`;
    const nw = ctx.measureText(name).width;
    ctx.fillStyle = "rgba(255,255,255,0.85)";
    ctx.fillRect(left, y0, nw + 8 * dpr, Math.min(h, 16 * dpr));
    ctx.fillStyle = "#333";
    ctx.fillText(name, left + 4 * dpr, y0 + Math.min(h, 16 * dpr) / 2);
    ctx.font = `${Math.round(11 * dpr)}px system-ui, sans-serif`;
  }
  ctx.restore();
}

export function scaleOf(info) {
  if (info.type === "bool") return "bool";
  if (info.type === "string") return "state:" + info.key;
  return "u:" + (info.units || "");
}

const AXIS = 60;

// hooks.slots: how many value axes to reserve on each side ({left, right}),
// the most any panel needs, so every panel's time axis lines up.
export function makeOptions(panel, width, height, hooks) {
  const slots = hooks.slots || { left: 1, right: 0 };
  const infos = panel.fields.map((f) => ({ key: keyOf(f), ...(panel.info[keyOf(f)] || {}) }));
  const stateInfos = infos.filter((i) => i.type === "bool" || i.type === "string");
  const numeric = infos.length - stateInfos.length;
  const frac = stateInfos.length === 0 ? 0 : numeric === 0 ? 1 : Math.min(0.5, 0.14 * stateInfos.length + 0.06);
  // "pad": a scale with a fixed range for spacer axes and fields the node lacks, so an
  // axis never disappears for want of data (uPlot hides axes whose scale has no range)
  const scales = { x: { time: true }, pad: { auto: false, range: () => [0, 1] } };
  const axes = [{ stroke: "#444", grid: { stroke: "#eee" }, ticks: { stroke: "#ddd" }, values: isoTicks, size: 44, space: 70 }];
  const series = [{ label: "time (UTC)", value: (u, v) => (v == null ? "–" : new Date(v * 1000).toISOString().replace("T", " ").replace("Z", "")) }];
  const states = [];
  if (stateInfos.length) {
    const rows = stateInfos.length;
    scales.state = { auto: false, range: () => [0, rows / frac] };
  }
  const seen = [];
  const floor = {}; // lowest value of each numeric scale's data range (state rows sit below)
  let placed = { left: 0, right: 0 };
  infos.forEach((info, i) => {
    const state = info.type === "bool" || info.type === "string";
    const unknown = info.type === undefined; // the node has no such field: no axis of its own
    const scale = state ? "state" : unknown ? "pad" : scaleOf(info);
    if (state || unknown) {
      if (state) states.push({ idx: i + 1, row: stateInfos.length - 1 - states.length, key: info.key, info });
    } else if (!seen.includes(scale)) {
      seen.push(scale);
      scales[scale] = frac > 0
        ? { auto: true, range: (u, mn, mx) => {
          if (mn === null || mx === null) return [0, 1];
          const [a, b] = uPlot.rangeNum(mn, mx, 0.1, true);
          floor[scale] = a;
          return [a - (b - a) * (frac / (1 - frac)), b];
        } }
        : { auto: true, range: (u, mn, mx) => (mn === null || mx === null ? [0, 1] : uPlot.rangeNum(mn, mx, 0.1, true)) };
      const left = seen.length % 2 === 1;
      placed[left ? "left" : "right"] += 1;
      axes.push({
        scale,
        side: left ? 3 : 1,
        label: info.units || "",
        labelSize: 20,
        stroke: color(i),
        grid: { show: seen.length === 1, stroke: "#eee" },
        ticks: { stroke: "#ddd" },
        size: AXIS,
        values: (u, splits, ax, space, incr) => {
          const d = Math.max(0, Math.min(12, Math.ceil(-Math.log10(incr || 1) + 1e-9)));
          return splits.map((v) => (v === null || v < (floor[scale] ?? -Infinity) ? "" : Math.abs(v) >= 1e6 ? v.toExponential(2) : v.toFixed(d)));
        },
      });
    }
    const units = info.units ? " " + info.units : "";
    series.push({
      label: info.key + (units ? ` [${info.units}]` : ""),
      scale,
      stroke: state ? stateColor(info, 1) : color(i),
      width: state ? 0 : 1.25,
      spanGaps: false,
      points: { show: false },
      paths: state ? () => null : undefined,
      value: (u, v) => {
        if (v === null || v === undefined) return "–";
        if (info.type === "bool") return boolText(v);
        if (info.type === "string") return (panel.cats[info.key] || [])[v] ?? "–";
        return fmtNumber(v) + units;
      },
    });
  });
  // empty axes fill the sides up to the slots every panel shares
  const spacer = (side) => ({ scale: "pad", side, size: AXIS, labelSize: 20, stroke: "transparent",
    grid: { show: false }, ticks: { stroke: "transparent" }, values: (u, splits) => splits.map(() => ""), label: " " });
  if (!seen.length && states.length) {
    placed.left += 1;
    axes.push({ ...spacer(3), scale: "state" });
  }
  for (let k = placed.left; k < slots.left; k++) axes.push(spacer(3));
  for (let k = placed.right; k < slots.right; k++) axes.push(spacer(1));
  const uhooks = { ...(hooks.uplot || {}) };
  if (states.length) uhooks.draw = [...(uhooks.draw || []), (u) => drawStates(u, panel, states)];
  return {
    width,
    height,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    fmtDate: (tpl) => uPlot.fmtDate(tpl.replace("{h}:{mm}{aa}", "{HH}:{mm}").replace("{h}{aa}", "{HH}:00").replace("{h}:{mm}:{ss}{aa}", "{HH}:{mm}:{ss}")),
    scales,
    axes,
    series,
    legend: { live: true },
    cursor: {
      sync: { key: "sisock-time", setSeries: false },
      drag: { x: true, y: false, setScale: false },
      bind: hooks.bind,
    },
    select: { show: true },
    hooks: uhooks,
  };
}
