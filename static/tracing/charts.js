// Live charts from /ws/charts/ (tracing.chart_consumer), drawn with the vendored Chart.js.
//
// Each `.mesh-charts` block names its charts in a json_script element (id in data-charts); the
// page watches them over one websocket, in the range the picker says. The server sends every
// refresh of every chart; a chart whose Prometheus failed keeps its last data and says since
// when. A block with [data-runtimes-panel] also lists the runtimes out of date or gone, from
// /ws/runtimes/ (rollout.consumers). No inline script or style: the page will run under a CSP.

const PALETTE = ["#0d6efd", "#dc3545", "#198754", "#fd7e14", "#6f42c1", "#20c997", "#d63384", "#6c757d",
  "#0dcaf0", "#ffc107"];

function clock(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleTimeString() : "—";
}

function tickTime(ms, spanSeconds) {
  const date = new Date(ms);
  if (spanSeconds > 2 * 86400) {
    return date.toLocaleDateString([], {month: "short", day: "numeric"}) + " " +
      date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  }
  return date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

function formatValue(value, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  let text;
  if (unit === "s") {
    text = value < 1 ? `${(value * 1000).toPrecision(3)} ms` : `${value.toPrecision(3)} s`;
    return text;
  }
  const abs = Math.abs(value);
  if (abs >= 1e9) text = `${(value / 1e9).toPrecision(3)}G`;
  else if (abs >= 1e6) text = `${(value / 1e6).toPrecision(3)}M`;
  else if (abs >= 1e4) text = `${(value / 1e3).toPrecision(3)}k`;
  else if (abs >= 100 || Number.isInteger(value)) text = `${Math.round(value)}`;
  else text = value.toPrecision(3).replace(/\.?0+$/, "");
  return unit ? `${text} ${unit}` : text;
}

function legendOf(series, spec) {
  for (const key of spec.legend) {
    const value = key === "name" ? series.name : series.labels[key];
    if (value) return value;
  }
  const labels = Object.entries(series.labels).map(([k, v]) => `${k}=${v}`).join(", ");
  return labels || spec.title;
}

class ChartView {
  constructor(card, spec) {
    this.card = card;
    this.spec = spec;
    this.note = card.querySelector("[data-chart-note]");
    this.colours = new Map();
    this.chart = null;
    if (spec.kind === "range") this.canvas = card.querySelector("[data-chart-canvas]");
    else this.rows = card.querySelector("[data-chart-rows]");
  }

  colour(label) {
    if (!this.colours.has(label)) this.colours.set(label, PALETTE[this.colours.size % PALETTE.length]);
    return this.colours.get(label);
  }

  draw() {
    if (this.chart || !window.Chart) return;
    const unit = this.spec.unit;
    this.span = 900;
    this.chart = new window.Chart(this.canvas, {
      type: "line",
      data: {datasets: []},
      options: {
        animation: false, parsing: false, normalized: true, responsive: true, maintainAspectRatio: false,
        elements: {point: {radius: 0}, line: {borderWidth: 1.5}},
        interaction: {mode: "nearest", intersect: false, axis: "x"},
        scales: {
          x: {type: "linear", ticks: {maxTicksLimit: 7, callback: (v) => tickTime(v, this.span)}},
          y: {beginAtZero: true, ticks: {maxTicksLimit: 6, callback: (v) => formatValue(v, unit === "s" ? "s" : "")}},
        },
        plugins: {
          legend: {position: "bottom", labels: {boxWidth: 10}},
          tooltip: {callbacks: {
            title: (items) => new Date(items[0].parsed.x).toLocaleTimeString(),
            label: (item) => `${item.dataset.label}: ${formatValue(item.parsed.y, unit)}`,
          }},
        },
      },
    });
  }

  reset() {
    if (this.chart) {
      this.chart.data.datasets = [];
      this.chart.update("none");
    }
    if (this.rows) this.rows.replaceChildren();
    this.say("Loading…", "loading");
  }

  say(text, state) {
    this.note.textContent = text;
    this.note.classList.toggle("mesh-chart-stale", state === "stale");
    this.card.dataset.state = state;
  }

  fail(message) {
    this.say(message, "refused");
  }

  update(msg) {
    const series = msg.series || [];
    const latest = {};
    if (this.spec.kind === "range") {
      this.draw();
      this.span = (msg.end || 0) - (msg.start || 0);
      const datasets = series.map((s) => {
        const label = legendOf(s, this.spec);
        const points = s.points.map(([t, v]) => ({x: t * 1000, y: v}));
        const last = [...s.points].reverse().find(([, v]) => v !== null);
        latest[label] = last ? last[1] : null;
        const colour = this.colour(label);
        return {label, data: points, borderColor: colour, backgroundColor: colour, spanGaps: false};
      });
      if (this.chart) {
        this.chart.data.datasets = datasets;
        if (msg.start && msg.end) {
          this.chart.options.scales.x.min = msg.start * 1000;
          this.chart.options.scales.x.max = msg.end * 1000;
        }
        this.chart.update("none");
      }
    } else {
      const items = series.map((s) => {
        const label = legendOf(s, this.spec);
        const value = s.points.length ? s.points[0][1] : null;
        latest[label] = value;
        const item = document.createElement("li");
        item.className = "list-group-item d-flex justify-content-between align-items-start";
        const name = document.createElement(s.url ? "a" : "span");
        name.className = "ms-2 me-auto text-break";
        name.textContent = label;
        if (s.url) name.href = s.url;
        const badge = document.createElement("span");
        badge.className = "badge text-bg-light border";
        badge.textContent = formatValue(value, this.spec.unit);
        item.append(name, badge);
        return item;
      });
      this.rows.replaceChildren(...items);
    }
    this.card.dataset.latest = JSON.stringify(latest);
    if (msg.error) {
      const kept = msg.fetched_at ? `showing the data of ${clock(msg.fetched_at)}` : "no data yet";
      this.say(`${msg.error} Failing since ${clock(msg.error_since)}; ${kept}. ${msg.hint || ""}`.trim(), "stale");
    } else if (!series.length) {
      this.say(this.spec.empty, "empty");
    } else {
      this.say(`Updated ${clock(msg.fetched_at)}`, "ok");
    }
  }
}

function socketUrl(path) {
  return `${window.location.protocol === "https:" ? "wss" : "ws"}://${window.location.host}${path}`;
}

function startCharts(root) {
  const specs = JSON.parse(document.getElementById(root.dataset.charts).textContent);
  const views = new Map();
  for (const spec of specs) {
    const card = root.querySelector(`[data-chart-card="${spec.id}"]`);
    if (card) views.set(spec.id, new ChartView(card, spec));
  }
  const status = root.querySelector("[data-charts-status]");
  let range = root.dataset.defaultRange;
  let socket = null;
  let retry = 500;

  const watch = () => {
    if (socket && socket.readyState === WebSocket.OPEN) {
      const charts = specs.map((s) => ({id: s.id, chart: s.chart, object: s.object}));
      socket.send(JSON.stringify({watch: charts, range}));
    }
  };
  const connect = () => {
    socket = new WebSocket(socketUrl("/ws/charts/"));
    socket.addEventListener("open", () => {
      retry = 500;
      status.textContent = `Live · ${range}`;
      watch();
    });
    socket.addEventListener("message", (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "data") views.get(msg.id)?.update(msg);
      else if (msg.type === "error" && msg.id) views.get(msg.id)?.fail(msg.message);
      else if (msg.type === "error") status.textContent = msg.message;
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4401) {
        status.textContent = "Signed out: sign in again to see live charts.";
        return;
      }
      status.textContent = "Connection lost; reconnecting… (the charts keep their data)";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    });
  };

  root.querySelectorAll("[data-range]").forEach((button) => {
    button.addEventListener("click", () => {
      range = button.dataset.range;
      root.querySelectorAll("[data-range]").forEach((b) => b.classList.toggle("active", b === button));
      views.forEach((view) => view.reset());
      status.textContent = `Live · ${range}`;
      watch();
    });
  });
  connect();
}

function startRuntimes(panel) {
  const list = panel.querySelector("[data-runtime-rows]");
  const summary = panel.querySelector("[data-runtime-summary]");
  const runtimes = new Map();
  const render = () => {
    const attention = [...runtimes.values()]
      .filter((r) => r.state !== "healthy" || r.sync === "behind" || r.sync === "error")
      .sort((a, b) => (a.state === "gone") - (b.state === "gone") || a.runtime_id.localeCompare(b.runtime_id));
    summary.textContent = runtimes.size === 0 ? "No runtime has reported yet." :
      attention.length === 0 ? `All ${runtimes.size} runtimes are alive and up to date.` :
        `${attention.length} of ${runtimes.size} runtimes need attention.`;
    list.replaceChildren(...attention.slice(0, 10).map((r) => {
      const item = document.createElement("li");
      item.className = "list-group-item d-flex justify-content-between";
      const link = document.createElement("a");
      link.href = r.page_url;
      link.className = "text-break";
      link.textContent = `${r.application || "gateway"} · ${r.runtime_id}`;
      const badge = document.createElement("span");
      const bad = r.state === "gone" || r.sync === "error";
      badge.className = `badge ${bad ? "text-bg-danger" : "text-bg-warning"}`;
      badge.textContent = r.state !== "healthy" ? r.state : r.sync === "error" ? "config error" :
        `config ${r.config_version ?? "none"}`;
      item.append(link, badge);
      return item;
    }));
  };
  const connect = () => {
    const socket = new WebSocket(socketUrl("/ws/runtimes/"));
    socket.addEventListener("message", (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "snapshot") runtimes.clear();
      for (const runtime of msg.runtimes || []) runtimes.set(runtime.runtime_id, runtime);
      for (const id of msg.forgotten || []) runtimes.delete(id);
      render();
    });
    socket.addEventListener("close", (event) => {
      if (event.code !== 4403) setTimeout(connect, 2000);
    });
  };
  connect();
}

function start() {
  document.querySelectorAll(".mesh-charts[data-charts]").forEach(startCharts);
  document.querySelectorAll("[data-runtimes-panel]").forEach(startRuntimes);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
