// The dashboard's page: joins room "metrics" with history (so the charts are
// full at once), appends each live sample, and breaks the lines where samples
// may be missing. Charts by uPlot (static/vendor/, built by ../vendor.sh).
import { connect } from "/wirehub.js";
import uPlot from "./vendor/uPlot.esm.js";

const $ = (selector) => document.querySelector(selector);
const hub = connect("/ws");
const KiB = 1024;

// One column per series, uPlot's data layout: [times, cpu, memory, rx, tx, connections, messages].
const columns = [[], [], [], [], [], [], []];
const FIELDS = ["cpu", "memory", "rx", "tx", "connections", "messages"];
let config = { period: 0.25, window: 120 };
let gaps = 0;

// Exposed for the browser tests.
window.dashboard = { hub, columns, gaps: () => gaps };

const charts = [
  chart("#chart-system", [[1, "CPU", "#0b7de0"], [2, "memory", "#8e4ec6"]], { range: [0, 100] }),
  chart("#chart-network", [[3, "in", "#12a594"], [4, "out", "#f76b15"]]),
  chart("#chart-hub", [[5, "connections", "#e5484d"], [6, "messages/s", "#30a46c"]]),
];

/** A uPlot chart of the given columns ([index, label, colour]). */
function chart(selector, series, { range } = {}) {
  const element = $(selector);
  const plot = new uPlot(
    {
      width: element.clientWidth || 400,
      height: 220,
      scales: { x: { time: true }, y: range ? { range } : { auto: true } },
      series: [{}, ...series.map(([, label, stroke]) => ({ label, stroke, width: 2, spanGaps: false }))],
      axes: [
        { stroke: "#6b7383" },
        { stroke: "#6b7383", grid: { stroke: "#eef0f3" }, size: 56, values: (u, ticks) => ticks.map(compact) },
      ],
      legend: { live: false },
    },
    [[]],
    element,
  );
  new ResizeObserver(() => plot.setSize({ width: element.clientWidth, height: 220 })).observe(element);
  return { plot, series };
}

const compactFormat = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
function compact(value) {
  return value === null ? "" : compactFormat.format(value);
}

/** Bytes per second for people: "812 B/s", "7.4 MiB/s". */
function rate(bytes) {
  const units = ["B/s", "KiB/s", "MiB/s", "GiB/s"];
  let i = 0;
  while (bytes >= 1000 && i < units.length - 1) {
    bytes /= KiB;
    i += 1;
  }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function render() {
  for (const { plot, series } of charts) {
    plot.setData([columns[0], ...series.map(([index]) => columns[index])]);
  }
  $("#samples").textContent = `${columns[0].length} samples`;
}

let scheduled = false;
function scheduleRender() {
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      render();
    });
  }
}

/** A row of nulls: uPlot leaves a hole in every line there. */
function breakLines(ts) {
  const last = columns[0].at(-1);
  if (last === undefined || columns[1].at(-1) === null) return; // nothing to break, or broken
  columns[0].push(Math.max(ts, last + 1e-3));
  for (let i = 1; i < columns.length; i++) columns[i].push(null);
  gaps += 1;
}

hub.on("sample", (sample) => {
  const last = columns[0].at(-1);
  if (last !== undefined && sample.ts <= last) return; // replayed after a reconnect: have it
  if (last !== undefined && sample.ts - last > 3 * config.period) breakLines(last + config.period);
  columns[0].push(sample.ts);
  FIELDS.forEach((field, i) => columns[i + 1].push(sample[field]));
  const oldest = sample.ts - config.window;
  while (columns[0].length && columns[0][0] < oldest) for (const column of columns) column.shift();
  showCards(sample);
  scheduleRender();
});

function showCards(sample) {
  $("#cpu").textContent = `${sample.cpu.toFixed(1)} %`;
  $("#memory").textContent = `${sample.memory.toFixed(1)} %`;
  $("#network").textContent = `${rate(sample.rx)} / ${rate(sample.tx)}`;
  $("#connections").textContent = String(sample.connections);
  $("#messages").textContent = `${sample.messages} /s`;
}

// A gap: samples of the room may be missing (e.g. the server restarted and lost them).
hub.on("gap", ({ reason }) => {
  breakLines(Date.now() / 1000);
  $("#notice").textContent = `some samples are missing (${reason}): the lines break there`;
  scheduleRender();
});

function setStatus(text, kind) {
  $("#status").textContent = text;
  $("#status").className = `pill ${kind}`;
}

hub.on("reconnecting", () => setStatus("reconnecting…", ""));
hub.on("reconnect", () => setStatus("connected", "open"));
hub.on("disconnect", ({ reconnect }) => {
  if (!reconnect) setStatus("disconnected", "down");
});

(async () => {
  config = await hub.call("config");
  $("#host").textContent = config.host;
  await hub.join("metrics", { history: Math.ceil(config.window / config.period) });
  setStatus("connected", "open");
})().catch((error) => setStatus(`cannot connect: ${error.message}`, "down"));
