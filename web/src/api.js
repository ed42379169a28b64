// HTTP calls of the dashboard: JSON, the binary data frame, live events.
//
// The binary frame (GET /api/data?format=binary) is
//   8 bytes magic "SISOCKF1" | uint32 LE header length H | 4 zero bytes |
//   H bytes JSON header (padded to 8) | float64 LE arrays
// so arrays are viewed in place with Float64Array (no parsing).

export class ApiError extends Error {
  constructor(what, status, error, message, extra = {}) {
    super(`${what}: ${message}`);
    this.what = what;
    this.status = status;
    this.error = error;
    this.detail = message;
    this.extra = extra;
  }
}

async function failure(what, resp) {
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  if (body && body.error) {
    return new ApiError(what, resp.status, body.error, body.message, body);
  }
  return new ApiError(what, resp.status, "http_" + resp.status, resp.statusText || "request failed");
}

export async function getJSON(url, what) {
  let resp;
  try {
    resp = await fetch(url, { credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(what, 0, "network", "the web bridge did not answer (" + e.message + ")");
  }
  if (!resp.ok) throw await failure(what, resp);
  return resp.json();
}

export async function sendJSON(method, url, body, what) {
  let resp;
  try {
    resp = await fetch(url, {
      method, credentials: "same-origin",
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(what, 0, "network", "the web bridge did not answer (" + e.message + ")");
  }
  if (!resp.ok) throw await failure(what, resp);
  return resp.json();
}

const MAGIC = "SISOCKF1";

export function parseFrame(buf) {
  const bytes = new Uint8Array(buf, 0, 8);
  if (String.fromCharCode(...bytes) !== MAGIC) throw new Error("not a sisock frame");
  const dv = new DataView(buf);
  const hlen = dv.getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 16, hlen)));
  const base = 16 + hlen;
  const view = (off, len) => new Float64Array(buf, base + off * 8, len);
  const times = {};
  for (const [name, tl] of Object.entries(header.timelines)) times[name] = view(tl.offset, tl.length);
  const fields = {};
  for (const [name, f] of Object.entries(header.fields)) {
    fields[name] = {
      timeline: f.timeline,
      values: f.values ? f.values : view(f.offset, f.length),
    };
  }
  return { header, times, fields, bytes: buf.byteLength };
}

export async function getFrame(url, what, signal) {
  let resp;
  try {
    resp = await fetch(url, { credentials: "same-origin", signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(what, 0, "network", "the web bridge did not answer (" + e.message + ")");
  }
  if (!resp.ok) throw await failure(what, resp);
  return parseFrame(await resp.arrayBuffer());
}

export function dataUrl(node, fields, start, end, minStride, method, format = "binary") {
  const p = new URLSearchParams({ node, fields: fields.join(","), start: String(start), end: String(end), format });
  if (minStride) p.set("min_stride", String(minStride));
  if (method) p.set("method", method);
  return "api/data?" + p.toString();
}

// One EventSource for the whole page, multiplexed over the given nodes
// (a browser allows six connections per host, counted across its tabs).
// Handlers get (node, event, payload); events about the stream itself
// ("hello", "router", "error") get node null.
export function openLive(nodes, onEvent) {
  const es = new EventSource("api/live?nodes=" + nodes.map(encodeURIComponent).join(","));
  for (const ev of ["hello", "data", "gone", "missing", "added", "router", "dropped"]) {
    es.addEventListener(ev, (m) => {
      const d = JSON.parse(m.data);
      const node = ev === "data" || ev === "dropped" ? d.node : ev === "gone" || ev === "missing" || ev === "added" ? d.name : null;
      onEvent(node, ev, d);
    });
  }
  es.onerror = () => onEvent(null, "error", { readyState: es.readyState });
  return es;
}
