"""What the report page carries inline: its style sheet and its script (sortable tables,
tooltips). Nothing here is fetched from anywhere."""

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;
  max-width:1360px;color:#222;padding:0 16px;line-height:1.4}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px}
.badge{display:inline-block;padding:3px 10px;border-radius:12px;font-weight:600;font-size:13px;
  margin-right:6px}
.pass{background:#d8f3e1;color:#17603a}
.fail{background:#fbdada;color:#8e1b1b}
.inconclusive{background:#fff1c9;color:#7a5a00}
.error{background:#eee;color:#555}
.none{background:#eee;color:#555}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{padding:4px 7px;border-bottom:1px solid #eee;text-align:left;vertical-align:top;
  white-space:nowrap}
th{background:#f5f6f8;cursor:pointer;user-select:none;white-space:nowrap}
th.sorted-asc::after{content:' \\25B2'}
th.sorted-desc::after{content:' \\25BC'}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.failed td{background:#fdf3f3}
.wide{overflow-x:auto}
.plots{display:flex;flex-wrap:wrap;gap:12px;margin-top:10px}
.plot{border:1px solid #eee;border-radius:6px;padding:6px;background:#fff}
ul{margin:4px 0 4px 18px;padding:0}
li{margin:2px 0}
.note{color:#666;font-size:13px}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;font-size:12px;padding:4px 7px;
  border-radius:4px;display:none;max-width:420px;z-index:10}
.mark:hover{opacity:.75}
.slower{color:#8e1b1b;font-weight:600}
.faster{color:#17603a;font-weight:600}
code{background:#f3f3f3;padding:0 3px;border-radius:3px}
"""

# Sortable tables (click a header; numbers sort as numbers, empty cells last) and tooltips for
# every element with a data-tip attribute.
SCRIPT = """
(function () {
  'use strict';
  function key(cell) {
    var raw = cell.getAttribute('data-sort');
    var text = raw !== null ? raw : cell.textContent.trim();
    var n = parseFloat(text.replace(/,/g, ''));
    return {empty: text === '' || text === '\\u2013', num: isNaN(n) ? null : n,
            text: text.toLowerCase()};
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.querySelectorAll('thead th');
    heads.forEach(function (th, col) {
      th.addEventListener('click', function () {
        var asc = !th.classList.contains('sorted-asc');
        heads.forEach(function (h) { h.classList.remove('sorted-asc', 'sorted-desc'); });
        th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          if (x.empty !== y.empty) { return x.empty ? 1 : -1; }
          var c = (x.num !== null && y.num !== null) ? x.num - y.num : x.text.localeCompare(y.text);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var tip = document.getElementById('tip');
  document.querySelectorAll('[data-tip]').forEach(function (el) {
    var title = el.querySelector('title');
    if (title) { title.remove(); }
    el.addEventListener('mousemove', function (ev) {
      tip.textContent = el.getAttribute('data-tip');
      tip.style.display = 'block';
      tip.style.left = (ev.clientX + 12) + 'px';
      tip.style.top = (ev.clientY + 12) + 'px';
    });
    el.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
  });
  document.body.setAttribute('data-ready', 'yes');
}());
"""
