// wirehub chat: the page of examples/chat/app.py, built on /wirehub.js only.
//
// Server events used (see app.py): "say" → room event "message" (the sender
// gets it too), "typing" → "typing" for the other members, "rooms".
// Everything shown comes from the network and is untrusted: it is only ever
// put in the page with textContent, never innerHTML.

import { connect } from "/wirehub.js";

const HISTORY = 50; // messages replayed when joining a room
const TYPING_EVERY = 2000; // ms: send "typing" at most this often while typing
const TYPING_FOR = 3000; // ms: how long a "typing" notice is shown
const GROUP_WITHIN = 5 * 60; // s: consecutive messages of one author share a header
const NAME_KEY = "wirehub-chat:name";

const $ = (id) => document.getElementById(id);

/** Per-room state: name → { joined, loading, messages, members, typing, unread }. */
const rooms = new Map();
let serverRooms = {}; // name → member count, from the "rooms" call
let active = null;
let me = "";
let hub = null;
let everConnected = false; // "cannot connect" until the first welcome, "connection lost" after
let lastTyping = 0;
const myCids = new Set(); // ids of the messages this page sent

function room(name) {
  if (!rooms.has(name)) {
    rooms.set(name, {
      name, joined: false, loading: false, messages: [],
      members: new Map(), typing: new Map(), unread: 0,
    });
  }
  return rooms.get(name);
}

// -- start: nickname, then connect ------------------------------------------------

function start(name) {
  me = name;
  $("welcome").hidden = true;
  $("app").hidden = false;
  $("me-name").textContent = me;
  paintAvatar($("me-avatar"), me);

  hub = connect(`/ws?name=${encodeURIComponent(me)}`);
  window.hub = hub; // for the browser console (and the tests)
  hub.on("connect", () => { everConnected = true; renderStatus(); refreshRooms(); measureLatency(); });
  hub.on("reconnecting", ({ attempt }) => {
    renderStatus(attempt);
    if (!everConnected && attempt === 1) checkLogin();
  });
  hub.on("disconnect", ({ code, reason, reconnect }) => {
    renderStatus();
    if (!reconnect) showBanner(`Disconnected (${code}${reason ? ": " + reason : ""}). Reload to try again.`, true);
  });
  hub.on("reconnect", onReconnect);
  hub.on("error", (error) => note(active, `Error: ${error.message}`, "warn"));
  hub.on("presence", onPresence);
  hub.on("gap", onGap);
  hub.on("message", onMessage);
  hub.on("typing", onTyping);

  const initial = decodeURIComponent(location.hash.slice(1)) || "lobby";
  enter(initial);
  setInterval(pruneTyping, 500);
  setInterval(refreshRooms, 10000);
  setInterval(measureLatency, 5000);
}

// -- rooms ---------------------------------------------------------------------

async function enter(name) {
  const r = room(name);
  select(name);
  if (r.joined) return;
  r.joined = true;
  r.loading = true;
  r.messages = r.messages.filter((m) => m.state === "pending");
  render();
  try {
    const ack = await hub.join(name, { history: HISTORY });
    setMembers(r, ack.members);
  } catch (error) {
    r.joined = false;
    note(name, `Could not join: ${error.message}`, "warn");
  } finally {
    r.loading = false;
    render();
    refreshRooms();
  }
}

async function leave(name) {
  const r = room(name);
  r.joined = false;
  r.messages = [];
  r.members.clear();
  r.typing.clear();
  const left = hub.leave(name).catch(() => {}); // sent now, before any join below
  if (active === name) {
    const other = [...rooms.values()].find((x) => x.joined);
    enter(other ? other.name : "lobby");
  }
  render();
  await left;
  refreshRooms();
}

function select(name) {
  active = name;
  room(name).unread = 0;
  history.replaceState(null, "", `#${encodeURIComponent(name)}`);
  document.title = `#${name} · wirehub chat`;
  $("text").placeholder = `Message #${name}`;
  $("app").classList.remove("show-rooms", "show-members");
  $("scrim").hidden = true;
  render({ scroll: true });
}

async function refreshRooms() {
  if (!hub || hub.state !== "open") return;
  try {
    serverRooms = await hub.call("rooms");
    renderRooms();
  } catch {
    // disconnected meanwhile: the next connect refreshes
  }
}

let refreshTimer = null;

function refreshRoomsSoon() {
  // Coalesce: a burst of joins and leaves costs one "rooms" call.
  if (refreshTimer === null) {
    refreshTimer = setTimeout(() => { refreshTimer = null; refreshRooms(); }, 500);
  }
}

function setMembers(r, members) {
  r.members.clear();
  for (const m of members || []) r.members.set(m.id, nameOf(m));
}

function nameOf(member) {
  return (member.info && member.info.name) || "anonymous";
}

// -- events from the server ---------------------------------------------------------

function onMessage(message, meta) {
  const r = rooms.get(meta.room);
  if (!r || !r.joined) return;
  const item = {
    kind: "message", from: message.from, text: message.text, ts: message.ts,
    cid: message.cid || null, state: "sent",
    mine: myCids.has(message.cid) || message.from === me,
  };
  const index = item.cid ? r.messages.findIndex((m) => m.cid === item.cid) : -1;
  if (index >= 0) r.messages[index] = item; // our "sending…" copy, now confirmed
  else r.messages.push(item);
  for (const [peer, t] of r.typing) if (t.name === message.from) r.typing.delete(peer);
  if (r.name !== active && !r.loading && index < 0) r.unread += 1;
  render();
}

function onTyping({ room: name, from, peer }) {
  const r = rooms.get(name);
  if (!r || !r.joined) return;
  r.typing.set(peer, { name: from, until: Date.now() + TYPING_FOR });
  renderTyping();
}

function onPresence({ room: name, joined, left }) {
  const r = rooms.get(name);
  if (!r || !r.joined) return;
  if (joined) {
    r.members.set(joined.id, nameOf(joined));
    note(name, `${nameOf(joined)} joined`);
  }
  if (left) {
    r.members.delete(left.id);
    r.typing.delete(left.id);
    note(name, `${nameOf(left)} left`);
  }
  render();
  refreshRoomsSoon(); // member counts changed
}

function onReconnect({ acks }) {
  for (const [name, ack] of Object.entries(acks)) setMembers(room(name), ack.members);
  renderStatus();
  render();
}

function onGap({ room: name }) {
  // Messages of this room may never arrive (the server could not replay
  // them): say so where they are missing, keep what is shown, and let the
  // user reload the room's last messages.
  const r = rooms.get(name);
  if (!r || !r.joined || r.messages.at(-1)?.kind === "gap") return;
  r.messages.push({ kind: "gap" });
  render();
}

async function reload(name) {
  const r = room(name);
  r.messages = r.messages.filter((m) => m.state === "pending" || m.state === "failed");
  r.loading = true;
  render();
  try {
    setMembers(r, (await hub.join(name, { history: HISTORY })).members);
  } catch (error) {
    note(name, `Could not reload: ${error.message}`, "warn");
  } finally {
    r.loading = false;
    render();
  }
}

// -- sending ---------------------------------------------------------------------

function send(text) {
  const r = room(active);
  const cid = Math.random().toString(36).slice(2) + Date.now().toString(36);
  myCids.add(cid);
  const item = { kind: "message", from: me, text, ts: Date.now() / 1000, cid, state: "pending", mine: true };
  r.messages.push(item);
  lastTyping = 0;
  render({ scroll: true });
  hub.call("say", { room: r.name, text, cid }).then(
    () => {
      if (item.state === "pending") item.state = "sent";
      render();
    },
    (error) => {
      if (r.messages.includes(item)) {
        item.state = "failed";
        item.error = error.message;
        render();
      }
    },
  );
}

function typing() {
  const now = Date.now();
  if (!$("text").value.trim() || now - lastTyping < TYPING_EVERY) return;
  if (hub.state !== "open") return; // a stale "typing" is not worth queueing
  lastTyping = now;
  hub.emit("typing", { room: active });
}

async function measureLatency() {
  if (hub.state !== "open") return;
  try {
    $("latency").textContent = `${Math.max(1, Math.round(await hub.ping()))} ms`;
  } catch {
    $("latency").textContent = "";
  }
}

// -- rendering -----------------------------------------------------------------------

function render({ scroll = false } = {}) {
  renderRooms();
  renderMessages(scroll);
  renderMembers();
  renderTyping();
}

function renderStatus(attempt) {
  const state = hub.state;
  const pill = $("status");
  pill.dataset.state = state;
  // Over the HTTP fallback (WebSocket blocked on the way, or missing) the pill says so.
  const open = hub.transport && hub.transport !== "websocket" ? "connected (HTTP fallback)" : "connected";
  pill.textContent = { open, connecting: "connecting…", reconnecting: "reconnecting…", closed: "offline" }[state];
  pill.title = state === "open" ? `transport: ${hub.transport}` : "";
  if (state === "reconnecting") {
    const retry = attempt > 1 ? ` (attempt ${attempt})` : "";
    // A page that never connected has not lost anything: say it cannot connect.
    showBanner(everConnected ? `Connection lost. Reconnecting…${retry}` : `Cannot connect to the server. Retrying…${retry}`);
  } else if (state === "open") {
    $("banner").hidden = true;
  }
  if (state !== "open") $("latency").textContent = "";
}

/** Signed-token mode (the hub has /me): a refused handshake may just mean "log in first". */
async function checkLogin() {
  let response;
  try {
    response = await fetch("/me", { credentials: "same-origin" });
  } catch {
    return; // the server is down: "Cannot connect" says it
  }
  if (response.status !== 401 || everConnected) return;
  hub.close();
  showBanner("You are not logged in, or your login expired.", true);
  const link = el("a", "", "Log in");
  link.href = "/login";
  $("banner-text").append(" ", link);
}

function showBanner(text, offline = false) {
  $("banner-text").textContent = text;
  $("banner").classList.toggle("offline", offline);
  $("banner").hidden = false;
}

function renderRooms() {
  const joined = [...rooms.values()].filter((r) => r.joined).map((r) => r.name);
  const others = Object.keys(serverRooms).filter((name) => !joined.includes(name)).sort();
  const list = $("rooms");
  list.replaceChildren(...[...joined, ...others].map((name) => {
    const r = room(name);
    const li = el("li", r.joined ? "joined" : "");
    li.classList.toggle("active", name === active);
    li.dataset.room = name;
    const button = el("button", "room");
    button.type = "button";
    button.append(el("span", "name", name));
    if (r.unread) button.append(el("span", "unread", String(r.unread)));
    const count = r.joined ? r.members.size : serverRooms[name];
    if (count) button.append(el("span", "count", String(count)));
    button.onclick = () => enter(name);
    li.append(button);
    if (r.joined && joined.length > 1) {
      li.classList.add("leavable");
      const x = el("button", "leave");
      x.type = "button";
      x.title = `Leave #${name}`;
      x.setAttribute("aria-label", `Leave #${name}`);
      x.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18"/></svg>';
      x.onclick = () => leave(name);
      li.append(x);
    }
    return li;
  }));
}

function renderMessages(scroll) {
  const r = room(active);
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const items = [];
  let previous = null;
  for (const m of r.messages) {
    if (m.kind === "note" || m.kind === "gap") {
      items.push(m.kind === "gap" ? gapItem(r.name) : el("li", `note ${m.tone || ""}`, m.text));
      previous = null;
      continue;
    }
    const first = !previous || previous.from !== m.from || m.ts - previous.ts > GROUP_WITHIN;
    items.push(messageItem(m, first));
    previous = m;
  }
  if (!items.length) {
    items.push(el("li", "empty", r.loading ? "Loading…" : `No messages in #${r.name} yet. Say hi!`));
  }
  box.replaceChildren(...items);
  if (scroll || atBottom) box.scrollTop = box.scrollHeight;
  $("room-name").textContent = `#${r.name}`;
}

function gapItem(name) {
  const li = el("li", "note warn gap", "Some messages may be missing — ");
  const button = el("button", "link", "reload");
  button.type = "button";
  button.onclick = () => reload(name);
  li.append(button);
  return li;
}

function messageItem(m, first) {
  const li = el("li", "message");
  li.classList.toggle("first", first);
  li.classList.toggle("mine", m.mine);
  li.classList.toggle("pending", m.state === "pending");
  li.classList.toggle("failed", m.state === "failed");
  const avatar = el("span", "avatar");
  paintAvatar(avatar, m.from);
  const meta = el("div", "meta");
  meta.append(el("span", "author", m.from), el("time", "time", clock(m.ts)));
  if (m.state === "pending") meta.append(el("span", "state", "sending…"));
  const bubble = el("div", "bubble", m.text);
  if (m.state === "failed") bubble.title = `Not sent: ${m.error}`;
  li.append(avatar, meta, bubble);
  return li;
}

function renderMembers() {
  const r = room(active);
  const mine = hub.id;
  const members = [...r.members].sort(([a, x], [b, y]) =>
    (b === mine) - (a === mine) || x.localeCompare(y));
  $("members").replaceChildren(...members.map(([id, name]) => {
    const li = el("li", id === mine ? "me" : "");
    const avatar = el("span", "avatar");
    paintAvatar(avatar, name);
    li.append(avatar, el("span", "name", name));
    return li;
  }));
  const count = r.members.size;
  $("member-count").textContent = count ? `· ${count}` : "";
  $("room-count").textContent = count ? `${count} online` : "";
}

function renderTyping() {
  const r = active && rooms.get(active);
  const names = r ? [...new Set([...r.typing.values()].map((t) => t.name))] : [];
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = `${names.length} people are typing…`;
  if ($("typing").textContent !== text) $("typing").textContent = text;
}

function pruneTyping() {
  const now = Date.now();
  for (const r of rooms.values()) {
    for (const [peer, t] of r.typing) if (t.until <= now) r.typing.delete(peer);
  }
  renderTyping();
}

function note(name, text, tone = "") {
  if (!name) return;
  room(name).messages.push({ kind: "note", text, tone });
  if (name === active) renderMessages(false);
}

// -- small helpers -----------------------------------------------------------------

function el(tag, className = "", text = null) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== null) node.textContent = text;
  return node;
}

function paintAvatar(node, name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  node.style.setProperty("--hue", `hsl(${hash % 360} 55% 52%)`);
  node.textContent = [...name][0].toUpperCase();
}

function clock(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// -- wiring ------------------------------------------------------------------------------

$("name-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim().slice(0, 32);
  if (!name) return;
  localStorage.setItem(NAME_KEY, name);
  start(name);
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text || !active) return;
  $("text").value = "";
  send(text);
});
$("text").addEventListener("input", typing);

$("room-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("new-room").value.trim().replace(/^#/, "").slice(0, 40);
  if (!name) return;
  $("new-room").value = "";
  enter(name);
});

$("refresh-rooms").addEventListener("click", refreshRooms);
window.addEventListener("focus", refreshRooms);
$("change-name").addEventListener("click", () => {
  localStorage.removeItem(NAME_KEY);
  sessionStorage.setItem(NAME_KEY, me);
  location.reload();
});

for (const [button, className] of [["toggle-rooms", "show-rooms"], ["toggle-members", "show-members"]]) {
  $(button).addEventListener("click", () => {
    const open = $("app").classList.toggle(className);
    $("scrim").hidden = !open;
  });
}
$("scrim").addEventListener("click", () => {
  $("app").classList.remove("show-rooms", "show-members");
  $("scrim").hidden = true;
});

const remembered = localStorage.getItem(NAME_KEY);
if (remembered) {
  start(remembered);
} else {
  $("name").value = sessionStorage.getItem(NAME_KEY) || "";
  $("name").focus();
}
