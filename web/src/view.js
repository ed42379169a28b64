// The whole view lives in the URL query, so a reload or a shared link
// restores it:
//   ?panels=node:f1,node:f2|node2:f3   panels separated by "|" (absent: a default view)
//   &range=1h                          a preset (15m 1h 1d 7d 30d 1y all)
//   &from=<unix s>&to=<unix s>         or an absolute range
//   &live=0                            live tail off (default on for presets)
//   &view=<name>                       the saved view this one was opened from

export const PRESETS = { "15m": 900, "1h": 3600, "1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "1y": 365 * 86400, all: null };

export function parseView(search) {
  const p = new URLSearchParams(search);
  const panels = (p.get("panels") || "")
    .split("|")
    .filter((s) => s)
    .map((s) => s.split(",").filter((x) => x.includes(":")).map((x) => {
      const i = x.indexOf(":");
      return { node: x.slice(0, i), field: x.slice(i + 1) };
    }));
  // no "panels" at all: the dashboard shows a default view; "panels=" is empty on purpose
  const view = { panels, chosen: p.has("panels"), range: "1h", from: null, to: null, live: p.get("live") !== "0", name: p.get("view") || null };
  const from = parseFloat(p.get("from"));
  const to = parseFloat(p.get("to"));
  if (isFinite(from) && isFinite(to) && to > from) {
    view.range = null;
    view.from = from;
    view.to = to;
  } else if (p.get("range") in PRESETS) {
    view.range = p.get("range");
  }
  return view;
}

export function viewQuery(view) {
  const p = new URLSearchParams();
  const panels = view.panels.map((fs) => fs.map((f) => `${f.node}:${f.field}`).join(",")).join("|");
  p.set("panels", panels);
  if (view.range) p.set("range", view.range);
  else {
    p.set("from", String(Math.round(view.from * 1000) / 1000));
    p.set("to", String(Math.round(view.to * 1000) / 1000));
  }
  if (!view.live) p.set("live", "0");
  if (view.name) p.set("view", view.name);
  return "?" + p.toString().replace(/%3A/g, ":").replace(/%2C/g, ",").replace(/%7C/g, "|");
}
