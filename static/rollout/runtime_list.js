// The runtime list, live: rows, the latest version and the counts.
(function () {
  const live = window.meshLive;
  const tbody = document.getElementById("runtime-rows");
  const application = new URLSearchParams(location.search).get("application");
  const known = {};
  live.handlers.push((message) => {
    const latest = message.latest;
    const link = document.getElementById("latest-version");
    if (latest) { link.textContent = "version " + latest.version; link.href = latest.url; }
    for (const id of message.forgotten || []) delete known[id];
    for (const rt of message.runtimes || []) {
      if (application && rt.application !== application) continue;
      known[rt.runtime_id] = rt;
      const name = document.createElement("a");
      name.href = rt.page_url; name.textContent = rt.application || "(gateway)";
      const code = document.createElement("code"); code.textContent = rt.runtime_id;
      live.render(tbody, rt, [
        live.cell(name), live.cell(rt.host || "—"), live.cell(code, "small"), live.cell(rt.software_version || "—"),
        live.cell((rt.config_version ?? "none") + (latest ? " / " + latest.version : "")),
        live.cell(live.badge(rt.sync)), live.cell(live.badge(rt.state)), live.cell(live.when(rt.last_seen)),
        live.cell((rt.last_error || "").slice(0, 160), "small text-danger"),
      ]);
    }
    const all = Object.values(known);
    const count = (f) => all.filter(f).length;
    document.getElementById("count-in-sync").textContent = count(r => r.state !== "gone" && r.sync === "in_sync");
    document.getElementById("count-behind").textContent = count(r => r.state !== "gone" && r.sync === "behind");
    document.getElementById("count-error").textContent = count(r => r.state !== "gone" && r.sync === "error");
    document.getElementById("count-stale").textContent = count(r => r.state === "stale");
    document.getElementById("count-gone").textContent = count(r => r.state === "gone");
  });
})();
