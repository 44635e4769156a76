// The trace waterfall: one row per span, in tree order, a bar from its start to its end on a
// linear time axis from the trace's first span (templates/tracing/trace_panel.html puts the spans
// as JSON in the container's data-trace, tracing.skywalking.Trace.as_dict). Drawn as SVG (no inline styles:
// the portal's CSP forbids them), when the page loads and whenever htmx brings a panel in
// (the journey page loads its trace after the page).

const SVG = "http://www.w3.org/2000/svg";
const LABEL = 260, RIGHT = 16, TOP = 18, ROW = 20;

function el(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

export function durationLabel(ms) {
  if (ms < 1000) return `${Math.round(ms * 10) / 10} ms`;
  if (ms < 60000) return `${Math.round(ms / 100) / 10} s`;
  return `${Math.round(ms / 6000) / 10} min`;
}

export function draw(container, trace) {
  const spans = trace.spans;
  if (!spans.length) return;
  const width = Math.max(container.clientWidth || 0, 560);
  const height = TOP + ROW * spans.length + 4;
  const total = Math.max(trace.duration_ms, 1);
  const span = width - LABEL - RIGHT;
  const x = (ms) => LABEL + (Math.max(ms, 0) / total) * span;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, height, role: "img",
    "aria-label": `waterfall of ${spans.length} spans over ${durationLabel(trace.duration_ms)}` });
  for (let i = 0; i <= 4; i += 1) {
    const at = (total * i) / 4;
    el("line", { class: "grid", x1: x(at), x2: x(at), y1: TOP - 4, y2: height }, svg);
    el("text", { class: "tick", x: x(at), y: 11, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" },
      svg).textContent = durationLabel(at);
  }
  spans.forEach((s, index) => {
    const y = TOP + ROW * index;
    const row = el("g", { "data-testid": "waterfall-row", "data-kind": s.kind }, svg);
    el("rect", { class: "row-bg", x: 0, y, width, height: ROW }, row);
    const label = el("text", { class: "label", x: 4 + Math.min(s.depth, 8) * 10, y: y + 14 }, row);
    label.textContent = (s.endpoint || "—").slice(0, 40 - Math.min(s.depth, 8));
    const classes = ["bar", s.kind === "Exit" ? "exit" : "", s.error ? "error" : ""].filter(Boolean).join(" ");
    const bar = el("rect", { class: classes, x: x(s.offset_ms), y: y + 4, height: ROW - 8, rx: 2,
      width: Math.max(2, x(s.offset_ms + s.duration_ms) - x(s.offset_ms)) }, row);
    el("title", {}, bar).textContent =
      `${s.service} · ${s.endpoint} (${s.kind}) +${durationLabel(s.offset_ms)}, ${durationLabel(s.duration_ms)}`;
    const after = x(s.offset_ms + s.duration_ms) + 4;
    if (after < width - 80) {
      el("text", { class: "service", x: after, y: y + 14 }, row).textContent =
        `${durationLabel(s.duration_ms)} · ${s.service}`;
    }
  });
  container.replaceChildren(svg);
}

function drawAll(root) {
  root.querySelectorAll("[data-trace]").forEach((container) => {
    draw(container, JSON.parse(container.dataset.trace));
    container.dataset.drawn = "true";
  });
}

drawAll(document);
document.addEventListener("htmx:afterSettle", (event) => drawAll(event.target));
let pending = 0;
window.addEventListener("resize", () => {
  cancelAnimationFrame(pending);
  pending = requestAnimationFrame(() => drawAll(document));
});
