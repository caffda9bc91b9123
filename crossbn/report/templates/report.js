// Enhancement only: every page reads fully without it. Sorts a table.sortable
// by a clicked header (numbers by data-sort when present) and filters the
// findings table by the text typed into #filter.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  function cellValue(row, i) {
    var cell = row.cells[i];
    if (!cell) return "";
    var key = cell.getAttribute("data-sort");
    if (key !== null) return parseFloat(key);
    var text = cell.textContent.trim();
    var num = parseFloat(text);
    return isNaN(num) || String(num) !== text ? text.toLowerCase() : num;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var body = table.tBodies[0];
    table.querySelectorAll("thead th").forEach(function (th, i) {
      th.classList.add("sort-key");
      th.addEventListener("click", function () {
        var descending = th.getAttribute("aria-sort") !== "descending";
        table.querySelectorAll("thead th").forEach(function (o) { o.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, i), y = cellValue(b, i);
          var c = x < y ? -1 : x > y ? 1 : 0;
          return descending ? -c : c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var filter = document.getElementById("filter");
  var table = document.getElementById("findings-table");
  if (filter && table) {
    filter.addEventListener("input", function () {
      var q = filter.value.toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.hidden = q !== "" && r.textContent.toLowerCase().indexOf(q) < 0;
      });
    });
  }
})();
