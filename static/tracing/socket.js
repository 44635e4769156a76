// A websocket to the portal that reconnects, and explains the codes the live views close with
// (tracing/consumers.py): 4401 signed out, 4404 not found or no longer visible. Those two end
// the view; anything else (the portal restarted, the network dropped) reconnects with backoff.

export const CLOSE_REASONS = {
  4401: "Your session ended or your account was deactivated: sign in again to keep watching.",
  4404: "This no longer exists, or you may no longer see it.",
};

/** Open `path` and keep it open. Handlers: opened() after each (re)connect, message(obj),
 *  status(text, style), closed(code, why) when it ends for good. */
export function liveSocket(path, { opened = () => {}, message, status, closed }) {
  let delay = 500;
  let socket = null;
  let stopped = false;
  function open() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + path);
    socket.addEventListener("open", () => { delay = 500; status("live", "success"); opened(); });
    socket.addEventListener("message", (event) => {
      let parsed;
      try { parsed = JSON.parse(event.data); } catch { return; }
      message(parsed);
    });
    socket.addEventListener("close", (event) => {
      if (stopped) return;
      if (CLOSE_REASONS[event.code]) {
        stopped = true;
        status("closed", "danger");
        closed(event.code, CLOSE_REASONS[event.code]);
        return;
      }
      status("reconnecting", "secondary");
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 15000);
    });
  }
  open();
  return {
    send(obj) { if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(obj)); },
  };
}

/** Set a Bootstrap badge's text and colour. */
export function setBadge(element, text, style) {
  if (!element) return;
  element.textContent = text;
  element.className = `badge text-bg-${style}`;
}

/** 1234567 -> "1,234,567". */
export function count(n) {
  return Number(n).toLocaleString("en-US");
}

/** An epoch-ms time as HH:MM:SS.mmm (local time). */
export function clock(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** "1.2 kB" style sizes. */
export function bytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
