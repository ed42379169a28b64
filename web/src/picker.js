// The field picker's model, kept apart from the DOM: which nodes and fields
// the picker shows for a search, and a queue that loads nodes' field lists a
// few at a time. With hundreds of nodes the page shows their names at once,
// loads fields in the background, and renders at most MAX_ROWS rows.

// Below this many nodes every node starts expanded (all fields visible).
export const EXPAND_ALL_NODES = 12;
// Most rows (node headers + fields) one render puts in the page.
export const MAX_ROWS = 400;

// Lower-case words of a search; every word must match.
export function words(query) {
  return query.trim().toLowerCase().split(/\s+/).filter(Boolean);
}

// Matched nodes up to which a search expands every one of them.
export const EXPAND_FEW = 3;

// What the picker shows.
//   nodes:  [{name, description}]            as the hub lists them
//   fields: {node: {field: info}}            field lists loaded so far
//   query:  the search box's text
//   open:   Set of nodes the user expanded
//   closed: Set of nodes the user collapsed (wins over every other rule)
// Returns {groups: [{node, expanded, loaded, fields: [[name, info]], total}],
//          matched, hidden, waiting}: `hidden` matched nodes left out past
// `maxRows` rows; `waiting` nodes whose fields are not loaded yet (a
// search may match them once they are).
export function pickerModel(nodes, fields, query, open, closed = new Set(), maxRows = MAX_ROWS) {
  const ws = words(query);
  const hits = [];
  let waiting = 0;
  for (const n of nodes) {
    const known = fields[n.name];
    if (!known) waiting++;
    const list = known ? Object.entries(known).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)) : [];
    if (!ws.length) {
      hits.push({ node: n, known, list, shown: list, byField: false });
      continue;
    }
    const head = `${n.name} ${n.description || ""}`.toLowerCase();
    const nodeHit = ws.every((w) => head.includes(w));
    // a field matches when each word is in "node:field description units" or the node's own text
    const shown = list.filter(([f, info]) => {
      const text = `${n.name}:${f} ${info.description || ""} ${info.units || ""}`.toLowerCase();
      return ws.every((w) => text.includes(w) || head.includes(w));
    });
    if (!nodeHit && shown.length === 0) continue;
    hits.push({ node: n, known, list, shown, byField: shown.length > 0 && shown.length < list.length || !nodeHit });
  }
  const few = ws.length > 0 && hits.length <= EXPAND_FEW;
  const all = nodes.length <= EXPAND_ALL_NODES;
  const groups = [];
  let rows = 0, hidden = 0;
  for (const h of hits) {
    const name = h.node.name;
    const expanded = !closed.has(name) && (all || few || h.byField || open.has(name));
    const cost = 1 + (expanded ? h.shown.length : 0);
    if (rows + cost > maxRows && groups.length) { hidden++; continue; }
    rows += cost;
    groups.push({ node: h.node, expanded, loaded: !!h.known, fields: expanded ? h.shown : [], total: h.list.length });
  }
  return { groups, matched: hits.length, hidden, waiting };
}

// Loads field lists with at most `parallel` requests at once (the browser
// has six connections per host, one of them held by the live stream);
// `first()` puts nodes at the head of the queue.
export class FieldQueue {
  constructor(load, parallel = 2) {
    this.load = load; // async (node) => false when it failed
    this.parallel = parallel;
    this.queue = [];
    this.running = 0;
    this.pending = new Map(); // node -> Promise
  }

  // Load `nodes` (those not loaded or queued yet); resolves when they are.
  want(nodes, urgent = false) {
    const out = [];
    for (const n of nodes) {
      if (!this.pending.has(n)) {
        let done;
        const p = new Promise((r) => { done = r; });
        this.pending.set(n, p);
        const job = { node: n, done };
        if (urgent) this.queue.unshift(job); else this.queue.push(job);
      } else if (urgent) {
        const i = this.queue.findIndex((j) => j.node === n);
        if (i > 0) this.queue.unshift(...this.queue.splice(i, 1));
      }
      out.push(this.pending.get(n));
    }
    this.pump();
    return Promise.all(out);
  }

  // Forget a node (it left): a later want() loads it again.
  forget(node) {
    this.queue = this.queue.filter((j) => j.node !== node || (j.done(), false));
    this.pending.delete(node);
  }

  get waiting() { return this.queue.length + this.running; }

  pump() {
    while (this.running < this.parallel && this.queue.length) {
      const job = this.queue.shift();
      this.running++;
      Promise.resolve(this.load(job.node)).catch(() => false).then((ok) => {
        if (ok === false) this.pending.delete(job.node); // failed: a later want() asks again
        this.running--;
        job.done();
        this.pump();
      });
    }
  }
}
