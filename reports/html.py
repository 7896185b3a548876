"""The report as one self-contained HTML page: inline CSS, inline SVG plots (reports/svg.py) and
a few lines of inline script (sortable tables, tooltips). No external URL of any kind, so the
page opens from a CI artifact, an e-mail or an air-gapped machine.

Sections: headline and gate verdict, the cell table, failed and non-passing cells, latency
distributions per device (raw samples), latency vs accuracy with the Pareto front per device,
compute-unit shares, the plan's history with detected changes marked, and the environment.
"""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING, Any

from reports import svg
from reports.frame import cell_label
from reports.markdown import accuracy_text, compute_text, p_text, parity_text, summary_line, when

if TYPE_CHECKING:  # pragma: no cover
    from reports.report import Report

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1360px;
color:#222;padding:0 16px;line-height:1.4}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px}.badge{display:inline-block;padding:3px 10px;border-radius:12px;font-weight:600;
font-size:13px;margin-right:6px}.pass{background:#d8f3e1;color:#17603a}.fail{background:#fbdada;color:#8e1b1b}
.inconclusive{background:#fff1c9;color:#7a5a00}.error{background:#eee;color:#555}.none{background:#eee;color:#555}
table{border-collapse:collapse;font-size:12px;width:100%}th,td{padding:4px 7px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top;white-space:nowrap}th{background:#f5f6f8;cursor:pointer;user-select:none;white-space:nowrap}
th.sorted-asc::after{content:' \\25B2'}th.sorted-desc::after{content:' \\25BC'}td.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}tr.failed td{background:#fdf3f3}
.wide{overflow-x:auto}.plots{display:flex;flex-wrap:wrap;gap:12px;margin-top:10px}.plot{border:1px solid #eee;border-radius:6px;padding:6px;background:#fff}
ul{margin:4px 0 4px 18px;padding:0}li{margin:2px 0}.note{color:#666;font-size:13px}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;font-size:12px;padding:4px 7px;border-radius:4px;
display:none;max-width:420px;z-index:10}.mark:hover{opacity:.75}.slower{color:#8e1b1b;font-weight:600}
.faster{color:#17603a;font-weight:600}code{background:#f3f3f3;padding:0 3px;border-radius:3px}
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
    return {empty: text === '' || text === '\\u2013', num: isNaN(n) ? null : n, text: text.toLowerCase()};
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


def _num_td(v: Any, digits: int = 1, suffix: str = "") -> str:
    if v is None or v != v:
        return '<td class="num" data-sort="">–</td>'
    return f'<td class="num" data-sort="{float(v)!r}">{v:,.{digits}f}{suffix}</td>'


def _td(text: Any, sort: Any = None) -> str:
    attr = f' data-sort="{escape(str(sort), quote=True)}"' if sort is not None else ""
    return f"<td{attr}>{escape(str(text))}</td>"


def _badge(verdict: str | None) -> str:
    v = verdict or "none"
    return f'<span class="badge {escape(v)}">{escape(verdict or "no verdict")}</span>'


def cell_table(report: Report) -> str:
    heads = ["model", "format", "device", "verdict", "p50 ms", "p90 ms", "p90 95% CI", "p99 ms", "CV",
             "n", "load cold ms", "load warm ms", "first inf. ms", "peak MB", "compute unit", "parity",
             "accuracy", "status"]
    out = ['<div class="wide"><table class="sortable" id="cells"><thead><tr>' + "".join(f"<th>{h}</th>" for h in heads)
           + "</tr></thead><tbody>"]
    for _, r in report.cells.iterrows():
        ci = (f"{r['p90_ci_low_ms']:,.1f}–{r['p90_ci_high_ms']:,.1f}"
              if r["p90_ci_low_ms"] == r["p90_ci_low_ms"] else "–")
        status = r["status"] + (f" ({r['failure_kind']})" if r["failure_kind"] else "")
        verdict = r["verdict"] or ""
        tip = r["verdict_reasons"] or r["failure_reason"] or ""
        out.append(f'<tr class="{"failed" if r["status"] != "done" else ""}">'
                   + _td(r["model"]) + _td(r["export"])
                   + f'<td title="{escape(r["chipset"] + " · " + r["os"], quote=True)}">{escape(_device_key(r))}</td>'
                   + f'<td data-sort="{escape(verdict)}"><span class="badge {escape(verdict or "none")}"'
                   + f' data-tip="{escape(tip, quote=True)}">{escape(verdict or "–")}</span></td>'
                   + _num_td(r["p50_ms"]) + _num_td(r["p90_ms"]) + _td(ci, r["p90_ci_high_ms"]) + _num_td(r["p99_ms"])
                   + _num_td(r["cv"] * 100, suffix="%")
                   + _num_td(r["iterations"], 0) + _num_td(r["load_cold_ms"]) + _num_td(r["load_warm_ms"])
                   + _num_td(r["first_inference_ms"]) + _num_td(r["peak_memory_mb"]) + _td(compute_text(r))
                   + _td(parity_text(r), r["parity_cosine"]) + _td(accuracy_text(r), r["accuracy"]) + _td(status)
                   + '</tr>')
    out.append("</tbody></table></div>")
    return "".join(out)


def problems(report: Report) -> str:
    cells = report.cells
    items = []
    for _, r in cells[cells["status"] != "done"].iterrows():
        items.append(f"<li><b>{escape(cell_label(r))}</b>: {escape(r['failure_kind'] or r['status'])} — "
                     f"{escape(r['failure_reason'] or 'not finished')} (attempts: {r['attempts']})</li>")
    for _, r in cells[(cells["status"] == "done") & cells["verdict"].isin(["fail", "inconclusive"])].iterrows():
        items.append(f"<li>{_badge(r['verdict'])}<b>{escape(cell_label(r))}</b>: {escape(r['verdict_reasons'])}</li>")
    if not items:
        return '<p class="note">Every cell finished and passed the gate.</p>'
    return "<ul>" + "".join(items) + "</ul>"


def _device_key(r: Any) -> str:
    return f"{r['target']}: {r['device']}"


def distributions(report: Report) -> str:
    done = report.cells[report.cells["status"] == "done"]
    if not len(done) or not report.samples:
        return '<p class="note">No raw samples in this run.</p>'
    plots = []
    for device, rows in done.groupby(done.apply(_device_key, axis=1), sort=True):
        boxes = [svg.Box(f"{r['model']} · {r['export']}", report.samples.get(int(r["cell_id"]), []))
                 for _, r in rows.iterrows()]
        plots.append(f'<div class="plot">{svg.box_plot(boxes, f"Latency on {device}")}</div>')
    return '<div class="plots">' + "".join(plots) + "</div>"


def pareto(report: Report) -> str:
    done = report.cells[(report.cells["status"] == "done")]
    done = done[done["accuracy"].notna() & done["p90_ms"].notna()]
    if not len(done):
        return '<p class="note">No cell has both a latency and an accuracy measured on the device.</p>'
    metric = next((m for m in done["accuracy_metric"] if m), "accuracy")
    plots = []
    for device, rows in done.groupby(done.apply(_device_key, axis=1), sort=True):
        pts = [svg.Point(float(r["p90_ms"]), float(r["accuracy"]), f"{r['model']} · {r['export']}", r["model"])
               for _, r in rows.iterrows()]
        plots.append(f'<div class="plot">{svg.pareto_plot(pts, f"p90 latency vs {metric} on {device}", "ms p90", metric)}</div>')
    return '<div class="plots">' + "".join(plots) + "</div>"


def shares(report: Report) -> str:
    rows = []
    for _, r in report.cells[report.cells["status"] == "done"].iterrows():
        got = {u: float(r[f"share_{u}"]) for u in ("npu", "gpu", "cpu") if r[f"share_{u}"] == r[f"share_{u}"]}
        label = f"{r['model']} · {r['export']} · {r['device']}"
        if sum(got.values()) > 0:
            rest = 1.0 - sum(got.values())
            if rest > 0.005:
                got["other"] = rest
            rows.append((label, got))
        elif r["compute_unit"]:
            unit = r["compute_unit"].lower()
            unit = {"ane": "npu", "neural engine": "npu", "dsp": "npu", "htp": "npu"}.get(unit, unit)
            rows.append((label + " (primary unit only)", {unit if unit in svg.SHARE_COLOURS else "other": 1.0}))
    if not rows:
        return '<p class="note">No compute-unit information in this run.</p>'
    return f'<div class="plot">{svg.stacked_bars(rows, "Share of the model on each compute unit")}</div>'


def history(report: Report) -> str:
    h = report.history
    if h is None:
        return '<p class="note">No earlier run of this plan: trends start with the next run.</p>'
    parts = [f'<p class="meta">{len(h.run_ids)} runs of plan <b>{escape(h.plan_name)}</b>, '
             f'{escape(h.run_ids[0])} … {escape(h.run_ids[-1])}. A change needs a Mann-Whitney p below 0.01, '
             f'a bootstrap interval of the median ratio that excludes 1, and a size of at least 5% and three times '
             f'the cell\'s night-to-night noise.</p>']
    if h.changes:
        parts.append('<table class="sortable" id="changes"><thead><tr><th>cell</th><th>first run</th>'
                     '<th>found by</th><th>change</th><th>median before ms</th><th>median after ms</th><th>ratio</th>'
                     '<th>95% CI</th><th>p</th></tr></thead><tbody>')
        for c in h.changes:
            cmp = c.comparison
            parts.append("<tr>" + _td(c.label) + _td(c.run_id) + _td(c.source)
                         + f'<td class="{escape(c.direction)}">{escape(c.direction)}</td>'
                         + _num_td(cmp.median_before_ms, 2) + _num_td(cmp.median_after_ms, 2) + _num_td(cmp.ratio, 3)
                         + _td(f"{cmp.ratio_ci[0]:.3f}–{cmp.ratio_ci[1]:.3f}", cmp.ratio_ci[0])
                         + _td(p_text(cmp.p_value).removeprefix("= "), cmp.p_value) + "</tr>")
        parts.append("</tbody></table>")
    else:
        parts.append('<p class="note">No cell changed over the window.</p>')
    plots = []
    n = len(h.run_ids)
    position = {rid: i for i, rid in enumerate(h.run_ids)}
    for t in sorted(h.trends, key=lambda t: (not t.changes, t.label)):
        pos = [position[r] for r in t.run_ids]
        marks = [(position[c.run_id], f"{c.direction} ×{c.comparison.ratio:.3f} from {c.run_id} (p {p_text(c.comparison.p_value)})")
                 for c in t.changes]
        title = "\n".join(t.label.rsplit(" · ", 1))  # cell on the first line, device on the second
        plots.append(f'<div class="plot">{svg.trend_plot(t.run_ids, pos, t.p50_ms, t.p90_ms, marks, title, n)}</div>')
    parts.append('<div class="plots">' + "".join(plots) + "</div>")
    return "".join(parts)


def environment(report: Report) -> str:
    run = report.run
    env = json.dumps(run.get("environment") or {}, indent=2, sort_keys=True, default=str)
    tools = json.dumps(run.get("tool_versions") or {}, indent=2, sort_keys=True, default=str)
    return (f"<details><summary>Host environment and tool versions</summary><pre>{escape(env)}</pre>"
            f"<pre>{escape(tools)}</pre></details>")


def render_html(report: Report) -> str:
    run = report.run
    title = f"vitbench report: {run['id']}"
    note = report.cells.attrs.get("gate_note") or ""
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">plan <b>{escape(run["plan_name"])}</b> · commit <code>{escape(str(run["git_commit"])[:12])}</code>'
        f" · started {escape(when(run['started_at']))} · finished {escape(when(run.get('finished_at')))}"
        f" · {escape(run['status'])} · {escape(summary_line(report))}</p>",
        f"<p>Release gate: {_badge(report.gate)}" + (f' <span class="note">{escape(note)}</span>' if note else "")
        + "</p>",
        "<h2>Cells</h2>", cell_table(report),
        "<h2>Failed and not passing</h2>", problems(report),
        "<h2>Latency distributions per device</h2>", distributions(report),
        "<h2>Latency vs accuracy</h2>", pareto(report),
        "<h2>Compute units</h2>", shares(report),
        "<h2>History</h2>", history(report),
        "<h2>Environment</h2>", environment(report),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(body)
            + f'<div id="tip"></div><script>{SCRIPT}</script></body></html>\n')
