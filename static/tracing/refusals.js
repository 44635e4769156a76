// "Refused" panels (templates/tracing/refusals_panel.html): refused publishes, live, newest on
// top, each saying who was refused where and why, with links to the application, the topic, the
// deciding rule and the event's journey. Every panel on the page gets its own socket.

import { clock, count, liveSocket, setBadge } from "./socket.js";

const KEEP = 50; // rows a panel keeps

function link(text, url) {
  if (!url) {
    const span = document.createElement("span");
    span.textContent = text;
    return span;
  }
  const a = document.createElement("a");
  a.href = url;
  a.textContent = text;
  return a;
}

function item(refusal, journeyUrl) {
  const li = document.createElement("li");
  li.className = "list-group-item small";
  li.setAttribute("data-testid", "refusal");
  li.dataset.summary = refusal.summary;
  li.dataset.reason = refusal.reason;
  const line = document.createElement("div");
  line.append(link(refusal.application.name || "an unknown key", refusal.application.url), " refused on ",
    link(refusal.topic.name, refusal.topic.url), " ");
  if (refusal.reason === "forbidden" && refusal.rule) {
    line.append("by rule ", link(refusal.rule.label, refusal.rule.url));
  } else {
    line.append(`: ${refusal.why}`);
  }
  const meta = document.createElement("div");
  meta.className = "text-body-secondary";
  meta.append(`${clock(refusal.at)} · ${refusal.status} ${refusal.reason}`);
  if (refusal.event_id) {
    meta.append(" · ");
    meta.append(link(refusal.event_id, journeyUrl.replace("__id__", encodeURIComponent(refusal.event_id))));
    if (refusal.events > 1) meta.append(` and ${count(refusal.events - 1)} more in the request`);
  }
  li.append(line, meta);
  if (refusal.message) {
    const message = document.createElement("div");
    message.className = "text-body-secondary font-monospace text-break refusal-message";
    message.textContent = refusal.message;
    li.append(message);
  }
  return li;
}

function panel(section) {
  const part = (role) => section.querySelector(`[data-role="${role}"]`);
  const list = part("list");
  const scope = section.dataset.scope;
  const path = scope === "all" ? "/ws/tracing/refusals/" : `/ws/tracing/${scope}s/${section.dataset.pk}/refusals/`;
  let journeyUrl = "/events/__id__/";
  let skipped = 0;
  liveSocket(path, {
    opened() { list.querySelectorAll('[data-kept="true"]').forEach((li) => li.remove()); },
    message(message) {
      if (message.type === "hello") journeyUrl = message.journey_url || journeyUrl;
      if (message.type !== "refusals") return;
      if (message.refusals.length) {
        const empty = part("empty");
        if (empty) empty.remove();
        const fragment = document.createDocumentFragment();
        for (let i = message.refusals.length - 1; i >= 0; i--) {
          const li = item(message.refusals[i], journeyUrl);
          if (message.kept) li.dataset.kept = "true";
          fragment.appendChild(li);
        }
        list.prepend(fragment);
        while (list.children.length > KEEP) list.lastElementChild.remove();
      }
      if (message.skipped) {
        skipped += message.skipped;
        const note = part("skipped");
        note.textContent = `${count(skipped)} more not shown (too many at once)`;
        note.hidden = false;
      }
    },
    status(text, style) { setBadge(part("status"), text, style); },
    closed(code, why) { setBadge(part("status"), "closed", "danger"); part("status").title = why; },
  });
}

document.querySelectorAll("[data-refusals]").forEach(panel);
