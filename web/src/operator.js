// Operator writes on the dashboard: sign-in, a points panel per writable node,
// the set dialog (old -> new, dry run, result and read-back) and the audit table.
//
// The bridge keeps the session in an HttpOnly cookie; the page holds only the
// session's CSRF token (from the sign-in answer or GET api/operator/session)
// and sends it in the X-Sisock-CSRF header of every POST. The secret typed in
// the sign-in form goes to the bridge once and is never kept here.
import { ApiError } from "./api.js";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else if (v !== false && v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};

const POLL_MS = 3000;
const AUDIT_ROWS = 50;

const O = {
  checked: false, // the session was asked for once
  authid: null,
  csrf: null,
  nodes: {}, // node -> {points, device_ok, down, message}
  readOnly: new Set(), // nodes that answered 404: no operator writes
  audit: [], // newest first
  dialog: null, // {node, point}
  timer: null,
};

export const operatorProbe = {
  get checked() { return O.checked; },
  get signedIn() { return O.authid !== null; },
  get authid() { return O.authid; },
  get nodes() { return JSON.parse(JSON.stringify(O.nodes)); },
  get audit() { return O.audit.slice(); },
};

// ---------------------------------------------------------------- HTTP
async function call(method, url, body, what) {
  const headers = {};
  if (method === "POST") {
    headers["content-type"] = "application/json";
    headers["x-sisock-csrf"] = url.endsWith("/signin") ? "signin" : (O.csrf || "");
  }
  let resp;
  try {
    resp = await fetch(url, { method, credentials: "same-origin", headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(what, 0, "network", "the web bridge did not answer (" + e.message + ")");
  }
  let doc = null;
  try { doc = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    if (resp.status === 401 && !url.endsWith("/signin")) signedOut();
    throw new ApiError(what, resp.status, doc && doc.error ? doc.error : "http_" + resp.status,
      doc && doc.message ? doc.message : resp.statusText, doc || {});
  }
  return doc;
}
const opUrl = (node, leaf) => `api/operator/${encodeURIComponent(node)}/${leaf}`;

function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16)); // works without a secure context
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---------------------------------------------------------------- formatting
function fmt(v, units) {
  if (v === null || v === undefined) return "—";
  const s = typeof v === "number" ? String(Math.round(v * 1e6) / 1e6) : String(v);
  return units ? `${s} ${units}` : s;
}
function limitsText(p) {
  const parts = [];
  if (p.allowed) parts.push("one of " + p.allowed.join(", "));
  if (p.min !== null || p.max !== null) parts.push(`${p.min ?? "−∞"} … ${p.max ?? "∞"}`);
  if (p.max_step !== null) parts.push(`step ≤ ${p.max_step}`);
  if (p.min_interval) parts.push(`every ≥ ${p.min_interval} s`);
  if (p.type === "bool") parts.push("true / false");
  return parts.join(", ") || "no limits";
}
const fmtT = (t) => new Date(t * 1000).toISOString().slice(0, 19).replace("T", " ");

// ---------------------------------------------------------------- session
function signedOut() {
  O.authid = null;
  O.csrf = null;
  O.nodes = {};
  O.audit = [];
  if (O.timer) { clearInterval(O.timer); O.timer = null; }
  if (O.dialog) closeDialog();
  render();
}

function signedIn(doc) {
  O.authid = doc.authid;
  O.csrf = doc.csrf;
  render();
  refresh();
  if (!O.timer) O.timer = setInterval(refresh, POLL_MS);
}

async function signIn(ev) {
  ev.preventDefault();
  const err = $("#op-signin-error");
  err.textContent = "";
  const authid = $("#op-authid").value.trim();
  const secret = $("#op-secret");
  try {
    const doc = await call("POST", "api/operator/signin", { authid, secret: secret.value }, "Sign-in");
    secret.value = "";
    $("#op-signin").close();
    signedIn(doc);
  } catch (e) {
    secret.value = "";
    err.textContent = e.detail || e.message;
  }
}

async function signOut() {
  try { await call("POST", "api/operator/signout", {}, "Sign-out"); } catch (_) { /* gone anyway */ }
  signedOut();
}

// ---------------------------------------------------------------- data
async function refresh() {
  if (!O.authid) return;
  let names = [];
  try {
    names = (await call("GET", "api/nodes", undefined, "Nodes")).map((n) => n.name);
  } catch (_) {
    names = Object.keys(O.nodes);
  }
  for (const n of Object.keys(O.nodes)) if (!names.includes(n)) names.push(n);
  // a node that offers no writes (404) is not asked again until it leaves the hub's list
  for (const n of [...O.readOnly]) if (!names.includes(n)) O.readOnly.delete(n);
  names = names.filter((n) => !O.readOnly.has(n));
  await Promise.all(names.map(async (node) => {
    try {
      const doc = await call("GET", opUrl(node, "points"), undefined, `Points of ${node}`);
      O.nodes[node] = { points: doc.points, device_ok: doc.device_ok, down: false, message: "" };
    } catch (e) {
      if (e.status === 404 && !O.nodes[node]) { O.readOnly.add(node); return; }
      if (O.nodes[node]) { O.nodes[node].down = true; O.nodes[node].message = e.detail || e.message; }
    }
  }));
  await loadAudit();
  render();
}

async function loadAudit() {
  const rows = [];
  await Promise.all(Object.keys(O.nodes).map(async (node) => {
    const kept = () => rows.push(...O.audit.filter((r) => r.node === node)); // as last read
    if (O.nodes[node].down) { kept(); return; }
    try {
      const recs = await call("GET", opUrl(node, "audit") + "?start=-86400&end=0", undefined, `Audit of ${node}`);
      for (const r of recs) rows.push({ node, ...r });
    } catch (_) { kept(); /* the node's panel says it is down */ }
  }));
  rows.sort((a, b) => b.t - a.t);
  O.audit = rows.slice(0, AUDIT_ROWS);
}

// ---------------------------------------------------------------- rendering
function render() {
  const bar = $("#op-bar");
  if (O.authid) {
    bar.replaceChildren(el("span", { id: "op-user", title: "signed in as an operator" }, "operator " + O.authid),
      el("button", { id: "op-signout", onclick: signOut }, "sign out"));
  } else {
    bar.replaceChildren(el("button", { id: "op-signin-open", title: "sign in with an operator account to change instruments", onclick: openSignIn }, "operator sign-in"));
  }
  const sec = $("#operator");
  if (!O.authid) { sec.replaceChildren(); sec.hidden = true; return; }
  sec.hidden = false;
  const panels = Object.entries(O.nodes).sort().map(([node, n]) => nodePanel(node, n));
  sec.replaceChildren(
    el("h2", {}, "Operator controls"),
    ...(panels.length ? panels : [el("p", { class: "empty" }, "no data node offers operator writes")]),
    auditTable());
}

function nodePanel(node, n) {
  const usable = !n.down && n.device_ok;
  const state = n.down ? `node down: ${n.message}` : n.device_ok ? "device answering" : "device not answering";
  const rows = Object.entries(n.points).sort().map(([name, p]) => {
    const ok = !n.down && p.ok;
    return el("tr", { "data-point": name, class: ok ? "" : "down" },
      el("td", { class: "op-name", title: p.description || name }, name),
      el("td", { class: "op-value" }, fmt(p.value, p.units)),
      el("td", { class: "op-limits" }, limitsText(p)),
      el("td", {}, el("button", { class: "op-set", disabled: !ok, title: ok ? "change this point" : "the node or its device is down", onclick: () => openDialog(node, name) }, "set…")));
  });
  return el("div", { class: "op-panel" + (usable ? "" : " down"), "data-node": node },
    el("div", { class: "op-head" }, el("span", { class: "op-node" }, node), el("span", { class: "op-state" }, state)),
    el("table", { class: "op-points" },
      el("thead", {}, el("tr", {}, el("th", {}, "point"), el("th", {}, "value"), el("th", {}, "limits"), el("th", {}, ""))),
      el("tbody", {}, ...rows)));
}

function auditTable() {
  const head = ["time (UTC)", "node", "who", "point", "old", "requested", "read back", "status", "reason"];
  return el("div", { class: "op-audit-box" },
    el("h3", {}, "Audit (last day, newest first)"),
    el("table", { id: "op-audit" },
      el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...O.audit.map((r) => el("tr", { class: "st-" + r.status },
        el("td", {}, fmtT(r.t)), el("td", {}, r.node), el("td", {}, r.caller_authid || "?"),
        el("td", {}, r.point || ""), el("td", {}, fmt(r.old)), el("td", {}, fmt(r.requested)),
        el("td", {}, fmt(r.readback)), el("td", {}, r.status + (r.dry_run ? " (dry run)" : "")),
        el("td", {}, r.reason || ""))))));
}

// ---------------------------------------------------------------- dialogs
function openSignIn() {
  $("#op-signin-error").textContent = "";
  $("#op-signin").showModal();
  $("#op-authid").focus();
}

function openDialog(node, point) {
  const p = O.nodes[node].points[point];
  O.dialog = { node, point, old: p.value };
  const d = $("#op-dialog");
  const input = p.type === "bool"
    ? el("select", { id: "op-new" }, el("option", { value: "true" }, "true"), el("option", { value: "false" }, "false"))
    : el("input", { id: "op-new", type: "number", step: "any", value: p.value ?? "" });
  if (p.type === "bool") input.value = p.value ? "false" : "true";
  d.replaceChildren(el("form", { method: "dialog", onsubmit: (e) => e.preventDefault() },
    el("h3", {}, `${node} · ${point}`),
    el("p", { class: "op-desc" }, p.description || ""),
    el("div", { class: "op-change" },
      el("span", { class: "op-old", title: "the value last read" }, fmt(p.value, p.units)),
      el("span", { class: "arrow" }, " → "),
      input, el("span", {}, p.units ? " " + p.units : "")),
    el("p", { class: "op-limits" }, "limits: " + limitsText(p)),
    el("label", {}, "reason ", el("input", { id: "op-reason", type: "text", maxlength: "200", placeholder: "why (for the audit log)" })),
    el("label", { title: "compare-and-set: refused (conflict) if someone changed it since it was read" },
      el("input", { id: "op-cas", type: "checkbox", checked: p.value !== null, disabled: p.value === null }),
      ` only if it is still ${fmt(p.value, p.units)}`),
    el("div", { class: "op-buttons" },
      el("button", { id: "op-dry-run", type: "button", onclick: () => submit(true) }, "dry run"),
      el("button", { id: "op-submit", type: "button", class: "primary", onclick: () => submit(false) }, "set"),
      el("button", { id: "op-close", type: "button", onclick: closeDialog }, "close")),
    el("div", { id: "op-result", role: "status" })));
  d.showModal();
}

function closeDialog() {
  O.dialog = null;
  const d = $("#op-dialog");
  if (d.open) d.close();
  refresh();
}

function parseValue(p) {
  const raw = $("#op-new").value;
  if (p.type === "bool") return raw === "true";
  if (raw.trim() === "") return null;
  const v = Number(raw);
  return Number.isFinite(v) ? v : null;
}

async function submit(dryRun) {
  const { node, point } = O.dialog;
  const p = O.nodes[node].points[point];
  const out = $("#op-result");
  const value = parseValue(p);
  if (value === null) { out.dataset.status = "bad_input"; out.textContent = "type a number"; return; }
  const body = { point, value, request_id: uuid(), dry_run: dryRun, reason: $("#op-reason").value };
  if ($("#op-cas").checked && O.dialog.old !== null) body.expected = O.dialog.old;
  for (const b of ["#op-dry-run", "#op-submit"]) $(b).disabled = true;
  out.dataset.status = "pending";
  out.textContent = dryRun ? "checking…" : "writing…";
  try {
    const r = await call("POST", opUrl(node, "set"), body, `Set ${node}.${point}`);
    out.dataset.status = r.status;
    const lines = [
      r.status === "dry_run_ok" ? "dry run passed: nothing written" : r.status === "applied" ? "applied" : "written, NOT verified",
      `${fmt(r.old, p.units)} → ${fmt(r.requested, p.units)}`,
    ];
    if (r.status !== "dry_run_ok") lines.push(`read back ${fmt(r.readback, p.units)}`);
    if (r.message) lines.push(r.message);
    out.replaceChildren(...lines.map((l) => el("div", {}, l)));
    if (r.status !== "dry_run_ok" && O.dialog) {
      // the point now holds what was read back: the next set from this dialog starts there
      const now = r.readback ?? r.requested;
      O.dialog.old = now;
      p.value = now;
      $("#op-dialog .op-old").textContent = fmt(now, p.units);
      const cas = $("#op-cas");
      if (cas && cas.parentElement) cas.parentElement.lastChild.textContent = ` only if it is still ${fmt(now, p.units)}`;
    }
  } catch (e) {
    out.dataset.status = e.error;
    out.replaceChildren(el("div", { class: "refused" }, `refused (${e.error})`), el("div", {}, e.detail || e.message));
  } finally {
    for (const b of ["#op-dry-run", "#op-submit"]) $(b).disabled = false;
  }
}

// ---------------------------------------------------------------- start
export async function startOperator() {
  const bar = el("span", { id: "op-bar" });
  $("#top").append(bar);
  const sign = el("dialog", { id: "op-signin" }, el("form", { onsubmit: signIn },
    el("h3", {}, "Operator sign-in"),
    el("p", { class: "hint" }, "An account made with: sisock credentials add NAME --role operator"),
    el("label", {}, "account ", el("input", { id: "op-authid", type: "text", autocomplete: "username", required: true })),
    el("label", {}, "secret ", el("input", { id: "op-secret", type: "password", autocomplete: "current-password", required: true })),
    el("div", { class: "op-buttons" },
      el("button", { id: "op-signin-submit", type: "submit", class: "primary" }, "sign in"),
      el("button", { type: "button", onclick: () => $("#op-signin").close() }, "cancel")),
    el("div", { id: "op-signin-error", role: "alert" })));
  document.body.append(sign, el("dialog", { id: "op-dialog" }));
  $("#op-dialog").addEventListener("close", () => { if (O.dialog) closeDialog(); });
  render();
  try {
    const doc = await call("GET", "api/operator/session", undefined, "Operator session");
    if (doc.signed_in) signedIn(doc);
  } catch (_) { /* an older bridge: no operator controls */ }
  O.checked = true;
}
