// Live updates from the runtimes websocket (its path: data-socket on this script tag): rows keyed by runtime id, rendered as runtime_row.html renders them.
// Loaded before the page's own script, which adds a handler to meshLive.handlers.
(function () {
  const SOCKET = document.currentScript.dataset.socket;  // the path, from the template
  const BADGES = {in_sync: ["success", "in sync"], behind: ["warning", "behind"], error: ["danger", "error"],
                  healthy: ["success", "healthy"], stale: ["warning", "stale"], gone: ["secondary", "gone"],
                  unknown: ["light border", "unknown"], applied: ["success", "applied"], pending: ["warning", "pending"]};
  function badge(value) {
    const [style, text] = BADGES[value] || ["light border", value];
    const span = document.createElement("span");
    span.className = "badge text-bg-" + style;
    span.textContent = text;
    return span;
  }
  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    return td;
  }
  // A time as the templates' |timestamp filter shows it: "2026-05-01 12:34:56 UTC" in a <time>.
  function when(iso) {
    if (!iso) return "—";
    const utc = new Date(iso).toISOString().slice(0, 19);
    const time = document.createElement("time");
    time.dateTime = time.title = utc + "+00:00";
    time.textContent = utc.replace("T", " ") + " UTC";
    return time;
  }
  const live = window.meshLive = {latest: null, handlers: []};
  // Each page says how a runtime looks in its table: rowFor(runtime, latest) returns the cells.
  live.render = function (tbody, runtime, cells) {
    let row = tbody.querySelector(`tr[data-runtime-id="${CSS.escape(runtime.runtime_id)}"]`);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.runtimeId = runtime.runtime_id;
      row.dataset.testid = "runtime-row";
      row.setAttribute("data-testid", "runtime-row");
      tbody.appendChild(row);
      const empty = tbody.querySelector("[data-empty]");
      if (empty) empty.remove();
    }
    row.replaceChildren(...cells);
    row.dataset.state = runtime.state;
    row.dataset.sync = runtime.sync;
    row.dataset.configVersion = runtime.config_version ?? "";
    return row;
  };
  live.badge = badge; live.cell = cell; live.when = when;
  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + SOCKET);
    const status = document.getElementById("live-status");
    socket.onopen = () => { delay = 500; if (status) { status.textContent = "live"; status.className = "badge text-bg-success"; } };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.latest !== undefined) live.latest = message.latest;
      for (const id of message.forgotten || []) {  // silent for long enough: deleted by the portal
        document.querySelectorAll(`tr[data-runtime-id="${CSS.escape(id)}"]`).forEach((row) => row.remove());
      }
      for (const handler of live.handlers) handler(message);
    };
    socket.onclose = () => {
      if (status) { status.textContent = "reconnecting"; status.className = "badge text-bg-secondary"; }
      setTimeout(() => connect(Math.min(delay * 2, 15000)), delay);
    };
  }
  document.addEventListener("DOMContentLoaded", () => connect(500));
})();
