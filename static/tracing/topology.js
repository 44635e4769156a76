// The live topology (templates/tracing/topology.html), drawn with the vendored Cytoscape.js.
//
// Polls /api/v1/topology/ (with the page's own filters) every refresh_seconds: the structure
// comes from the database, the rates from one shared Prometheus query (tracing.topology), so
// polling viewers cost no more queries than one. Topics are grouped by domain (the first segment
// of their name) in compound nodes; a click on a domain collapses or expands it, a click on any
// other node or on an edge opens its page. Every edge is also listed in a table under the graph,
// for screen readers and keyboards. No inline script or style: the page runs under a strict CSP.

const config = JSON.parse(document.getElementById("topology-config").textContent);
const container = document.getElementById("topology-canvas");
const ui = {
  status: document.querySelector("[data-topology-status]"),
  missing: document.querySelector("[data-topology-rates-missing]"),
  reason: document.querySelector("[data-topology-rates-reason]"),
  hint: document.querySelector("[data-topology-rates-hint]"),
  error: document.querySelector("[data-topology-error]"),
  rows: document.querySelector("[data-topology-rows]"),
  summary: document.querySelector("[data-topology-summary]"),
  layout: document.querySelector("[data-topology-layout]"),
  isolated: document.querySelector("[data-topology-isolated]"),
};
const COLOURS = {ok: "#198754", degraded: "#fd7e14", failing: "#dc3545", idle: "#adb5bd", unknown: "#6c757d"};
const SEVERITY = {unknown: 0, idle: 1, ok: 2, degraded: 3, failing: 4};
const KIND_ORDER = {publish: 0, route: 1, deliver: 2, webhook: 3};
const VERBS = {publish: "publishes", route: "routes", deliver: "delivers", webhook: "calls"};
//: above this many topics drawn, domains start collapsed
const COLLAPSE_ABOVE = 40;
const COLUMN = {application: 0, topic: 360, domain: 360, subscription: 720, host: 1040};
const ROW = 38;

const state = {data: null, collapsed: new Set(), decided: false, shape: "", updates: 0, timer: null};

function filters() {
  const params = new URLSearchParams(window.location.search);
  const wanted = new URLSearchParams();
  for (const name of ["team", "prefix", "application"]) {
    if (params.get(name)) wanted.set(name, params.get(name));
  }
  return wanted;
}

function number(value) {
  if (value === null || value === undefined) return "—";
  if (value === 0) return "0";
  if (value < 0.01) return "<0.01";
  if (value < 10) return value.toFixed(2).replace(/\.?0+$/, "");
  if (value < 1000) return value.toFixed(0);
  return `${(value / 1000).toPrecision(3)}k`;
}

function clock(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleTimeString() : "—";
}

function health(rate, errors) {
  if (rate === null || errors === null || rate === undefined || errors === undefined) return "unknown";
  const total = rate + errors;
  if (total <= 0) return "idle";
  const share = errors / total;
  if (share >= config.thresholds.failing) return "failing";
  if (share > config.thresholds.degraded) return "degraded";
  return "ok";
}

function edgeLabel(edge) {
  if (edge.rate === null || edge.rate === undefined) return "";
  if (!edge.rate && !edge.errors) return "";
  const failed = edge.kind === "publish" ? "refused" : "failed";
  if (!edge.rate) return `${number(edge.errors)}/s ${failed}`;
  let text = `${number(edge.rate)}/s`;
  if (edge.errors) text += ` · ${number(edge.errors)} ${failed}`;
  return text;
}

// -- what to draw: hidden isolated topics, collapsed domains, edges merged into them -----------

function visible(data) {
  const byId = new Map(data.nodes.map((node) => [node.id, node]));
  const degree = new Map();
  for (const edge of data.edges) {
    degree.set(edge.source, (degree.get(edge.source) || 0) + 1);
    degree.set(edge.target, (degree.get(edge.target) || 0) + 1);
  }
  const showIsolated = ui.isolated.checked;
  const topics = data.nodes.filter((n) => n.kind === "topic" && (showIsolated || degree.get(n.id)));
  const hidden = data.nodes.filter((n) => n.kind === "topic").length - topics.length;
  if (!state.decided) {
    state.decided = true;
    if (topics.length > COLLAPSE_ABOVE) {
      for (const topic of topics) state.collapsed.add(`domain:${topic.domain}`);
    }
  }
  const domains = new Map();
  for (const topic of topics) {
    const id = `domain:${topic.domain}`;
    if (!domains.has(id)) domains.set(id, {...byId.get(id), id, topics: []});
    domains.get(id).topics.push(topic);
  }
  const standIn = new Map();  // a collapsed domain's topics -> the domain
  const nodes = [];
  for (const domain of [...domains.values()].sort((a, b) => a.label.localeCompare(b.label))) {
    const collapsed = state.collapsed.has(domain.id);
    nodes.push({...domain, collapsed});
    for (const topic of domain.topics) {
      if (collapsed) standIn.set(topic.id, domain.id);
      else nodes.push({...topic, parent: domain.id});
    }
  }
  for (const node of data.nodes) {
    if (node.kind !== "topic" && node.kind !== "domain") nodes.push(node);
  }
  const merged = new Map();
  for (const edge of data.edges) {
    const source = standIn.get(edge.source) || edge.source;
    const target = standIn.get(edge.target) || edge.target;
    if (source === target) continue;  // a route inside a collapsed domain
    if (source === edge.source && target === edge.target) {
      merged.set(edge.id, {...edge, parts: 1});
      continue;
    }
    const id = `merged:${edge.kind}:${source}:${target}`;
    const known = merged.get(id);
    if (!known) {
      merged.set(id, {...edge, id, source, target, url: null, parts: 1});
    } else {
      known.parts += 1;
      known.declared = known.declared && edge.declared;
      known.rate = known.rate === null || edge.rate === null ? null : known.rate + edge.rate;
      known.errors = known.errors === null || edge.errors === null ? null : known.errors + edge.errors;
    }
  }
  const edges = [...merged.values()].map((edge) => ({...edge, health: edge.parts > 1 ? health(edge.rate, edge.errors)
    : edge.health}));
  return {nodes, edges, hidden, drawnTopics: topics.length};
}

function elements(graph) {
  const nodes = graph.nodes.map((node) => {
    let label = node.kind === "topic" && node.parent ? node.short : node.label;
    if (node.kind === "domain" && node.collapsed) label = `${node.label}.* (${node.topics.length}) ▸`;
    const classes = [node.kind];
    if (node.context) classes.push("context");
    if (node.collapsed) classes.push("collapsed");
    if (node.state === "paused") classes.push("paused");
    if (node.lifecycle === "deprecated") classes.push("deprecated");
    return {group: "nodes", classes: classes.join(" "), data: {
      id: node.id, label, kind: node.kind, url: node.url || "", parent: node.parent,
      width: Math.max(56, label.length * 6.6 + 18),
    }};
  });
  const edges = graph.edges.map((edge) => {
    const classes = [edge.kind, edge.health];
    if (!edge.declared) classes.push("undeclared");
    if (edge.state === "paused") classes.push("paused");
    return {group: "edges", classes: classes.join(" "), data: {
      id: edge.id, source: edge.source, target: edge.target, kind: edge.kind, url: edge.url || "",
      label: edgeLabel(edge), colour: COLOURS[edge.health] || COLOURS.unknown,
      width: 1.5 + Math.min(6, Math.log10(1 + (edge.rate || 0)) * 2.5), bow: 0,
    }};
  });
  return {nodes, edges};
}

// -- layouts -----------------------------------------------------------------------------------------

function spread(items, gap) {
  // pushed apart downwards, then moved up as a block so that on the whole they sit where they want
  items.sort((a, b) => a.y - b.y || a.label.localeCompare(b.label));
  const wanted = items.reduce((sum, item) => sum + item.y, 0);
  let last = -Infinity;
  for (const item of items) {
    item.y = Math.max(item.y, last + gap);
    last = item.y;
  }
  const shift = items.length ? (items.reduce((sum, item) => sum + item.y, 0) - wanted) / items.length : 0;
  for (const item of items) item.y -= shift;
}

function columns(graph) {
  // topics (or their collapsed domain) in one column in domain order; publishers to the left
  // and subscribers to the right, each at the height of what it joins, pushed apart to not overlap
  const positions = {};
  let y = 0;
  graph.nodes.forEach((node, index) => {
    if (node.kind === "domain") {
      if (node.collapsed) {
        positions[node.id] = {x: COLUMN.topic, y};
        y += ROW + 10;
      } else {
        y += 24;  // room for the domain's label
      }
    } else if (node.kind === "topic") {
      positions[node.id] = {x: COLUMN.topic, y};
      y += ROW;
      const next = graph.nodes[index + 1];
      if (!next || next.kind !== "topic" || next.parent !== node.parent) y += 24;
    }
  });
  const neighbours = new Map();
  for (const edge of graph.edges) {
    if (!neighbours.has(edge.source)) neighbours.set(edge.source, []);
    if (!neighbours.has(edge.target)) neighbours.set(edge.target, []);
    neighbours.get(edge.source).push(edge.target);
    neighbours.get(edge.target).push(edge.source);
  }
  for (const kind of ["application", "subscription", "host"]) {
    const items = graph.nodes.filter((n) => n.kind === kind).map((node) => {
      const placed = (neighbours.get(node.id) || []).map((id) => positions[id]).filter(Boolean);
      const mean = placed.length ? placed.reduce((sum, p) => sum + p.y, 0) / placed.length : 0;
      return {id: node.id, label: node.label, y: mean};
    });
    spread(items, ROW + 4);
    for (const item of items) positions[item.id] = {x: COLUMN[kind], y: item.y};
  }
  return positions;
}

function runLayout(cy, graph) {
  if (ui.layout.value === "force") {
    cy.edges(".route").data("bow", 0);
    cy.layout({name: "cose", animate: false, nodeDimensionsIncludeLabels: true, idealEdgeLength: () => 90,
      nodeRepulsion: () => 9000, padding: 30, randomize: false}).run();
    return;
  }
  const positions = columns(graph);
  cy.layout({name: "preset", positions: (node) => positions[node.id()], fit: true, padding: 30, animate: false}).run();
  // routes join two topics of one column: bow them out to the right, more the further apart they are
  cy.edges(".route").forEach((edge) => {
    const dy = edge.target().position("y") - edge.source().position("y");
    edge.data("bow", -Math.sign(dy || 1) * Math.min(260, 50 + Math.abs(dy) * 0.25));
  });
}

// -- Cytoscape ---------------------------------------------------------------------------------------

const STYLE = [
  {selector: "node", style: {
    "label": "data(label)", "font-size": 11, "text-valign": "center", "text-halign": "center", "color": "#212529",
    "width": "data(width)", "height": 26, "border-width": 1.5, "shape": "round-rectangle",
  }},
  {selector: "node.application", style: {"shape": "ellipse", "background-color": "#cfe2ff", "border-color": "#0d6efd"}},
  {selector: "node.topic", style: {"background-color": "#fff3cd", "border-color": "#997404"}},
  {selector: "node.topic.deprecated", style: {"border-style": "dashed"}},
  {selector: "node.context", style: {"opacity": 0.6}},
  {selector: "node.subscription", style: {"shape": "barrel", "background-color": "#d1e7dd", "border-color": "#146c43"}},
  {selector: "node.subscription.paused", style: {"border-style": "dashed", "opacity": 0.7}},
  {selector: "node.host", style: {"shape": "rectangle", "background-color": "#e2e3e5", "border-color": "#41464b"}},
  {selector: "node.domain", style: {"background-color": "#f8f9fa", "border-color": "#6c757d", "border-style": "dashed"}},
  {selector: "node.domain:parent", style: {
    "text-valign": "top", "text-halign": "center", "font-weight": "bold", "padding": 8, "background-opacity": 0.6,
    "color": "#495057",
  }},
  {selector: "node.domain.collapsed", style: {"font-weight": "bold"}},
  {selector: "node:selected", style: {"border-width": 3, "border-color": "#0d6efd"}},
  {selector: "edge", style: {
    "curve-style": "bezier", "target-arrow-shape": "triangle", "line-color": "data(colour)",
    "target-arrow-color": "data(colour)", "width": "data(width)", "label": "data(label)", "font-size": 10,
    "text-background-color": "#ffffff", "text-background-opacity": 0.85, "text-background-padding": 2,
    "color": "#212529", "arrow-scale": 0.9,
  }},
  {selector: "edge.route", style: {
    "curve-style": "unbundled-bezier", "control-point-distances": "data(bow)", "control-point-weights": 0.5,
    "line-style": "dashed", "line-dash-pattern": [8, 3],
  }},
  {selector: "edge.idle, edge.undeclared, edge.paused", style: {"line-style": "dashed"}},
  {selector: "edge.failing", style: {"z-index": 10}},
  {selector: "edge:selected", style: {"overlay-opacity": 0.15}},
];

const cy = window.cytoscape({
  container, style: STYLE, elements: [], minZoom: 0.05, maxZoom: 3,
  boxSelectionEnabled: false, autoungrabify: false,
});

function toggleDomain(id) {
  if (state.collapsed.has(id)) state.collapsed.delete(id);
  else state.collapsed.add(id);
  draw();
}

cy.on("tap", "node", (event) => {
  const node = event.target;
  if (node.data("kind") === "domain") toggleDomain(node.id());
  else if (node.data("url")) window.location.assign(node.data("url"));
});
cy.on("tap", "edge", (event) => {
  const edge = event.target;
  if (edge.data("url")) window.location.assign(edge.data("url"));
  else if (edge.id().startsWith("merged:")) {
    for (const end of [edge.source(), edge.target()]) {
      if (end.data("kind") === "domain") state.collapsed.delete(end.id());
    }
    draw();
  }
});
cy.on("mouseover", "node, edge", (event) => {
  const target = event.target;
  container.title = target.isNode() ? (target.data("kind") === "domain" ? "Click to collapse or expand" :
    `${target.data("kind")} ${target.data("label")}`) : (target.data("label") || target.data("kind"));
  container.style.cursor = "pointer";
});
cy.on("mouseout", "node, edge", () => {
  container.title = "";
  container.style.cursor = "";
});

function draw() {
  if (!state.data) return;
  const graph = visible(state.data);
  const {nodes, edges} = elements(graph);
  const shape = [ui.layout.value, ...nodes.map((n) => `${n.data.id}<${n.data.parent || ""}`),
    ...edges.map((e) => e.data.id)].join("|");
  if (shape !== state.shape) {
    state.shape = shape;
    cy.batch(() => {
      cy.elements().remove();
      cy.add([...nodes, ...edges]);
    });
    runLayout(cy, graph);
  } else {
    cy.batch(() => {
      for (const edge of edges) {
        const drawn = cy.getElementById(edge.data.id);
        drawn.data({label: edge.data.label, colour: edge.data.colour, width: edge.data.width});
        drawn.classes(edge.classes);
      }
    });
  }
  container.dataset.nodes = String(nodes.length);
  container.dataset.edges = String(edges.length);
  ui.summary.textContent = `${graph.drawnTopics} topics drawn` +
    (graph.hidden ? `, ${graph.hidden} without edges hidden (tick “Topics without edges” to draw them)` : "") +
    `; ${state.collapsed.size ? "click a domain to expand it" : "click a domain's box to collapse it"}.`;
}

// -- the table of edges --------------------------------------------------------------------------------

function link(text, url) {
  if (!url) return document.createTextNode(text);
  const a = document.createElement("a");
  a.href = url;
  a.textContent = text;
  return a;
}

function cell(row, content, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  row.append(td);
  return td;
}

function nodeName(node) {
  return node.kind === "subscription" ? `${node.label} (${node.name})` : node.label;
}

function table(data) {
  const byId = new Map(data.nodes.map((node) => [node.id, node]));
  const edges = [...data.edges].sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] ||
    byId.get(a.source).label.localeCompare(byId.get(b.source).label) ||
    byId.get(a.target).label.localeCompare(byId.get(b.target).label));
  const rows = edges.map((edge) => {
    const row = document.createElement("tr");
    row.dataset.edgeId = edge.id;
    row.dataset.health = edge.health;
    row.dataset.rate = edge.rate === null ? "" : String(edge.rate);
    if (edge.health === "failing" || edge.health === "degraded") row.className = `mesh-topology-row-${edge.health}`;
    const source = byId.get(edge.source);
    const target = byId.get(edge.target);
    cell(row, link(nodeName(source), source.url));
    cell(row, link(nodeName(target), target.url));
    let what = edge.kind === "route" ? `${VERBS.route} (${edge.label})` : VERBS[edge.kind];
    if (!edge.declared) what += ", no rule allows it";
    if (edge.state === "paused") what += ", paused";
    cell(row, link(what, edge.url));
    cell(row, number(edge.rate), "text-end");
    const reasons = Object.entries(edge.detail || {}).filter(([name, value]) => value > 0 &&
      !["delivered", "filtered"].includes(name)).map(([name, value]) => `${name} ${number(value)}`);
    cell(row, number(edge.errors) + (reasons.length ? ` (${reasons.join(", ")})` : ""), "text-end");
    cell(row, edge.health);
    return row;
  });
  if (!rows.length) {
    const row = document.createElement("tr");
    cell(row, "No edges: nothing publishes to, routes or subscribes to the topics shown.", "text-body-secondary")
      .colSpan = 6;
    rows.push(row);
  }
  ui.rows.replaceChildren(...rows);
}

// -- polling ---------------------------------------------------------------------------------------------

function showRates(data) {
  const missing = !data.rates_available;
  ui.missing.classList.toggle("d-none", !missing);
  container.dataset.rates = missing ? "missing" : "available";
  if (missing) {
    ui.reason.textContent = data.rates_reason || "Prometheus gave no answer.";
    const since = data.rates_failing_since ? ` Failing since ${clock(data.rates_failing_since)}.` : "";
    ui.hint.textContent = (data.rates_hint || "") + since;
    ui.status.textContent = `Structure only (rates missing) · refreshed every ${data.refresh_seconds} s`;
  } else {
    ui.status.textContent = `Live · rates over ${data.rates_window} as of ${clock(data.rates_at)} · ` +
      `refreshed every ${data.refresh_seconds} s`;
  }
}

async function refresh() {
  clearTimeout(state.timer);
  let wait = (state.data ? state.data.refresh_seconds : config.refresh_seconds) * 1000;
  try {
    const query = filters().toString();
    const response = await fetch(config.api + (query ? `?${query}` : ""), {
      headers: {Accept: "application/json"}, credentials: "same-origin"});
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = body.detail || Object.entries(body).map(([name, errors]) => `${name}: ${[].concat(errors)
        .join(" ")}`).join("; ");
      throw new Error(`${response.status}: ${detail || response.statusText}`);
    }
    ui.error.classList.add("d-none");
    state.data = body;
    showRates(body);
    draw();
    table(body);
    state.updates += 1;
    container.dataset.state = "ok";
    container.dataset.updates = String(state.updates);
  } catch (error) {
    container.dataset.state = "error";
    ui.error.textContent = `The topology could not be loaded: ${error.message}`;
    ui.error.classList.remove("d-none");
    ui.status.textContent = "Not updated";
    wait = Math.max(wait, 5000);
  }
  state.timer = setTimeout(refresh, wait);
}

document.querySelector("[data-topology-expand]").addEventListener("click", () => {
  state.collapsed.clear();
  draw();
});
document.querySelector("[data-topology-collapse]").addEventListener("click", () => {
  for (const node of (state.data ? state.data.nodes : [])) {
    if (node.kind === "domain") state.collapsed.add(node.id);
  }
  draw();
});
document.querySelector("[data-topology-fit]").addEventListener("click", () => cy.fit(undefined, 30));
ui.layout.addEventListener("change", () => draw());
ui.isolated.addEventListener("change", () => draw());
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});

window.meshTopology = {cy, refresh, state};
container.dataset.state = "loading";
refresh();
