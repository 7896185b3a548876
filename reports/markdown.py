"""The report as GitHub-flavoured Markdown, fit for a CI job summary ($GITHUB_STEP_SUMMARY):
a headline with the gate verdict, one row per model x format x device, failed cells with their
reason, cells the gate did not pass, and what changed since the previous runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from reports.frame import cell_label

if TYPE_CHECKING:  # pragma: no cover
    from reports.report import Report

VERDICT_MARK = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "❔ inconclusive", "error": "⚠️ error"}
CHANGE_MARK = {"slower": "🔺 slower", "faster": "🔻 faster"}


def md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def num(v: Any, digits: int = 1) -> str:
    if v is None or v != v:
        return "–"
    return f"{v:,.{digits}f}"


def when(ts: Any) -> str:
    if ts is None or ts != ts:
        return "–"
    return pd.Timestamp(ts, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


def compute_text(row: Any) -> str:
    shares = [(u, row[f"share_{u}"]) for u in ("npu", "gpu", "cpu") if row[f"share_{u}"] == row[f"share_{u}"]]
    shares = [(u, v) for u, v in shares if v > 0]
    unit = row["compute_unit"] or "–"
    if not shares:
        return unit
    return f"{unit} ({', '.join(f'{u.upper()} {v:.0%}' for u, v in sorted(shares, key=lambda s: -s[1]))})"


def parity_text(row: Any) -> str:
    if row["parity_cosine"] != row["parity_cosine"]:
        return "–"
    out = f"cos {row['parity_cosine']:.5f}"
    if row["parity_top1"] == row["parity_top1"]:
        out += f", top-1 {row['parity_top1']:.1%}"
    return out


def accuracy_text(row: Any) -> str:
    if row["accuracy"] != row["accuracy"]:
        return "–"
    out = f"{row['accuracy']:.3f} {row['accuracy_metric']}".strip()
    if row["accuracy_retention"] == row["accuracy_retention"]:
        out += f" ({row['accuracy_retention']:.1%} of {row['accuracy_reference']:.3f})"
    return out


def latency_text(row: Any, q: int) -> str:
    v = row[f"p{q}_ms"]
    if v != v:
        return "–"
    lo, hi = row.get(f"p{q}_ci_low_ms"), row.get(f"p{q}_ci_high_ms")
    if q == 90 and lo == lo and hi == hi:
        return f"{v:,.1f} ({lo:,.1f}–{hi:,.1f})"
    return f"{v:,.1f}"


def summary_line(report: Report) -> str:
    cells = report.cells
    done = int((cells["status"] == "done").sum())
    failed = int((cells["status"] == "failed").sum())
    total = int(report.run.get("total_cells") or len(cells))
    return f"{done} of {total} cells done, {failed} failed" + (
        f", {total - done - failed} not finished" if total - done - failed > 0 else "")


def render_markdown(report: Report) -> str:
    run, cells = report.run, report.cells
    lines = [f"## vitbench report: run `{md_escape(run['id'])}`", ""]
    lines.append(f"plan **{md_escape(run['plan_name'])}** · commit `{md_escape(str(run['git_commit'])[:12])}` · "
                 f"started {when(run['started_at'])} · {md_escape(run['status'])} · {summary_line(report)}")
    lines.append("")
    if report.gate:
        lines.append(f"**Release gate: {VERDICT_MARK.get(report.gate, report.gate)}**")
    else:
        lines.append(f"Release gate: no verdict ({md_escape(cells.attrs.get('gate_note') or 'not evaluated')})")
    lines.append("")
    headers = ["model", "format", "device", "p50 ms", "p90 ms (95% CI)", "load cold / warm ms",
               "first inference ms", "peak MB", "compute unit", "parity", "accuracy", "verdict"]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join("---:" if h.endswith(("ms", "MB", "CI)")) else "---" for h in headers) + "|")
    for _, r in cells.iterrows():
        if r["status"] != "done":
            status = f"{r['status']}" + (f" ({r['failure_kind']})" if r["failure_kind"] else "")
            row = [r["model"], r["export"], f"{r['target']}: {r['device']}", "–", "–", "–", "–", "–", "–", "–",
                   "–", VERDICT_MARK.get(r["verdict"], r["verdict"] or status) + f" — {status}"]
        else:
            row = [r["model"], r["export"], f"{r['target']}: {r['device']}", latency_text(r, 50), latency_text(r, 90),
                   f"{num(r['load_cold_ms'])} / {num(r['load_warm_ms'])}", num(r["first_inference_ms"]),
                   num(r["peak_memory_mb"]), compute_text(r), parity_text(r), accuracy_text(r),
                   VERDICT_MARK.get(r["verdict"], r["verdict"] or "–")]
        lines.append("| " + " | ".join(md_escape(v) for v in row) + " |")
    lines.append("")

    failed = cells[cells["status"] != "done"]
    if len(failed):
        lines += ["### Failed cells", ""]
        for _, r in failed.iterrows():
            reason = r["failure_reason"] or r["status"]
            lines.append(f"- **{md_escape(cell_label(r))}** — {md_escape(r['failure_kind'] or r['status'])}: "
                         f"{md_escape(reason)} (attempts: {r['attempts']})")
        lines.append("")
    judged = cells[cells["verdict"].isin(["fail", "inconclusive"]) & (cells["status"] == "done")]
    if len(judged):
        lines += ["### Not passing the gate", ""]
        for _, r in judged.iterrows():
            lines.append(f"- {VERDICT_MARK[r['verdict']]} **{md_escape(cell_label(r))}** — "
                         f"{md_escape(r['verdict_reasons'])}")
        lines.append("")
    warned = cells[cells["warnings"].astype(bool)]
    if len(warned):
        lines += ["<details><summary>Warnings</summary>", ""]
        lines += [f"- {md_escape(cell_label(r))}: {md_escape(r['warnings'])}" for _, r in warned.iterrows()]
        lines += ["", "</details>", ""]
    lines += history_markdown(report)
    return "\n".join(lines).rstrip() + "\n"


def p_text(p: float) -> str:
    return "< 1e-16" if p < 1e-16 else f"= {p:.2g}"


def change_line(c: Any) -> str:
    cmp = c.comparison
    return (f"- {CHANGE_MARK.get(c.direction, c.direction)} **{md_escape(c.label)}**: median "
            f"{num(cmp.median_before_ms, 2)} → {num(cmp.median_after_ms, 2)} ms, ×{cmp.ratio:.3f} "
            f"(95% CI {cmp.ratio_ci[0]:.3f}–{cmp.ratio_ci[1]:.3f}), p {p_text(cmp.p_value)}, "
            f"first in run `{md_escape(c.run_id)}` ({c.source})")


def history_markdown(report: Report) -> list[str]:
    h = report.history
    if h is None:
        return []
    lines = [f"### Changes over the last {len(h.run_ids)} runs of plan {md_escape(h.plan_name)}", ""]
    latest, earlier = h.latest_changes(), [c for c in h.changes if c.run_id != h.run_id]
    if not h.changes:
        lines.append("No cell changed: every difference is within noise or under the practical threshold.")
    if latest:
        lines += ["In this run:", ""] + [change_line(c) for c in latest] + [""]
    if earlier:
        lines += ["Earlier in the window:", ""] + [change_line(c) for c in earlier]
    lines.append("")
    return lines
