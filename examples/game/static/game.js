// The arena's page: sends its input, draws the server's snapshots on a canvas,
// interpolating between the last two so that 20 ticks a second look smooth.
// See ../app.py for the events and the snapshot layout.
import { connect } from "/wirehub.js";

const WIDTH = 960;
const HEIGHT = 600;
const RADIUS = 18;
const COIN_RADIUS = 9;
const INTERPOLATION_DELAY = 100; // ms behind the newest snapshot: two ticks to draw between

const params = new URLSearchParams(location.search);
const spectator = params.get("spectate") === "1";
const name = params.get("name") || localStorage.getItem("wirehub-arena:name") || `player${Math.floor(Math.random() * 900 + 100)}`;
if (!spectator) localStorage.setItem("wirehub-arena:name", name);

const $ = (selector) => document.querySelector(selector);
const canvas = $("#arena");
const context = canvas.getContext("2d");
const query = new URLSearchParams({ name, ...(spectator ? { spectate: "1" } : {}) });
const hub = connect(`/ws?${query}`);

const snapshots = []; // the last few decoded snapshots, oldest first
let clockOffset = null; // server time minus local time, in ms
let roster = {}; // slot → {name, color, peer}
let slots = ""; // the slots of the newest snapshot, to notice joins and leaves
let rosterAsked = 0;

$("#role").textContent = spectator ? "spectating" : `playing as ${name}`;

// Exposed for the browser tests: where everybody is in the newest snapshot.
window.game = {
  hub,
  latest: () => (snapshots.length ? Object.fromEntries(snapshots.at(-1).players) : {}),
  me: () => mySlot(),
  roster: () => roster,
};

// -- receiving -----------------------------------------------------------------

hub.on("snapshot", (bytes) => {
  const snapshot = decode(bytes);
  const offset = snapshot.time - performance.now();
  // The smallest offset seen is the least delayed one; drift follows slowly.
  clockOffset = clockOffset === null ? offset : Math.min(clockOffset + 0.05, offset);
  snapshots.push(snapshot);
  if (snapshots.length > 30) snapshots.shift();
  const seen = [...snapshot.players.keys()].sort((a, b) => a - b).join(",");
  if (seen !== slots) {
    slots = seen;
    refreshRoster();
  }
  $("#tick").textContent = `tick ${snapshot.tick} · ${snapshot.players.size} playing`;
});

function decode(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tick = view.getUint32(0, true);
  const time = view.getFloat64(4, true);
  let count = view.getUint16(12, true);
  let at = 14;
  const players = new Map();
  for (; count > 0; count--, at += 12) {
    players.set(view.getUint16(at, true), {
      x: view.getFloat32(at + 2, true), y: view.getFloat32(at + 6, true), score: view.getUint16(at + 10, true),
    });
  }
  const coins = [];
  for (count = view.getUint16(at, true), at += 2; count > 0; count--, at += 8) {
    coins.push([view.getFloat32(at, true), view.getFloat32(at + 4, true)]);
  }
  return { tick, time, players, coins };
}

async function refreshRoster() {
  const asked = ++rosterAsked;
  try {
    const answer = await hub.call("roster");
    if (asked === rosterAsked) roster = answer; // a later answer may have come first
    drawScores();
  } catch (error) {
    console.warn("arena: could not fetch the roster:", error.message);
  }
}

function mySlot() {
  for (const [slot, player] of Object.entries(roster)) if (player.peer === hub.id) return Number(slot);
  return null;
}

// -- input ------------------------------------------------------------------------

const held = new Set();
const KEYS = {
  ArrowLeft: [-1, 0], KeyA: [-1, 0], ArrowRight: [1, 0], KeyD: [1, 0],
  ArrowUp: [0, -1], KeyW: [0, -1], ArrowDown: [0, 1], KeyS: [0, 1],
};
let sent = "0,0";
let touch = null;

function steer() {
  let dx = 0;
  let dy = 0;
  for (const code of held) {
    dx += KEYS[code][0];
    dy += KEYS[code][1];
  }
  if (touch) [dx, dy] = touch;
  dx = Math.sign(dx);
  dy = Math.sign(dy);
  const wanted = `${dx},${dy}`;
  if (spectator || wanted === sent || hub.state !== "open") return;
  sent = wanted;
  hub.emit("input", { dx, dy });
}

addEventListener("keydown", (event) => {
  if (!(event.code in KEYS)) return;
  event.preventDefault();
  held.add(event.code);
  steer();
});
addEventListener("keyup", (event) => {
  held.delete(event.code);
  steer();
});
addEventListener("blur", () => {
  held.clear();
  steer();
});
canvas.addEventListener("pointermove", (event) => {
  if (event.pointerType === "mouse" && !event.buttons) return;
  const me = snapshots.length ? snapshots.at(-1).players.get(mySlot()) : null;
  if (!me) return;
  const box = canvas.getBoundingClientRect();
  const x = ((event.clientX - box.left) / box.width) * WIDTH - me.x;
  const y = ((event.clientY - box.top) / box.height) * HEIGHT - me.y;
  touch = [Math.abs(x) > RADIUS ? x : 0, Math.abs(y) > RADIUS ? y : 0];
  steer();
});
for (const name of ["pointerup", "pointercancel", "pointerleave"]) {
  canvas.addEventListener(name, () => {
    touch = null;
    steer();
  });
}

// -- the connection --------------------------------------------------------------

function setStatus(text, kind) {
  $("#status").textContent = text;
  $("#status").className = `pill ${kind}`;
}

hub.on("connect", () => {
  setStatus("connected", "open");
  sent = "0,0"; // a new connection is a new player: say where we are heading again
  steer();
  refreshRoster();
});
hub.on("reconnecting", () => setStatus("reconnecting…", ""));
hub.on("disconnect", ({ reconnect }) => {
  if (!reconnect) setStatus("disconnected", "down");
});
hub.join(spectator ? "arena:watch" : "arena").catch(
  (error) => setStatus(`cannot join: ${error.message}`, "down"),
);
setInterval(async () => {
  if (hub.state !== "open") return;
  try {
    $("#latency").textContent = `${Math.round(await hub.ping())} ms`;
  } catch {
    // the next one will tell
  }
}, 2000);

// -- drawing ------------------------------------------------------------------------

/** Positions at `time` (server clock), between the two snapshots around it. */
function interpolated(time) {
  let i = snapshots.length - 1;
  while (i > 0 && snapshots[i - 1].time > time) i--;
  const next = snapshots[i];
  const previous = snapshots[i - 1];
  if (!previous || time >= next.time) return next;
  const k = Math.max(0, Math.min(1, (time - previous.time) / (next.time - previous.time)));
  const players = new Map();
  for (const [slot, b] of next.players) {
    const a = previous.players.get(slot) || b;
    players.set(slot, { x: a.x + (b.x - a.x) * k, y: a.y + (b.y - a.y) * k, score: b.score });
  }
  return { ...next, players };
}

function draw() {
  requestAnimationFrame(draw);
  context.clearRect(0, 0, WIDTH, HEIGHT);
  context.strokeStyle = "rgba(255, 255, 255, 0.04)";
  for (let x = 40; x < WIDTH; x += 40) line(x, 0, x, HEIGHT);
  for (let y = 40; y < HEIGHT; y += 40) line(0, y, WIDTH, y);
  if (!snapshots.length) return;
  const view = interpolated(performance.now() + clockOffset - INTERPOLATION_DELAY);
  for (const [x, y] of view.coins) {
    context.shadowColor = "#fcc419";
    context.shadowBlur = 14;
    circle(x, y, COIN_RADIUS, "#fcc419");
  }
  context.shadowBlur = 0;
  const me = mySlot();
  for (const [slot, player] of view.players) {
    const info = roster[slot] || { name: "…", color: "#868e96" };
    circle(player.x, player.y, RADIUS, info.color);
    if (slot === me) {
      context.lineWidth = 3;
      context.strokeStyle = "#ffffff";
      context.beginPath();
      context.arc(player.x, player.y, RADIUS + 3, 0, Math.PI * 2);
      context.stroke();
    }
    context.fillStyle = "rgba(232, 235, 242, 0.9)";
    context.font = "600 13px system-ui, sans-serif";
    context.textAlign = "center";
    context.fillText(info.name, player.x, player.y - RADIUS - 8);
  }
}

function line(x1, y1, x2, y2) {
  context.lineWidth = 1;
  context.beginPath();
  context.moveTo(x1, y1);
  context.lineTo(x2, y2);
  context.stroke();
}

function circle(x, y, r, color) {
  context.fillStyle = color;
  context.beginPath();
  context.arc(x, y, r, 0, Math.PI * 2);
  context.fill();
}

function drawScores() {
  const list = $("#scores");
  list.replaceChildren();
  const latest = snapshots.length ? snapshots.at(-1).players : new Map();
  const ranked = [...latest].sort((a, b) => b[1].score - a[1].score);
  for (const [slot, player] of ranked) {
    const info = roster[slot];
    if (!info) continue;
    const item = document.createElement("li");
    if (slot === mySlot()) item.className = "me";
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = info.color;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = info.name;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = player.score;
    item.append(dot, label, score);
    list.append(item);
  }
}

setInterval(drawScores, 500);
requestAnimationFrame(draw);
