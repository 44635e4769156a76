// The live tail of a topic (templates/tracing/tail.html). The server filters, paces (at most
// config.rate events a second) and masks; this page keeps the newest config.buffer rows, draws
// what arrived once per animation frame, newest on top, and says what the server skipped.
// Pause asks the server to stop sending and to count what arrives meanwhile.

import { EventDetail } from "./event_detail.js";
import { bytes, clock, count, liveSocket, setBadge } from "./socket.js";

const config = JSON.parse(document.getElementById("tail-config").textContent);
const root = document.querySelector('[data-testid="tail"]');
const part = (role) => root.querySelector(`[data-role="${role}"]`);
const rowsBody = part("rows");
const form = part("filter-form");
const detail = new EventDetail(document.getElementById("event-detail"), { journeyUrl: config.journey_url });
const copies = new WeakMap(); // row -> the copy it shows
let queue = []; // copies not drawn yet, oldest first
let frame = 0;
let paused = false;
let filter = { filters: config.filters || [], text: config.text || "" };

form.elements.text.value = filter.text;
form.elements.filters.value = filter.filters.length ? JSON.stringify(filter.filters) : "";

const socket = liveSocket(config.socket, {
  opened() {
    socket.send({ type: "filter", ...filter });
    if (paused) socket.send({ type: "pause" });
  },
  message(message) {
    const handle = handlers[message.type];
    if (handle) handle(message);
  },
  status(text, style) { setBadge(part("status"), text, style); },
  closed(code, why) {
    const box = part("closed");
    box.textContent = why;
    box.hidden = false;
    box.dataset.code = code;
  },
});

const handlers = {
  hello(message) { part("masked").hidden = message.payload; },
  access(message) {
    part("masked").hidden = message.payload;
    showError(message.payload ? "" : "Your rights changed: from now on you see attributes only.");
  },
  events(message) {
    queue.push(...message.events);
    if (queue.length > config.buffer) queue = queue.slice(-config.buffer);
    if (!frame) frame = requestAnimationFrame(draw);
  },
  stats: showStats,
  filter(message) {
    showError("");
    root.dataset.filterApplied = JSON.stringify({ filters: message.filters, text: message.text });
  },
  error(message) { showError(`${message.field}: ${message.message}`); },
  resumed(message) {
    const note = part("paused-count");
    note.textContent = `${count(message.arrived)} arrived while paused`;
    note.hidden = false;
  },
};

function showError(text) {
  const box = part("filter-error");
  box.textContent = text;
  box.hidden = !text;
}

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text ?? "";
  return td;
}

function makeRow(copy) {
  const attributes = copy.attributes || {};
  const tr = document.createElement("tr");
  tr.dataset.eventId = attributes.id ?? "";
  tr.setAttribute("data-testid", "tail-row");
  const outcome = document.createElement("span");
  outcome.className = `badge text-bg-${copy.outcome === "stored" ? "success" : "danger"}`;
  outcome.textContent = copy.outcome ?? "";
  const outcomeCell = cell("");
  outcomeCell.appendChild(outcome);
  const journeyCell = cell("", "text-end");
  const journey = document.createElement("a");
  journey.href = config.journey_url.replace("__id__", encodeURIComponent(attributes.id ?? ""));
  journey.textContent = "journey";
  journey.className = "small";
  journeyCell.appendChild(journey);
  tr.append(cell(clock(copy.at), "text-nowrap small"), outcomeCell, cell(attributes.id, "font-monospace small text-break"),
    cell(attributes.type, "small"), cell(attributes.source, "small text-break"), cell(attributes.subject, "small"),
    cell(bytes(copy.data_size), "text-end small text-nowrap"), journeyCell);
  copies.set(tr, copy);
  return tr;
}

function draw() {
  frame = 0;
  const batch = queue;
  queue = [];
  if (!batch.length) return;
  const fragment = document.createDocumentFragment();
  for (let i = batch.length - 1; i >= 0; i--) fragment.appendChild(makeRow(batch[i]));
  const empty = rowsBody.querySelector('[data-role="empty"]');
  if (empty) empty.remove();
  rowsBody.prepend(fragment);
  while (rowsBody.rows.length > config.buffer) rowsBody.lastElementChild.remove();
}

function showStats(message) {
  const per = message.per_interval;
  const seconds = message.interval || 1;
  const rate = (n) => count(Math.round(n / seconds));
  const filtered = filter.filters.length > 0 || filter.text !== "";
  let text = `${rate(per.received)} events/s`;
  if (filtered) text += ` on the topic, ${rate(per.matched)}/s match`;
  if (per.skipped > 0) text += ` — showing ${rate(per.shown)}/s, ${count(per.skipped)} skipped`;
  if (per.lost > 0) text += ` — ${count(per.lost)} lost: a runtime's tap could not keep up`;
  const stats = part("stats");
  stats.textContent = text;
  for (const [name, value] of Object.entries(message.totals)) stats.dataset[name] = value;
  if (message.paused) {
    const note = part("paused-count");
    note.textContent = `Paused — ${count(message.totals.paused)} arrived`;
    note.hidden = false;
  }
}

rowsBody.addEventListener("click", (event) => {
  if (event.target.closest("a")) return;
  const row = event.target.closest("tr");
  if (row && copies.has(row)) detail.show(copies.get(row));
});

part("pause").addEventListener("click", (event) => {
  paused = !paused;
  socket.send({ type: paused ? "pause" : "resume" });
  event.currentTarget.textContent = paused ? "Resume" : "Pause";
  root.dataset.paused = paused;
  if (paused) {
    const note = part("paused-count");
    note.textContent = "Paused — 0 arrived";
    note.hidden = false;
  }
});

part("clear").addEventListener("click", () => {
  rowsBody.replaceChildren();
  queue = [];
});

function applyFilter() {
  const raw = form.elements.filters.value.trim();
  let filters = [];
  if (raw) {
    try {
      filters = JSON.parse(raw);
    } catch (error) {
      showError(`filters: not valid JSON (${error.message})`);
      return;
    }
  }
  filter = { filters, text: form.elements.text.value.trim() };
  socket.send({ type: "filter", ...filter });
}

form.addEventListener("submit", (event) => { event.preventDefault(); applyFilter(); });
form.addEventListener("reset", () => setTimeout(applyFilter)); // after the fields are emptied
let typing = 0;
form.elements.text.addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(applyFilter, 250);
});
