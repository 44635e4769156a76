// Behaviour that templates ask for with data-* attributes: the Content-Security-Policy allows no
// inline script or event handler, so it lives here, delegated from the document (it also serves
// rows that htmx swaps in later).

// A header checkbox with data-select-all (un)checks the row checkboxes of its table.
document.addEventListener("change", (event) => {
  const all = event.target.closest("[data-select-all]");
  if (!all) return;
  all.closest("table").querySelectorAll("input[name=pk]").forEach((box) => { box.checked = all.checked; });
});
