// The journey timeline: one lane for publishing (accepted/denied, routed or copy_refused, stored) and one per
// subscription (attempts, acked or dead-lettered), drawn as SVG from the page's JSON
// (#journey-data, tracing.journeys.Journey.as_dict). Time runs on a logarithmic scale from the
// first step, so a 2 ms publish and a retry an hour later both stay readable; the table under
// it has the exact times.

const SVG = "http://www.w3.org/2000/svg";
const LEFT = 120, RIGHT = 24, TOP = 26, LANE = 34;

function el(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

export function elapsedLabel(ms) {
  if (ms < 1000) return `${Math.round(ms * 10) / 10} ms`;
  if (ms < 60000) return `${Math.round(ms / 100) / 10} s`;
  if (ms < 3600000) return `${Math.round(ms / 6000) / 10} min`;
  return `${Math.round(ms / 360000) / 10} h`;
}

export function draw(container, journey) {
  const steps = journey.steps;
  if (!steps.length) return;
  const lanes = ["publish", ...journey.subscriptions.map((s) => s.subscription)];
  const laneOf = (step) => (["attempt", "acked", "dead_lettered"].includes(step.step)
    ? lanes.indexOf(step.subscription ?? "?") : 0);
  const width = Math.max(container.clientWidth || 0, 480);
  const height = TOP + LANE * lanes.length + 8;
  const max = Math.max(...steps.map((s) => s.since_start_ms), 1);
  const span = width - LEFT - RIGHT;
  const x = (ms) => LEFT + (Math.log1p(Math.max(ms, 0)) / Math.log1p(max)) * span;
  const y = (lane) => TOP + LANE * lane + LANE / 2;

  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, height, role: "img",
    "aria-label": `timeline of ${steps.length} steps` });
  lanes.forEach((name, index) => {
    el("line", { class: "lane", x1: LEFT, x2: width - RIGHT, y1: y(index), y2: y(index) }, svg);
    const label = el("text", { class: "lane-label", x: 4, y: y(index) + 4 }, svg);
    label.textContent = name === "publish" ? "publish" : name;
  });
  for (let tick = 1; tick <= max * 1.001; tick *= 10) {
    const text = el("text", { class: "tick", x: x(tick), y: 12, "text-anchor": "middle" }, svg);
    text.textContent = "+" + elapsedLabel(tick);
  }
  el("text", { class: "tick", x: LEFT, y: 12, "text-anchor": "start" }, svg).textContent = "0";

  const last = new Map();
  steps.forEach((step) => {
    const lane = laneOf(step);
    const cx = x(step.since_start_ms), cy = y(Math.max(lane, 0));
    const from = last.get(lane) ?? (lane > 0 ? last.get(0) : undefined);
    if (from) el("line", { class: "link", x1: from[0], y1: from[1], x2: cx, y2: cy }, svg);
    last.set(lane, [cx, cy]);
    const dot = el("circle", { class: `step-${step.step}`, cx, cy, r: 6, "data-step": step.step }, svg);
    el("title", {}, dot).textContent = `${step.step} +${elapsedLabel(step.since_start_ms)}`;
  });
  container.replaceChildren(svg);
}

function start() {
  const container = document.getElementById("journey-timeline");
  const data = document.getElementById("journey-data");
  if (!container || !data) return;
  const journey = JSON.parse(data.textContent);
  draw(container, journey);
  let pending = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => draw(container, journey));
  });
}

start();
