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
  // minmax puts two samples in each bin: look at the steps between bins only
  for (let i = 1; i < t.length; i += every) {
    const d = t[i] - t[i - 1];
    if (!stride || d >= stride * 0.99) steps.push(d);
  }
  if (steps.length === 0) return 0;
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

export function scaleOf(info) {
  if (info.type === "bool") return "bool";
  if (info.type === "string") return "state:" + info.key;
  return "u:" + (info.units || "");
}

export function makeOptions(panel, width, height, hooks) {
  const infos = panel.fields.map((f) => ({ key: keyOf(f), ...(panel.info[keyOf(f)] || {}) }));
  const scales = { x: { time: true } };
  const axes = [{ stroke: "#444", grid: { stroke: "#eee" }, ticks: { stroke: "#ddd" } }];
  const series = [{ label: "time (UTC)", value: (u, v) => (v == null ? "–" : new Date(v * 1000).toISOString().replace("T", " ").replace("Z", "")) }];
  const seen = [];
  infos.forEach((info, i) => {
    const scale = scaleOf(info);
    const state = info.type === "bool" || info.type === "string";
    if (!seen.includes(scale)) {
      seen.push(scale);
      if (info.type === "bool") scales[scale] = { range: [-0.1, 1.1] };
      else if (info.type === "string") scales[scale] = { range: (u, mn, mx) => [-0.2, Math.max(1, (panel.cats[info.key] || []).length - 0.8)] };
      else scales[scale] = { auto: true };
      const axis = {
        scale,
        side: seen.length === 1 ? 3 : 1,
        label: state ? info.key.split(":")[1] : (info.units || ""),
        labelSize: 20,
        stroke: "#444",
        grid: { show: seen.length === 1, stroke: "#eee" },
        ticks: { stroke: "#ddd" },
        size: 60,
        show: seen.length <= 2,
      };
      if (!state) {
        axis.values = (u, splits, ax, space, incr) => {
          const d = Math.max(0, Math.min(12, Math.ceil(-Math.log10(incr || 1) + 1e-9)));
          return splits.map((v) => (v === null ? "" : Math.abs(v) >= 1e6 ? v.toExponential(2) : v.toFixed(d)));
        };
      }
      if (info.type === "bool") {
        axis.splits = () => [0, 1];
        axis.values = (u, splits) => splits.map((s) => (s === 1 ? "on" : s === 0 ? "off" : ""));
      } else if (info.type === "string") {
        axis.splits = () => (panel.cats[info.key] || []).map((_, k) => k);
        axis.values = (u, splits) => splits.map((s) => (panel.cats[info.key] || [])[s] ?? "");
      }
      axes.push(axis);
    }
    const units = info.units ? " " + info.units : "";
    series.push({
      label: info.key + (units ? ` [${info.units}]` : ""),
      scale,
      stroke: color(i),
      width: state ? 2 : 1.25,
      spanGaps: false,
      points: { show: false },
      paths: state ? uPlot.paths.stepped({ align: 1 }) : undefined,
      fill: state ? color(i) + "33" : undefined,
      value: (u, v) => {
        if (v === null || v === undefined) return "–";
        if (info.type === "bool") return v >= 0.5 ? "on" : "off";
        if (info.type === "string") return (panel.cats[info.key] || [])[v] ?? "–";
        return fmtNumber(v) + units;
      },
    });
  });
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
    hooks: hooks.uplot,
  };
}
