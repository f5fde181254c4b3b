// Charts from the embedded JSON specs, sortable tables, and a full-size image viewer. No network access.
(function () {
  "use strict";
  var specs = JSON.parse(document.getElementById("chart-data").textContent || "{}");
  document.querySelectorAll("[data-chart]").forEach(function (div) {
    var spec = specs[div.getAttribute("data-chart")];
    if (spec && window.Plotly) {
      window.Plotly.newPlot(div, spec.data, spec.layout, { responsive: true, displaylogo: false });
    }
  });

  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (!numeric) { return raw.toLowerCase(); }
    var value = parseFloat(raw);
    return isNaN(value) ? Infinity : value;
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(headers, function (th, index) {
      th.setAttribute("tabindex", "0");
      function sort() {
        var numeric = th.getAttribute("data-type") === "num";
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
          return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sort(); } });
    });
  });

  var dialog = document.getElementById("zoom");
  if (dialog && dialog.showModal) {
    var img = dialog.querySelector("img");
    document.querySelectorAll("a.zoom").forEach(function (link) {
      link.addEventListener("click", function (e) {
        e.preventDefault();
        img.src = link.getAttribute("href");
        dialog.showModal();
      });
    });
    dialog.querySelector(".close").addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("click", function (e) { if (e.target === dialog) { dialog.close(); } });
  }
})();
