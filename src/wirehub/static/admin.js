// The wirehub admin page: a client of /admin/ws built on wirehub.js.
// Every process of the hub reports itself about once a second; this page
// keeps the latest two reports of each to show rates. Text from the hub
// (room names, peer info) is only ever set as textContent.

import { connect } from "/wirehub.js";

const KEY = "wirehub-admin-key"; // sessionStorage: gone when the tab closes
const $ = (id) => document.getElementById(id);

const nodes = new Map(); // node name -> { now, before }
let client = null;
let here = null; // the node this page is connected to
let found = null; // the peer last looked up

function text(parent, tag, value, className) {
  const element = document.createElement(tag);
  element.textContent = value;
  if (className) element.className = className;
  parent.append(element);
  return element;
}

function number(value) {
  return Math.round(value).toLocaleString("en");
}

function rate(node, counter) {
  const { now, before } = node;
  if (!before || now.time <= before.time) return 0;
  return Math.max(0, (now.stats[counter] - before.stats[counter]) / (now.time - before.time));
}

function sum(values) {
  return Object.values(values).reduce((a, b) => a + b, 0);
}

function uptime(seconds) {
  if (seconds < 120) return `${Math.round(seconds)}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  return `${Math.round(seconds / 3600)}h`;
}

function setStatus(state, message) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = message;
}

// -- rendering ----------------------------------------------------------------------

function render() {
  const list = [...nodes.values()].sort((a, b) => a.now.node.localeCompare(b.now.node));
  const body = $("nodes").tBodies[0];
  body.replaceChildren();
  const totals = { connections: 0, in: 0, deliveries: 0, slow: 0 };
  for (const node of list) {
    const r = node.now;
    const row = body.insertRow();
    row.dataset.node = r.node;
    text(row, "td", r.node + (r.node === here ? " (this page)" : ""), "mono");
    text(row, "td", `${r.host} / ${r.pid}`);
    text(row, "td", r.status, `badge ${r.status}`);
    text(row, "td", `${r.broker.broker} ${r.broker.state ?? (r.broker.ok ? "ok" : "down")}`);
    const kinds = Object.entries(r.connections).filter(([, n]) => n > 0);
    text(row, "td", kinds.map(([kind, n]) => `${n} ${kind}`).join(", ") || "0");
    text(row, "td", number(r.rooms));
    text(row, "td", number(rate(node, "messages_in")));
    text(row, "td", number(rate(node, "messages_out") + rate(node, "deliveries")));
    text(row, "td", number(rate(node, "deliveries")));
    text(row, "td", number(r.stats.slow_consumers));
    text(row, "td", number(r.stats.gaps), r.stats.gaps > 0 ? "warn" : "");
    const refused = ["refused_origin", "refused_capacity", "refused_rate", "refused_auth"];
    text(row, "td", number(refused.reduce((n, key) => n + r.stats[key], 0)));
    text(row, "td", uptime(r.time - r.started));
    totals.connections += sum(r.connections);
    totals.in += rate(node, "messages_in");
    totals.deliveries += rate(node, "deliveries");
    totals.slow += r.stats.slow_consumers;
  }
  $("total-nodes").textContent = number(list.length);
  $("total-connections").textContent = number(totals.connections);
  $("total-in").textContent = number(totals.in);
  $("total-deliveries").textContent = number(totals.deliveries);
  $("total-slow").textContent = number(totals.slow);
  renderRooms(list);
}

function renderRooms(list) {
  const rooms = new Map(); // room -> { members, nodes }
  let complete = true; // every node listed all its rooms (not only its largest)
  let most = 0;
  for (const { now } of list) {
    complete &&= now.top_rooms.length === now.rooms;
    most = Math.max(most, now.rooms);
    for (const [room, members] of now.top_rooms) {
      const entry = rooms.get(room) ?? { members: 0, nodes: 0 };
      entry.members += members;
      entry.nodes += 1;
      rooms.set(room, entry);
    }
  }
  const count = Math.max(rooms.size, most);
  $("total-rooms").textContent = complete ? number(count) : `≥ ${number(count)}`;
  const body = $("rooms").tBodies[0];
  body.replaceChildren();
  const sorted = [...rooms.entries()].sort((a, b) => b[1].members - a[1].members);
  for (const [room, entry] of sorted.slice(0, 50)) {
    const row = body.insertRow();
    text(row, "td", room, "mono");
    text(row, "td", number(entry.members));
    text(row, "td", number(entry.nodes));
  }
}

function keep(report) {
  const known = nodes.get(report.node);
  nodes.set(report.node, { now: report, before: known?.now ?? null });
}

// -- the connection -------------------------------------------------------------------

function start(key) {
  client = connect("/admin/ws", {
    token: () => key,
    tokenIn: "message",
    reconnect: { initialDelay: 500, maxDelay: 5000 },
  });
  client.on("connect", async () => {
    setStatus("open", "live");
    $("login").hidden = true;
    $("app").hidden = false;
    sessionStorage.setItem(KEY, key);
    const snapshot = await client.call("snapshot");
    here = snapshot.node;
    nodes.clear();
    for (const report of snapshot.nodes) keep(report);
    render();
  });
  client.on("report", (report) => {
    keep(report);
    render();
  });
  client.on("gone", ({ node }) => {
    nodes.delete(node);
    render();
  });
  client.on("reconnecting", () => setStatus("reconnecting", "reconnecting…"));
  client.on("disconnect", (info) => {
    if (info.reconnect) return;
    setStatus("closed", "not connected");
    sessionStorage.removeItem(KEY);
    $("app").hidden = true;
    $("login").hidden = false;
    const error = $("login-error");
    error.hidden = false;
    error.textContent = info.code === 4001 ? "Wrong key." : `Closed (${info.code}).`;
  });
}

// -- the forms --------------------------------------------------------------------------

function show(element, message, ok = true) {
  element.hidden = false;
  element.className = ok ? "result" : "result error";
  element.textContent = message;
}

function showPeer(peer) {
  const list = $("peer");
  list.replaceChildren();
  list.hidden = !peer;
  $("peer-actions").hidden = !peer;
  if (!peer) return;
  const fields = [
    ["node", peer.node],
    ["client", peer.client ?? "-"],
    ["transport", peer.transport],
    ["user", peer.user ?? "-"],
    ["rooms", peer.rooms.join(", ") || "-"],
    ["info", JSON.stringify(peer.info)],
    ["unsent bytes", number(peer.buffered)],
    ["user agent", peer.user_agent ?? "-"],
  ];
  for (const [name, value] of fields) {
    text(list, "dt", name);
    text(list, "dd", value);
  }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  $("login-error").hidden = true;
  setStatus("connecting", "connecting…");
  start($("key").value);
});

$("lookup").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = $("peer-id").value.trim();
  const answer = await client.call("lookup", { id });
  found = answer.found ? answer.peer : null;
  showPeer(found);
  show($("peer-result"), found ? `found on node ${found.node}` : "no such peer", !!found);
});

$("disconnect").addEventListener("click", async () => {
  if (!found) return;
  const reconnect = $("peer-reconnect").checked;
  const answer = await client.call("disconnect_peer", { id: found.id, reconnect });
  show($("peer-result"), answer.closed ? "disconnected" : "no such peer", answer.closed);
  found = null;
  showPeer(null);
});

$("emit").addEventListener("submit", async (event) => {
  event.preventDefault();
  let data;
  try {
    data = JSON.parse($("emit-data").value || "null");
  } catch (error) {
    show($("emit-result"), `data is not JSON: ${error.message}`, false);
    return;
  }
  try {
    const room = $("emit-room").value;
    const answer = await client.call("emit", { room, event: $("emit-event").value, data });
    const where = answer.offset === null ? "" : ` at offset ${answer.offset}`;
    show($("emit-result"), `sent to ${room}${where}`);
  } catch (error) {
    show($("emit-result"), error.message, false);
  }
});

const remembered = sessionStorage.getItem(KEY);
if (remembered) start(remembered);
