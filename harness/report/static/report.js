// Charts from the embedded JSON specs, one legend for the per-target charts, sortable tables, gallery filters
// and pages, and a full-size image viewer. Plain JavaScript; nothing here makes a network request.
(function () {
  "use strict";
  var specs = JSON.parse(document.getElementById("chart-data").textContent || "{}");
  var shared = [];
  document.querySelectorAll("[data-chart]").forEach(function (div) {
    var spec = specs[div.getAttribute("data-chart")];
    if (spec && window.Plotly) {
      // The panel keeps the figure's height: on a resize plotly sizes an autosized figure from its panel.
      if (spec.layout && spec.layout.height) { div.style.height = spec.layout.height + "px"; }
      window.Plotly.newPlot(div, spec.data, spec.layout, { responsive: true, displaylogo: false, displayModeBar: false });
      // On a phone a figure may shorten its tick labels and shrink its cell text (layout.meta.narrow).
      var narrow = spec.layout && spec.layout.meta && spec.layout.meta.narrow;
      if (narrow && div.clientWidth < 520) {
        if (narrow.style) { window.Plotly.restyle(div, narrow.style); }
        if (narrow.layout) { window.Plotly.relayout(div, narrow.layout); }
      }
      if (spec.shared_legend) { shared.push(div); }
    }
  });

  document.querySelectorAll(".legend button[data-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var on = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", on ? "true" : "false");
      var name = button.getAttribute("data-target");
      shared.forEach(function (div) {
        var indexes = [];
        (div.data || []).forEach(function (trace, i) { if (trace.name === name) { indexes.push(i); } });
        if (indexes.length) { window.Plotly.restyle(div, { visible: on ? true : false }, indexes); }
      });
    });
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

  // Gallery: a tile is shown when it matches the target and outcome filters, a challenge when it matches the
  // challenge filter and shows a tile; the shown challenges are split into pages of data-page-size.
  var items = document.getElementById("gallery-items");
  var form = document.getElementById("gallery-filters");
  if (items && form) {
    var size = parseInt(items.getAttribute("data-page-size"), 10) || 8;
    var articles = Array.prototype.slice.call(items.querySelectorAll("article.challenge"));
    var pagers = Array.prototype.slice.call(document.querySelectorAll("#gallery nav.pager"));
    var count = document.getElementById("gallery-count");
    var page = 0;

    var render = function () {
      var target = form.elements.target.value, challenge = form.elements.challenge.value;
      var outcome = form.elements.outcome.value;
      var matching = [], tiles = 0;
      articles.forEach(function (article) {
        var shown = 0;
        article.querySelectorAll("figure.tile").forEach(function (tile) {
          var ok = (!target || tile.getAttribute("data-target") === target) &&
                   (!outcome || tile.getAttribute("data-outcome") === outcome);
          tile.hidden = !ok;
          if (ok) { shown += 1; }
        });
        var match = shown > 0 && (!challenge || article.getAttribute("data-challenge") === challenge);
        if (match) { matching.push(article); tiles += shown; }
        article.hidden = true;
      });
      var pages = Math.max(1, Math.ceil(matching.length / size));
      page = Math.min(page, pages - 1);
      matching.slice(page * size, (page + 1) * size).forEach(function (a) { a.hidden = false; });
      count.textContent = tiles + " output(s) in " + matching.length + " challenge(s)" +
        (pages > 1 ? ", page " + (page + 1) + " of " + pages : "");
      pagers.forEach(function (nav) {
        nav.textContent = "";
        nav.hidden = pages < 2;
        var add = function (label, to, current) {
          var b = document.createElement("button");
          b.type = "button";
          b.textContent = label;
          b.disabled = to < 0 || to >= pages || current;
          if (current) { b.setAttribute("aria-current", "page"); }
          b.addEventListener("click", function () {
            page = to;
            render();
            document.getElementById("gallery").scrollIntoView();
          });
          nav.appendChild(b);
        };
        add("‹ previous", page - 1, false);
        for (var i = 0; i < pages; i += 1) {
          if (pages <= 9 || i === 0 || i === pages - 1 || Math.abs(i - page) <= 2) {
            add(String(i + 1), i, i === page);
          } else if (Math.abs(i - page) === 3) {
            var gap = document.createElement("span");
            gap.textContent = "…";
            nav.appendChild(gap);
          }
        }
        add("next ›", page + 1, false);
      });
    };
    form.addEventListener("change", function () { page = 0; render(); });
    render();
  }

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
