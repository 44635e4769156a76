// One event, opened from a row of the live tail (and, later, of the event browser): every
// attribute and extension, the data pretty-printed, as text, as a hex dump or as base64, and
// copy buttons for the id, the event as JSON, and a curl command that republishes it through a
// runtime in binary mode. Markup: templates/tracing/event_detail.html (include it once per page).
//
//   import { EventDetail } from "./event_detail.js";
//   const detail = new EventDetail(document.getElementById("event-detail"), { journeyUrl });
//   detail.show(copy);  // a tap copy: {attributes, data, data_encoding, data_size, data_truncated,
//                       //              topic, masked}
//
// Everything is written with textContent: event content is never parsed as HTML. Nor is JSON data
// parsed and written again: it comes as the producer's text (tracing.tail.view) and is shown,
// indented and copied as such, since JSON.parse rounds the numbers a double cannot hold
// (12345678901234567890123, 0.1000000000000000055511151231257827).

const CORE = ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"];
const RUNTIME_EXTENSIONS = ["meshroute"]; // added by the runtime; a republish must not carry them

const utf8 = new TextEncoder();

function base64ToBytes(text) {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

function bytesToBase64(data) {
  let binary = "";
  for (let i = 0; i < data.length; i += 0x8000) binary += String.fromCharCode(...data.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** The data as bytes (UTF-8 for JSON and text), or null when the event has none. */
export function dataBytes(copy) {
  if (!("data" in copy) || copy.masked) return null;
  if (copy.data_encoding === "base64") return base64ToBytes(copy.data);
  return utf8.encode(String(copy.data));
}

// A piece of JSON text: a string (escapes and all), a bracket, a comma, a colon, or a number or literal.
const JSON_PIECE = /"(?:[^"\\]+|\\.)*"|[\][{},:]|[^\][{},:"\s]+/g;

/** Valid JSON text indented by two spaces, as JSON.stringify(value, null, 2) lays it out, each
 *  number, string and literal kept as written (meshadmin.formatting.indented_json does the same). */
export function indentJson(text) {
  let out = "";
  let depth = 0;
  let opened = false; // the last piece opened an object or array: its first member starts a line
  for (const [piece] of text.matchAll(JSON_PIECE)) {
    if (piece === "}" || piece === "]") {
      depth--;
      out += opened ? piece : "\n" + "  ".repeat(depth) + piece;
      opened = false;
      continue;
    }
    if (opened) {
      out += "\n" + "  ".repeat(depth);
      opened = false;
    }
    if (piece === ",") out += ",\n" + "  ".repeat(depth);
    else if (piece === ":") out += ": ";
    else {
      out += piece;
      if (piece === "{" || piece === "[") {
        depth++;
        opened = true;
      }
    }
  }
  return out;
}

function isJson(text) {
  try {
    JSON.parse(text); // only to know: the text is what is shown
    return true;
  } catch {
    return false;
  }
}

/** A classic hex dump: offset, 16 bytes in hex, the printable ones as text. */
export function hexDump(data) {
  const lines = [];
  for (let offset = 0; offset < data.length; offset += 16) {
    const row = data.subarray(offset, offset + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ").padEnd(47, " ");
    const text = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${offset.toString(16).padStart(8, "0")}  ${hex}  |${text}|`);
  }
  return lines.join("\n");
}

/** The data in one view: pretty, text, hex or base64. */
export function renderData(copy, view) {
  const data = dataBytes(copy);
  if (data === null) return "";
  if (view === "hex") return hexDump(data);
  if (view === "base64") return copy.data_encoding === "base64" ? copy.data : bytesToBase64(data);
  if (copy.data_encoding === "base64") return new TextDecoder("utf-8").decode(data);
  const text = String(copy.data);
  if (view === "pretty" && (copy.data_encoding === "json" || isJson(text))) return indentJson(text);
  return text;
}

/** The event in the CloudEvents JSON format (what a structured-mode publish would send), as text:
 *  the attributes, then the data as it was published. */
export function structuredText(copy) {
  const attributes = JSON.stringify({ ...copy.attributes });
  if (copy.masked || !("data" in copy)) return attributes;
  const data = copy.data_encoding === "base64" ? `"data_base64":${JSON.stringify(copy.data)}`
    : `"data":${copy.data_encoding === "json" ? copy.data : JSON.stringify(copy.data)}`;
  return attributes === "{}" ? `{${data}}` : `${attributes.slice(0, -1)},${data}}`;
}

function shellQuote(text) {
  return "'" + String(text).replace(/'/g, "'\\''") + "'";
}

// CloudEvents HTTP binding: header values percent-encode space, '"', '%' and non-printable ASCII.
function headerValue(value) {
  const text = typeof value === "string" ? value : String(value);
  let out = "";
  for (const ch of text) {
    const code = ch.codePointAt(0);
    if (code > 0x20 && code < 0x7f && ch !== '"' && ch !== "%") out += ch;
    else out += Array.from(utf8.encode(ch), (b) => "%" + b.toString(16).toUpperCase().padStart(2, "0")).join("");
  }
  return out;
}

/** A curl command that republishes the event through a runtime in binary mode, or null when the
 *  page does not hold the whole event (masked, or data cut at the tap's limit). */
export function curlCommand(copy) {
  if (copy.masked || copy.data_truncated) return null;
  const attributes = copy.attributes || {};
  const lines = [`curl -X POST "\${MESH_RUNTIME_URL:-http://127.0.0.1:8700}/v1/topics/${encodeURIComponent(copy.topic || "")}/events"`,
    `-H "Authorization: Bearer $MESH_KEY"`];
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "datacontenttype" || RUNTIME_EXTENSIONS.includes(name)) continue;
    lines.push(`-H ${shellQuote(`ce-${name}: ${headerValue(value)}`)}`);
  }
  let prefix = "";
  if ("data" in copy) {
    const type = attributes.datacontenttype || (copy.data_encoding === "json" ? "application/json" : null);
    if (type) lines.push(`-H ${shellQuote(`Content-Type: ${type}`)}`);
    if (copy.data_encoding === "base64") {
      prefix = `printf '%s' ${shellQuote(copy.data)} | base64 -d | `;
      lines.push("--data-binary @-");
    } else {
      lines.push(`--data-binary ${shellQuote(copy.data)}`);
    }
  }
  return prefix + lines.join(" \\\n  ");
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    return done;
  }
}

function row(name, value) {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  th.textContent = name;
  const td = document.createElement("td");
  td.className = "text-break font-monospace small";
  td.textContent = typeof value === "string" ? value : JSON.stringify(value);
  tr.append(th, td);
  return tr;
}

function sizeText(n) {
  if (n === null || n === undefined) return "";
  return n < 1024 ? `${n} bytes` : `${(n / 1024).toFixed(1)} kB (${n.toLocaleString("en-US")} bytes)`;
}

export class EventDetail {
  constructor(root, { journeyUrl = "/events/__id__/" } = {}) {
    this.root = root;
    this.journeyUrl = journeyUrl;
    this.copy = null;
    this.view = "pretty";
    this.part = (role) => root.querySelector(`[data-role="${role}"]`);
    root.querySelectorAll("[data-view]").forEach((button) => {
      button.addEventListener("click", () => this.showData(button.dataset.view));
    });
    root.querySelectorAll("[data-copy]").forEach((button) => {
      button.addEventListener("click", () => this.copyOut(button.dataset.copy));
    });
  }

  show(copy) {
    this.copy = copy;
    const attributes = copy.attributes || {};
    this.part("title").textContent = `${copy.topic ? copy.topic + " · " : ""}${attributes.id ?? "event"}`;
    const journey = this.part("journey");
    journey.href = this.journeyUrl.replace("__id__", encodeURIComponent(attributes.id ?? ""));
    const core = [];
    const extensions = [];
    for (const [name, value] of Object.entries(attributes)) (CORE.includes(name) ? core : extensions).push([name, value]);
    core.sort((a, b) => CORE.indexOf(a[0]) - CORE.indexOf(b[0]));
    for (const [name, value] of [["outcome", copy.outcome], ["application", copy.application], ["stream id", copy.stream_id],
                                 ["runtime", copy.runtime], ["reason", copy.reason]]) {
      if (value) core.push([name, value]);
    }
    this.part("attributes").replaceChildren(...core.map(([n, v]) => row(n, v)));
    this.part("extensions").replaceChildren(...extensions.map(([n, v]) => row(n, v)));
    this.part("extensions-block").hidden = extensions.length === 0;
    this.part("masked-note").hidden = !copy.masked;
    const hasData = !copy.masked && "data" in copy;
    this.part("data-size").textContent = copy.data_size ? sizeText(copy.data_size) : "none";
    const truncated = this.part("truncated");
    truncated.hidden = !copy.data_truncated;
    truncated.textContent = copy.data_truncated
      ? "The live view carries the first part of the data only (the runtime's tap limit); the whole event is in the store." : "";
    this.part("views").hidden = !hasData;
    this.root.querySelector('[data-copy="curl"]').disabled = curlCommand(copy) === null;
    this.showData(copy.data_encoding === "base64" ? "hex" : copy.data_encoding === "text" ? "text" : "pretty");
    this.part("copied").textContent = "";
    window.bootstrap.Modal.getOrCreateInstance(this.root).show();
  }

  showData(view) {
    this.view = view;
    this.root.querySelectorAll("[data-view]").forEach((button) => {
      button.classList.toggle("active", button.dataset.view === view);
    });
    const pre = this.part("data");
    const copy = this.copy;
    pre.dataset.view = view;
    pre.textContent = copy.masked ? `(hidden: ${sizeText(copy.data_size) || "no data"})`
      : "data" in copy ? renderData(copy, view) : "(no data)";
  }

  async copyOut(what) {
    const copy = this.copy;
    const text = what === "id" ? String(copy.attributes?.id ?? "")
      : what === "json" ? indentJson(structuredText(copy)) : curlCommand(copy);
    if (text === null) return;
    const done = await copyText(text);
    this.part("copied").textContent = done ? `Copied ${what === "json" ? "JSON" : what}.` : "Copying is not allowed here.";
  }
}
