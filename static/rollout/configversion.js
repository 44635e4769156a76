// A config version's page: which runtimes have applied it, live.
(function () {
  const live = window.meshLive;
  const tbody = document.getElementById("runtime-rows");
  const VERSION = Number(tbody.dataset.version);  // this page's version
  const known = {};
  live.handlers.push((message) => {
    for (const id of message.forgotten || []) delete known[id];
    for (const rt of message.runtimes || []) {
      if (rt.state === "gone") {
        delete known[rt.runtime_id];
        const row = tbody.querySelector(`tr[data-runtime-id="${CSS.escape(rt.runtime_id)}"]`);
        if (row) row.remove();
        continue;
      }
      known[rt.runtime_id] = rt;
      const applied = rt.config_version !== null && rt.config_version >= VERSION;
      const status = applied ? live.badge("applied") : (rt.last_error ? live.badge("error") : live.badge("pending"));
      if (!applied && rt.last_error) status.title = rt.last_error;
      const name = document.createElement("a");
      name.href = rt.page_url; name.textContent = (rt.application || "(gateway)") + " ";
      const host = document.createElement("span"); host.className = "small text-body-secondary"; host.textContent = rt.host;
      const first = live.cell(name); first.appendChild(host);
      live.render(tbody, rt, [first, live.cell(rt.config_version ?? "none"), live.cell(status)]);
    }
    const all = Object.values(known);
    document.getElementById("applied-count").textContent = all.filter(r => r.config_version !== null && r.config_version >= VERSION).length;
    document.getElementById("runtime-count").textContent = all.length;
  });
})();
