// The collaborative editor's page: a textarea bound to a Yjs text, kept in
// sync with the server (pycrdt) over wirehub's event layer. See ../app.py for
// the events. Remote cursors are volatile room events, drawn over the text.
import { connect } from "/wirehub.js";
import * as Y from "./vendor/yjs.js";

const params = new URLSearchParams(location.search);
const docName = params.get("doc") || "welcome";
const userName = params.get("name") || localStorage.getItem("wirehub-editor:name") || randomName();
localStorage.setItem("wirehub-editor:name", userName);
const room = `doc:${docName}`;

const $ = (selector) => document.querySelector(selector);
const textarea = $("#text");
const mirror = $("#mirror");
const cursorsLayer = $("#cursors");
const status = $("#status");
$("#doc-name").textContent = docName;
document.title = `${docName} · wirehub editor`;

const ydoc = new Y.Doc();
const ytext = ydoc.getText("text");
const hub = connect(`/ws?doc=${encodeURIComponent(docName)}&name=${encodeURIComponent(userName)}`);
const people = new Map(); // peer id → {name, color}
const cursors = new Map(); // peer id → {name, color, anchor, head} (relative positions)
let synced = false; // the first exchange with the server is done: edits may flow

// Exposed for the browser tests (and for poking around in the console).
window.editor = { ydoc, ytext, hub, cursors };

// -- local edits → Yjs → server ------------------------------------------------

textarea.addEventListener("input", () => {
  const before = ytext.toString();
  const after = textarea.value;
  let start = 0;
  while (start < before.length && start < after.length && before[start] === after[start]) start++;
  let end = 0;
  while (
    end < before.length - start && end < after.length - start &&
    before[before.length - 1 - end] === after[after.length - 1 - end]
  ) end++;
  ydoc.transact(() => {
    if (before.length - start - end > 0) ytext.delete(start, before.length - start - end);
    if (after.length - start - end > 0) ytext.insert(start, after.slice(start, after.length - end));
  }, "local");
  fit();
  shareCursor();
});

let unsent = []; // local updates made while out of sync with the server

ydoc.on("update", (update, origin) => {
  if (origin === "server") return;
  if (synced && hub.state === "open") send(update);
  else unsent.push(update); // sync() sends them: in its first exchange or after it
});

function send(update) {
  setSaved(false);
  hub.call("update", update).then(
    () => setSaved(true),
    // Lost (a reconnection resyncs) or refused while connected: resync now, or every
    // later edit would wait for a reconnection that may never come.
    () => { if (synced && hub.state === "open") resync(); },
  );
}

// -- server → Yjs → textarea -----------------------------------------------------

hub.on("update", (data) => Y.applyUpdate(ydoc, data, "server"));

// The selection is read before a remote change applies: its indexes are the old text's.
let restoreSelection = () => {};
ydoc.on("beforeTransaction", (transaction) => {
  if (transaction.origin !== "local") restoreSelection = keepSelection();
});

ytext.observe((event, transaction) => {
  if (transaction.origin !== "local") {
    textarea.value = ytext.toString();
    restoreSelection();
    fit();
  }
  $("#count").textContent = `${ytext.length} characters`;
  drawCursors();
});

/**
 * A Yjs position for a caret at `index`, which follows the text. It sticks to the
 * character before it, so text someone else inserts right there goes after the caret,
 * and what you type next stays next to what you typed (your run is not split).
 */
const stickyAt = (index) => Y.createRelativePositionFromTypeIndex(ytext, index, -1);

/** Remember the selection as Yjs positions; return how to restore it. */
function keepSelection() {
  const focused = document.activeElement === textarea;
  const anchor = stickyAt(textarea.selectionStart);
  const head = stickyAt(textarea.selectionEnd);
  return () => {
    const a = Y.createAbsolutePositionFromRelativePosition(anchor, ydoc);
    const h = Y.createAbsolutePositionFromRelativePosition(head, ydoc);
    if (a && h && focused) textarea.setSelectionRange(a.index, h.index);
  };
}

/**
 * Exchange what each side lacks: send our changes the server does not have,
 * then apply the ones we do not have. Run after every (re)connection and gap.
 */
async function sync() {
  const theirs = await hub.call("state");
  unsent = []; // all in `ours`; what is typed from now on is sent once this is done
  const ours = Y.encodeStateAsUpdate(ydoc, theirs);
  if (ours.length > 2) await hub.call("update", ours); // [0, 0] is the empty update
  Y.applyUpdate(ydoc, await hub.call("sync", Y.encodeStateVector(ydoc)), "server");
  synced = true;
  for (const update of unsent.splice(0)) send(update);
  textarea.disabled = false;
  setSaved(true);
  shareCursor();
}

function resync() {
  synced = false;
  sync().catch((error) => console.warn("editor: sync failed; retrying at the next reconnect:", error.message));
}

// -- the connection --------------------------------------------------------------

hub.on("reconnecting", () => setStatus("reconnecting…", ""));
hub.on("disconnect", ({ reason, reconnect }) => {
  synced = false;
  $("#saved").textContent = "offline: your edits are kept and sent on reconnect";
  if (!reconnect) setStatus(reason ? `disconnected: ${reason}` : "disconnected", "down");
});
hub.on("reconnect", () => { setStatus("connected", "open"); resync(); });
hub.on("gap", resync); // updates may be missing: fetch the difference again
hub.on("presence", ({ joined, left }) => {
  if (joined) { people.set(joined.id, joined.info); shareCursor(); }
  if (left) { people.delete(left.id); cursors.delete(left.id); drawCursors(); }
  drawPeople();
});
hub.on("cursor", (notice) => {
  cursors.set(notice.peer, notice);
  drawCursors();
});

(async () => {
  const joined = await hub.join(room);
  for (const member of joined.members || []) people.set(member.id, member.info);
  drawPeople();
  setStatus("connected", "open");
  await sync();
  textarea.focus();
})().catch((error) => setStatus(`cannot open the document: ${error.message}`, "down"));

// -- cursors ------------------------------------------------------------------------

let cursorTimer = null;
function shareCursor() {
  clearTimeout(cursorTimer);
  cursorTimer = setTimeout(() => {
    if (!synced || hub.state !== "open") return;
    const anchor = stickyAt(textarea.selectionStart);
    const head = stickyAt(textarea.selectionEnd);
    hub.emit("cursor", { anchor: Y.relativePositionToJSON(anchor), head: Y.relativePositionToJSON(head) });
  }, 40);
}
for (const name of ["keyup", "mouseup", "focus"]) textarea.addEventListener(name, shareCursor);

function drawCursors() {
  cursorsLayer.replaceChildren();
  for (const [peer, cursor] of cursors) {
    if (!cursor.head || !people.has(peer)) continue;
    const position = Y.createAbsolutePositionFromRelativePosition(
      Y.createRelativePositionFromJSON(cursor.head), ydoc,
    );
    if (!position) continue;
    const where = caretAt(position.index);
    const mark = document.createElement("div");
    mark.className = "cursor";
    mark.dataset.index = position.index;
    mark.style.cssText = `left:${where.x}px;top:${where.y}px;height:${where.height}px;background:${cursor.color}`;
    const label = document.createElement("span");
    label.textContent = cursor.name;
    label.style.background = cursor.color;
    mark.append(label);
    cursorsLayer.append(mark);
  }
}

/** Where character `index` of the text is drawn, from a hidden copy laid out the same way. */
function caretAt(index) {
  mirror.textContent = textarea.value.slice(0, index);
  const marker = document.createElement("span");
  marker.textContent = "\u200b";
  mirror.append(marker);
  return { x: marker.offsetLeft, y: marker.offsetTop, height: marker.offsetHeight };
}

// -- the rest of the page ----------------------------------------------------------

function drawPeople() {
  const list = $("#people");
  list.replaceChildren();
  for (const [peer, info] of people) {
    const item = document.createElement("li");
    if (peer === hub.id) item.className = "me";
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = info.color;
    dot.textContent = (info.name || "?").slice(0, 1).toUpperCase();
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = peer === hub.id ? `${info.name} (you)` : info.name;
    item.append(dot, name);
    list.append(item);
  }
}

function setStatus(text, kind) {
  status.textContent = text;
  status.className = `pill ${kind}`;
}

function setSaved(saved) {
  $("#saved").textContent = saved ? "saved" : "saving…";
}

function fit() {
  textarea.style.height = "auto";
  textarea.style.height = `${textarea.scrollHeight}px`;
}

function randomName() {
  const names = ["ada", "grace", "linus", "alan", "barbara", "ken", "margaret", "guido"];
  return `${names[Math.floor(Math.random() * names.length)]}-${Math.floor(Math.random() * 90 + 10)}`;
}
