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
from reports.page_assets import CSS, SCRIPT
from reports.text import (
    accuracy_text,
    cell_label,
    compute_text,
    p_text,
    parity_text,
    retention_text,
    summary_line,
    when,
)

if TYPE_CHECKING:  # pragma: no cover
    from reports.results import RunResults


def _plot(svg_text: str) -> str:
    return f'<div class="plot">{svg_text}</div>'


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


def cell_table(report: RunResults) -> str:
    heads = [
        "model",
        "format",
        "device",
        "verdict",
        "p50 ms",
        "p90 ms",
        "p90 95% CI",
        "p99 ms",
        "rounds",
        "between-round CV",
        "within-round CV",
        "n",
        "load cold ms",
        "load warm ms",
        "first inf. ms",
        "peak MB",
        "compute unit",
        "parity",
        "accuracy (95% CI)",
        "kept on target",
        "kept of teacher",
        "status",
    ]
    out = [
        '<div class="wide"><table class="sortable" id="cells"><thead><tr>'
        + "".join(f"<th>{h}</th>" for h in heads)
        + "</tr></thead><tbody>"
    ]
    for _, r in report.cells.iterrows():
        ci = (
            f"{r['p90_ci_low_ms']:,.1f}–{r['p90_ci_high_ms']:,.1f}"
            if r["p90_ci_low_ms"] == r["p90_ci_low_ms"]
            else "–"
        )
        status = r["status"] + (f" ({r['failure_kind']})" if r["failure_kind"] else "")
        verdict = r["verdict"] or ""
        tip = r["verdict_reasons"] or r["failure_reason"] or ""
        where = escape(r["chipset"] + " · " + r["os"], quote=True)
        out.append(
            f'<tr class="{"failed" if r["status"] != "done" else ""}">'
            + _td(r["model"])
            + _td(r["export"])
            + f'<td title="{where}">{escape(_device_key(r))}</td>'
            + f'<td data-sort="{escape(verdict)}"><span class="badge {escape(verdict or "none")}"'
            + f' data-tip="{escape(tip, quote=True)}">{escape(verdict or "–")}</span></td>'
            + _num_td(r["p50_ms"])
            + _num_td(r["p90_ms"])
            + _td(ci, r["p90_ci_high_ms"])
            + _num_td(r["p99_ms"])
            + _num_td(r["rounds"], 0)
            + _num_td(r["between_round_cv"] * 100, suffix="%")
            + _num_td(r["within_round_cv"] * 100, suffix="%")
            + _num_td(r["iterations"], 0)
            + _num_td(r["load_cold_ms"])
            + _num_td(r["load_warm_ms"])
            + _num_td(r["first_inference_ms"])
            + _num_td(r["peak_memory_mb"])
            + _td(compute_text(r))
            + _td(parity_text(r), r["parity_cosine"])
            + _td(accuracy_text(r), r["accuracy"])
            + _td(retention_text(r, "accuracy"), r["accuracy_retention"])
            + _td(retention_text(r, "compression"), r["compression_retention"])
            + _td(status)
            + "</tr>"
        )
    out.append("</tbody></table></div>")
    return "".join(out)


def problems(report: RunResults) -> str:
    cells = report.cells
    items = []
    for _, r in cells[cells["status"] != "done"].iterrows():
        items.append(
            f"<li><b>{escape(cell_label(r))}</b>: {escape(r['failure_kind'] or r['status'])} — "
            f"{escape(r['failure_reason'] or 'not finished')} (attempts: {r['attempts']})</li>"
        )
    for _, r in cells[
        (cells["status"] == "done") & cells["verdict"].isin(["fail", "inconclusive"])
    ].iterrows():
        items.append(
            f"<li>{_badge(r['verdict'])}<b>{escape(cell_label(r))}</b>: "
            f"{escape(r['verdict_reasons'])}</li>"
        )
    if not items:
        return '<p class="note">Every cell finished and passed the gate.</p>'
    return "<ul>" + "".join(items) + "</ul>"


def _device_key(r: Any) -> str:
    return f"{r['target']}: {r['device']}"


def distributions(report: RunResults) -> str:
    done = report.cells[report.cells["status"] == "done"]
    if not len(done) or not report.samples:
        return '<p class="note">No raw samples in this run.</p>'
    plots = []
    for device, rows in done.groupby(done.apply(_device_key, axis=1), sort=True):
        boxes = [
            svg.Box(f"{r['model']} · {r['export']}", report.samples.get(int(r["cell_id"]), []))
            for _, r in rows.iterrows()
        ]
        plots.append(_plot(svg.box_plot(boxes, f"Latency on {device}")))
    return '<div class="plots">' + "".join(plots) + "</div>"


def pareto(report: RunResults) -> str:
    done = report.cells[(report.cells["status"] == "done")]
    done = done[done["accuracy"].notna() & done["p90_ms"].notna()]
    if not len(done):
        return (
            '<p class="note">No cell has both a latency and an accuracy measured on the device.</p>'
        )
    metric = next((m for m in done["accuracy_metric"] if m), "accuracy")
    plots = []
    for device, rows in done.groupby(done.apply(_device_key, axis=1), sort=True):
        pts = [
            svg.Point(
                float(r["p90_ms"]),
                float(r["accuracy"]),
                f"{r['model']} · {r['export']}",
                r["model"],
            )
            for _, r in rows.iterrows()
        ]
        title = f"p90 latency vs {metric} on {device}"
        plots.append(_plot(svg.pareto_plot(pts, title, "ms p90", metric)))
    return '<div class="plots">' + "".join(plots) + "</div>"


def shares(report: RunResults) -> str:
    rows = []
    for _, r in report.cells[report.cells["status"] == "done"].iterrows():
        got = {
            u: float(r[f"share_{u}"])
            for u in ("npu", "gpu", "cpu")
            if r[f"share_{u}"] == r[f"share_{u}"]
        }
        label = f"{r['model']} · {r['export']} · {r['device']}"
        if sum(got.values()) > 0:
            rest = 1.0 - sum(got.values())
            if rest > 0.005:
                got["other"] = rest
            rows.append((label, got))
        elif r["compute_unit"]:
            unit = r["compute_unit"].lower()
            unit = {"ane": "npu", "neural engine": "npu", "dsp": "npu", "htp": "npu"}.get(
                unit, unit
            )
            rows.append(
                (
                    label + " (primary unit only)",
                    {unit if unit in svg.SHARE_COLOURS else "other": 1.0},
                )
            )
    if not rows:
        return '<p class="note">No compute-unit information in this run.</p>'
    return _plot(svg.stacked_bars(rows, "Share of the model on each compute unit"))


def history(report: RunResults) -> str:
    h = report.history
    if h is None:
        return '<p class="note">No earlier run of this plan: trends start with the next run.</p>'
    parts = [
        f'<p class="meta">{len(h.run_ids)} runs of plan <b>{escape(h.plan_name)}</b>, '
        f"{escape(h.run_ids[0])} … {escape(h.run_ids[-1])}. Changes are judged on nights, not "
        "raw samples: a change point confirmed by a t-test on the nights' medians (allowing for "
        "the search), the newest night against the prediction interval of its level, and a new "
        "level at least 3% and one night-to-night noise away.</p>"
    ]
    if h.changes:
        parts.append(
            '<table class="sortable" id="changes"><thead><tr><th>cell</th><th>first run</th>'
            "<th>found by</th><th>change</th><th>median before ms</th><th>median after ms</th>"
            "<th>ratio</th>"
            "<th>95% CI</th><th>p</th></tr></thead><tbody>"
        )
        for c in h.changes:
            cmp = c.comparison
            parts.append(
                "<tr>"
                + _td(c.label)
                + _td(c.run_id)
                + _td(c.source)
                + f'<td class="{escape(c.direction)}">{escape(c.direction)}</td>'
                + _num_td(cmp.median_before_ms, 2)
                + _num_td(cmp.median_after_ms, 2)
                + _num_td(cmp.ratio, 3)
                + _td(f"{cmp.ratio_ci[0]:.3f}–{cmp.ratio_ci[1]:.3f}", cmp.ratio_ci[0])
                + _td(p_text(cmp.p_value).removeprefix("= "), cmp.p_value)
                + "</tr>"
            )
        parts.append("</tbody></table>")
    else:
        parts.append('<p class="note">No cell changed over the window.</p>')
    plots = []
    n = len(h.run_ids)
    position = {rid: i for i, rid in enumerate(h.run_ids)}
    for t in sorted(h.trends, key=lambda t: (not t.changes, t.label)):
        pos = [position[r] for r in t.run_ids]
        marks = [
            (
                position[c.run_id],
                f"{c.direction} ×{c.comparison.ratio:.3f} from {c.run_id} "
                f"(p {p_text(c.comparison.p_value)})",
            )
            for c in t.changes
        ]
        title = "\n".join(t.label.rsplit(" · ", 1))  # cell on the first line, device on the second
        plots.append(_plot(svg.trend_plot(t.run_ids, pos, t.p50_ms, t.p90_ms, marks, title, n)))
    parts.append('<div class="plots">' + "".join(plots) + "</div>")
    return "".join(parts)


def environment(report: RunResults) -> str:
    run = report.run
    env = json.dumps(run.get("environment") or {}, indent=2, sort_keys=True, default=str)
    tools = json.dumps(run.get("tool_versions") or {}, indent=2, sort_keys=True, default=str)
    return (
        f"<details><summary>Host environment and tool versions</summary><pre>{escape(env)}</pre>"
        f"<pre>{escape(tools)}</pre></details>"
    )


def render_html(report: RunResults) -> str:
    run = report.run
    title = f"vitbench report: {run['id']}"
    note = report.gate_note
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">plan <b>{escape(run["plan_name"])}</b> · commit '
        f"<code>{escape(str(run['git_commit'])[:12])}</code>"
        f" · started {escape(when(run['started_at']))}"
        f" · finished {escape(when(run.get('finished_at')))}"
        f" · {escape(run['status'])} · {escape(summary_line(run, report.cells))}</p>",
        f"<p>Release gate: {_badge(report.verdict)}"
        + (f' <span class="note">{escape(note)}</span>' if note else "")
        + "</p>",
        "<h2>Cells</h2>",
        cell_table(report),
        "<h2>Failed and not passing</h2>",
        problems(report),
        "<h2>Latency distributions per device</h2>",
        distributions(report),
        "<h2>Latency vs accuracy</h2>",
        pareto(report),
        "<h2>Compute units</h2>",
        shares(report),
        "<h2>History</h2>",
        history(report),
        "<h2>Environment</h2>",
        environment(report),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f"<style>{CSS}</style></head><body>"
        + "\n".join(body)
        + f'<div id="tip"></div><script>{SCRIPT}</script></body></html>\n'
    )
