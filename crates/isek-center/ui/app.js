// The isek center dashboard: live membership from the change stream (stream.js), a
// virtualised, searchable table (table.js), plots (plots.js) and a node panel.
//
// The model: `nodes` maps id -> record; `allIds` is every id, sorted; `viewIds` is the
// ids matching the search, sorted (the same array as allIds when there is no search).
// An event updates the map and splices one id into or out of the sorted arrays
// (binary search); the table redraws only its visible rows, once per frame.

import { ChangeStream } from "./stream.js";
import { VirtualTable, insertSorted, removeSorted, search } from "./table.js";
import { History, drawLive, drawRates } from "./plots.js";

const ACTIVITY_ROWS = 60;
const FRESH_MS = 4000;
const SUMMARY_MS = 5 * 60 * 1000;
const LISTING_PATH = "/isek_center/available_nodes";

const $ = (id) => document.getElementById(id);

const nodes = new Map();
let allIds = [];
let viewIds = allIds;
let terms = [];
let selectedId = null;
let pageOpened = Date.now();
const history = new History();
const activity = []; // newest last, bounded
let activityDirty = false;
let summaryDirty = false;
let lease = { id: null, expiresAt: null, fetchedAt: 0, loading: false, error: "" };

// ---------------------------------------------------------------------------- model

/** A record from a node of the stream; `text` is what the search looks in. */
function record(node, previous, now) {
  const metadata = node.metadata && typeof node.metadata === "object" ? node.metadata : {};
  const metaText = JSON.stringify(metadata);
  return {
    id: node.node_id,
    host: String(node.host),
    port: node.port,
    metadata,
    metaText,
    text: `${node.node_id}\n${node.host}:${node.port}\n${metaText}`.toLowerCase(),
    joined: previous ? previous.joined : now,
    changed: now,
  };
}

function matches(rec) {
  for (const term of terms) if (!rec.text.includes(term)) return false;
  return true;
}

function onSnapshot(snapshot) {
  nodes.clear();
  const ids = Object.keys(snapshot);
  for (const id of ids) nodes.set(id, record(snapshot[id], null, null));
  ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  allIds = ids;
  applySearch();
  history.sample(nodes.size);
  if (selectedId !== null) showDetails(selectedId);
  updateCounts();
}

function onPut(node) {
  const now = Date.now();
  const id = node.node_id;
  const previous = nodes.get(id);
  const rec = record(node, previous, now);
  nodes.set(id, rec);
  if (!previous) insertSorted(allIds, id);
  if (viewIds !== allIds) {
    if (matches(rec)) insertSorted(viewIds, id);
    else removeSorted(viewIds, id);
  }
  history.count(previous ? "update" : "join", now);
  history.sample(nodes.size, now);
  log(previous ? "update" : "join", id, now);
  table.changed();
  if (id === selectedId) {
    lease.id = null; // a registration restarted the lease
    showDetails(id);
  }
  updateCounts();
}

function onDelete(id, reason) {
  const now = Date.now();
  if (!nodes.delete(id)) return;
  removeSorted(allIds, id);
  if (viewIds !== allIds) removeSorted(viewIds, id);
  const kind = reason === "expire" ? "expire" : "dereg";
  history.count(kind, now);
  history.sample(nodes.size, now);
  log(kind, id, now);
  table.changed();
  if (id === selectedId) showGone();
  updateCounts();
}

function applySearch() {
  const text = $("search").value.trim().toLowerCase();
  terms = text === "" ? [] : text.split(/\s+/);
  if (terms.length === 0) viewIds = allIds;
  else viewIds = allIds.filter((id) => matches(nodes.get(id)));
  table.setIds(viewIds);
  if (viewIds.length > 0 && table.viewport.scrollTop > viewIds.length * table.measure()) {
    table.viewport.scrollTop = 0;
  }
  updateCounts();
}

// ---------------------------------------------------------------------------- view

const table = new VirtualTable(
  { viewport: $("viewport"), spacer: $("spacer"), rows: $("rows"), empty: $("empty"), grid: $("grid") },
  fillRow,
  (id) => select(id),
);

function fillRow(id, cells, row) {
  const rec = nodes.get(id);
  if (!rec) return;
  cells[0].textContent = rec.id;
  cells[0].title = rec.id;
  cells[1].textContent = `${rec.host}:${rec.port}`;
  cells[2].textContent = summary(rec.metadata, rec.metaText);
  cells[2].title = rec.metaText;
  cells[3].textContent = rec.joined === null ? "before page" : clock(rec.joined);
  row.classList.toggle("fresh", rec.changed !== null && Date.now() - rec.changed < FRESH_MS);
}

/** A one-line summary of metadata: name and role first, then the rest as key=value. */
function summary(metadata, metaText) {
  const keys = Object.keys(metadata);
  if (keys.length === 0) return "—";
  const first = ["name", "role", "type", "version"].filter((k) => k in metadata);
  const scalar = (k) => metadata[k] === null || typeof metadata[k] !== "object";
  const others = keys.filter((k) => !first.includes(k)).sort();
  const rest = [...others.filter(scalar), ...others.filter((k) => !scalar(k))];
  const parts = [];
  for (const key of [...first, ...rest]) {
    const value = metadata[key];
    const text = typeof value === "string" ? value : JSON.stringify(value);
    parts.push(`${key}=${text.length > 40 ? `${text.slice(0, 39)}…` : text}`);
    if (parts.length >= 6) break;
  }
  const line = parts.join("  ");
  return line.length > 0 ? line : metaText;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
}

/** `42 s`, `3 min 05 s`, `2 h 04 min`. */
function duration(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor(s / 60) % 60).padStart(2, "0")} min`;
}

function plural(n, word) {
  return `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;
}

function updateCounts() {
  $("live-count").textContent = nodes.size.toLocaleString("en-US");
  $("matches").textContent =
    terms.length === 0
      ? plural(viewIds.length, "node")
      : `${viewIds.length.toLocaleString("en-US")} of ${plural(nodes.size, "node")} match`;
}

function updateSummary(now) {
  const sum = history.totals(SUMMARY_MS, now);
  $("joins-count").textContent = sum.join.toLocaleString("en-US");
  $("joins-sub").textContent = `${plural(sum.update, "update")} · renewals are not streamed`;
  $("leaves-count").textContent = (sum.dereg + sum.expire).toLocaleString("en-US");
  $("leaves-sub").textContent = `${sum.dereg.toLocaleString("en-US")} deregistered · ${sum.expire.toLocaleString("en-US")} expired`;
  const open = Math.floor((now - pageOpened) / 60000);
  $("live-plot-range").textContent = open >= 60 ? "last hour" : `since the page opened (${open} min)`;
  const net = sum.join - sum.dereg - sum.expire;
  $("live-sub").textContent = `${net >= 0 ? "+" : "−"}${Math.abs(net).toLocaleString("en-US")} in 5 min`;
}

function log(kind, id, now) {
  activity.push({ kind, id, at: now });
  summaryDirty = true;
  if (activity.length > ACTIVITY_ROWS) activity.splice(0, activity.length - ACTIVITY_ROWS);
  if (!activityDirty) {
    activityDirty = true;
    requestAnimationFrame(drawActivity);
  }
}

const ACTIVITY_WORDS = { join: "joined", update: "updated", dereg: "deregistered", expire: "expired" };

function drawActivity() {
  activityDirty = false;
  if (summaryDirty) {
    summaryDirty = false;
    updateSummary(Date.now());
  }
  const list = $("activity");
  const items = [];
  for (let i = activity.length - 1; i >= 0; i--) {
    const entry = activity[i];
    const li = document.createElement("li");
    li.className = entry.kind;
    const time = document.createElement("time");
    time.textContent = clock(entry.at);
    const id = document.createElement("button");
    id.type = "button";
    id.className = "link";
    id.textContent = entry.id;
    id.addEventListener("click", () => select(entry.id));
    const what = document.createElement("span");
    what.textContent = ACTIVITY_WORDS[entry.kind];
    li.append(time, id, what);
    items.push(li);
  }
  list.replaceChildren(...items);
}

// ---------------------------------------------------------------------------- details

function select(id) {
  selectedId = id;
  table.select(id);
  showDetails(id);
}

function showDetails(id) {
  const rec = nodes.get(id);
  $("details-empty").hidden = true;
  $("details-body").hidden = false;
  $("d-id").textContent = id;
  if (!rec) {
    showGone();
    return;
  }
  $("d-gone").hidden = true;
  $("d-addr").textContent = `${rec.host}:${rec.port}`;
  $("d-owner").textContent = "not available: the change stream does not carry owner keys";
  $("d-owner").className = "muted";
  $("d-joined").textContent = rec.joined === null ? "before this page opened" : clock(rec.joined);
  $("d-changed").textContent = rec.changed === null ? "before this page opened" : clock(rec.changed);
  drawCard(rec.metadata);
  drawMetadata(rec.metadata);
  $("d-raw").textContent = JSON.stringify(rec.metadata, null, 2);
  if (lease.id !== id) fetchLease(id);
  drawLease();
}

function showGone() {
  $("d-gone").hidden = false;
  lease = { id: selectedId, expiresAt: null, fetchedAt: Date.now(), loading: false, error: "left" };
  drawLease();
}

function drawMetadata(metadata) {
  const rows = [];
  for (const key of Object.keys(metadata).sort()) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = key;
    const td = document.createElement("td");
    const value = metadata[key];
    td.textContent = typeof value === "string" ? value : JSON.stringify(value);
    tr.append(th, td);
    rows.push(tr);
  }
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.className = "muted";
    td.textContent = "no metadata";
    tr.append(td);
    rows.push(tr);
  }
  $("d-meta").replaceChildren(...rows);
}

/** The A2A-style agent card in the metadata: `agent_card` (or `card`) when it is an
 * object, else the metadata itself when it has card fields (name, description, skills). */
function agentCard(metadata) {
  for (const key of ["agent_card", "agentCard", "card"]) {
    if (metadata[key] && typeof metadata[key] === "object" && !Array.isArray(metadata[key])) {
      return metadata[key];
    }
  }
  if ("name" in metadata || "description" in metadata || Array.isArray(metadata.skills)) return metadata;
  return null;
}

function drawCard(metadata) {
  const box = $("d-card");
  const card = agentCard(metadata);
  if (!card) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "none: the metadata has no agent card fields";
    box.replaceChildren(p);
    return;
  }
  const parts = [];
  const title = document.createElement("div");
  title.className = "card-title";
  title.textContent = typeof card.name === "string" ? card.name : "(unnamed agent)";
  parts.push(title);
  if (card.version !== undefined) {
    const v = document.createElement("span");
    v.className = "badge";
    v.textContent = `v${card.version}`;
    title.append(" ", v);
  }
  if (typeof card.description === "string") {
    const p = document.createElement("p");
    p.textContent = card.description;
    parts.push(p);
  }
  if (typeof card.url === "string") {
    const p = document.createElement("p");
    p.className = "mono";
    p.textContent = card.url;
    parts.push(p);
  }
  if (card.capabilities && typeof card.capabilities === "object") {
    const caps = document.createElement("div");
    caps.className = "chips";
    for (const [key, on] of Object.entries(card.capabilities)) {
      const chip = document.createElement("span");
      chip.className = on ? "chip on" : "chip";
      chip.textContent = key;
      caps.append(chip);
    }
    parts.push(caps);
  }
  if (Array.isArray(card.skills) && card.skills.length > 0) {
    const ul = document.createElement("ul");
    ul.className = "skills";
    for (const skill of card.skills.slice(0, 20)) {
      const li = document.createElement("li");
      const name = document.createElement("b");
      name.textContent = typeof skill === "string" ? skill : String(skill.name ?? skill.id ?? "skill");
      li.append(name);
      if (skill && typeof skill.description === "string") li.append(` — ${skill.description}`);
      ul.append(li);
    }
    parts.push(ul);
  }
  box.replaceChildren(...parts);
}

/** Lease time left is not in the change stream: it is read once from the listing
 * (`expires_at`) when a node is opened, then counted down here; at zero the listing
 * is read again (the node has probably renewed). */
async function fetchLease(id) {
  lease = { id, expiresAt: null, fetchedAt: Date.now(), loading: true, error: "" };
  drawLease();
  try {
    const response = await fetch(LISTING_PATH, { cache: "no-store" });
    const body = await response.json();
    if (lease.id !== id) return;
    const entry = body && body.data && body.data.available_nodes ? body.data.available_nodes[id] : undefined;
    lease.loading = false;
    if (entry && typeof entry.expires_at === "number") lease.expiresAt = entry.expires_at * 1000;
    else lease.error = "not in the listing";
  } catch (error) {
    if (lease.id !== id) return;
    lease.loading = false;
    lease.error = `could not read the listing (${error.message})`;
  }
  drawLease();
}

function drawLease() {
  const out = $("d-lease");
  if (lease.error === "left") {
    out.textContent = "ended";
    return;
  }
  if (lease.loading) {
    out.textContent = "reading…";
    return;
  }
  if (lease.error) {
    out.textContent = lease.error;
    return;
  }
  if (lease.expiresAt === null) {
    out.textContent = "—";
    return;
  }
  const left = Math.max(0, (lease.expiresAt - Date.now()) / 1000);
  out.textContent = `${duration(left)} left (expires ${clock(lease.expiresAt)})`;
  if (left <= 0 && selectedId !== null && nodes.has(selectedId) && Date.now() - lease.fetchedAt > 5000) {
    fetchLease(selectedId);
  }
}

// ---------------------------------------------------------------------------- wiring

function setStatus(state, detail) {
  const conn = $("conn");
  conn.dataset.state = state;
  const words = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", resyncing: "re-listing…" };
  $("conn-text").textContent = words[state] || state;
  conn.title = detail || "";
}

const stream = new ChangeStream({
  onHello(hello) {
    $("epoch").textContent = `epoch ${hello.epoch}`;
  },
  onSnapshot(snapshot, revision) {
    onSnapshot(snapshot);
    $("revision").textContent = `revision ${revision}`;
  },
  onPut(node, revision) {
    onPut(node);
    $("revision").textContent = `revision ${revision}`;
  },
  onDelete(id, reason, revision) {
    onDelete(id, reason);
    $("revision").textContent = `revision ${revision}`;
  },
  onStatus: setStatus,
});

let searchTimer = 0;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(applySearch, nodes.size > 20000 ? 200 : 60);
});
$("search").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && viewIds.length > 0) select(viewIds[0]);
  if (event.key === "ArrowDown") $("viewport").focus();
});
$("d-close").addEventListener("click", () => {
  selectedId = null;
  lease.id = null;
  table.select(null);
  $("details-body").hidden = true;
  $("details-empty").hidden = false;
});
$("d-lease-refresh").addEventListener("click", () => {
  if (selectedId !== null && nodes.has(selectedId)) fetchLease(selectedId);
});

function tick() {
  const now = Date.now();
  history.sample(nodes.size, now);
  updateSummary(now);
  drawLive($("live-plot"), history, now);
  drawRates($("rate-plot"), history, now);
  if (selectedId !== null) drawLease();
  table.changed(); // fades the "fresh" highlight of recent joins
}

pageOpened = Date.now();
tick();
setInterval(tick, 1000);
window.addEventListener("resize", tick);
stream.start();

// For tests and the curious: the model, read-only by convention.
window.isekDashboard = {
  get size() {
    return nodes.size;
  },
  get revision() {
    return stream.revision;
  },
  get shown() {
    return viewIds.length;
  },
  has(id) {
    return search(allIds, id) >= 0;
  },
};
