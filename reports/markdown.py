"""The report as GitHub-flavoured Markdown, fit for a CI job summary ($GITHUB_STEP_SUMMARY):
a headline with the gate verdict, one row per model x format x device, failed cells with their
reason, cells the gate did not pass, and what changed since the previous runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reports.text import (
    accuracy_text,
    cell_label,
    compute_text,
    latency_text,
    num,
    p_text,
    parity_text,
    retention_text,
    spread_text,
    summary_line,
    when,
)

if TYPE_CHECKING:  # pragma: no cover
    from reports.results import RunResults

VERDICT_MARK = {
    "pass": "✅ pass",
    "fail": "❌ fail",
    "inconclusive": "❔ inconclusive",
    "error": "⚠️ error",
}
CHANGE_MARK = {"slower": "🔺 slower", "faster": "🔻 faster"}


def md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("\r", " ")


HEADERS = [
    "model",
    "format",
    "device",
    "p50 ms",
    "p90 ms (95% CI)",
    "spread between / within rounds",
    "load cold / warm ms",
    "first inference ms",
    "peak MB",
    "compute unit",
    "parity",
    "accuracy (95% CI)",
    "kept on target",
    "kept of teacher",
    "verdict",
]


def headline(report: RunResults) -> list[str]:
    run = report.run
    lines = [f"## vitbench report: run `{md_escape(run['id'])}`", ""]
    commit = md_escape(str(run["git_commit"])[:12])
    lines.append(
        f"plan **{md_escape(run['plan_name'])}** · commit `{commit}` · "
        f"started {when(run['started_at'])} · {md_escape(run['status'])} · "
        f"{summary_line(run, report.cells)}"
    )
    lines.append("")
    if report.verdict:
        lines.append(f"**Release gate: {VERDICT_MARK.get(report.verdict, report.verdict)}**")
    else:
        note = md_escape(report.gate_note or "not evaluated")
        lines.append(f"Release gate: no verdict ({note})")
    return lines + [""]


def cell_row(r: Any) -> list[str]:
    where = [r["model"], r["export"], f"{r['target']}: {r['device']}"]
    if r["status"] != "done":
        status = f"{r['status']}" + (f" ({r['failure_kind']})" if r["failure_kind"] else "")
        verdict = VERDICT_MARK.get(r["verdict"], r["verdict"] or status) + f" — {status}"
        return where + ["–"] * 11 + [verdict]
    return where + [
        latency_text(r, 50),
        latency_text(r, 90),
        spread_text(r),
        f"{num(r['load_cold_ms'])} / {num(r['load_warm_ms'])}",
        num(r["first_inference_ms"]),
        num(r["peak_memory_mb"]),
        compute_text(r),
        parity_text(r),
        accuracy_text(r),
        retention_text(r, "accuracy"),
        retention_text(r, "compression"),
        VERDICT_MARK.get(r["verdict"], r["verdict"] or "–"),
    ]


def cell_table(report: RunResults) -> list[str]:
    lines = ["| " + " | ".join(HEADERS) + " |"]
    numeric = ("ms", "MB", "CI)")
    lines.append("|" + "|".join("---:" if h.endswith(numeric) else "---" for h in HEADERS) + "|")
    for _, r in report.cells.iterrows():
        lines.append("| " + " | ".join(md_escape(v) for v in cell_row(r)) + " |")
    return lines + [""]


def problems(report: RunResults) -> list[str]:
    """Failed cells with their reason, cells the gate did not pass and why, warnings."""
    cells, lines = report.cells, []
    failed = cells[cells["status"] != "done"]
    if len(failed):
        lines += ["### Failed cells", ""]
        for _, r in failed.iterrows():
            reason = r["failure_reason"] or r["status"]
            lines.append(
                f"- **{md_escape(cell_label(r))}** — "
                f"{md_escape(r['failure_kind'] or r['status'])}: "
                f"{md_escape(reason)} (attempts: {r['attempts']})"
            )
        lines.append("")
    judged = cells[cells["verdict"].isin(["fail", "inconclusive"]) & (cells["status"] == "done")]
    if len(judged):
        lines += ["### Not passing the gate", ""]
        for _, r in judged.iterrows():
            lines.append(
                f"- {VERDICT_MARK[r['verdict']]} **{md_escape(cell_label(r))}** — "
                f"{md_escape(r['verdict_reasons'])}"
            )
        lines.append("")
    warned = cells[cells["warnings"].astype(bool)]
    if len(warned):
        lines += ["<details><summary>Warnings</summary>", ""]
        lines += [
            f"- {md_escape(cell_label(r))}: {md_escape(r['warnings'])}"
            for _, r in warned.iterrows()
        ]
        lines += ["", "</details>", ""]
    return lines


def render_markdown(report: RunResults) -> str:
    lines = headline(report) + cell_table(report) + problems(report) + history_markdown(report)
    return "\n".join(lines).rstrip() + "\n"


def change_line(c: Any) -> str:
    cmp = c.comparison
    return (
        f"- {CHANGE_MARK.get(c.direction, c.direction)} **{md_escape(c.label)}**: median "
        f"{num(cmp.median_before_ms, 2)} → {num(cmp.median_after_ms, 2)} ms, ×{cmp.ratio:.3f} "
        f"(95% CI {cmp.ratio_ci[0]:.3f}–{cmp.ratio_ci[1]:.3f}), p {p_text(cmp.p_value)}, "
        f"first in run `{md_escape(c.run_id)}` ({c.source})"
    )


def history_markdown(report: RunResults) -> list[str]:
    h = report.history
    if h is None:
        return []
    lines = [
        f"### Changes over the last {len(h.run_ids)} runs of plan {md_escape(h.plan_name)}",
        "",
    ]
    latest, earlier = h.latest_changes(), [c for c in h.changes if c.run_id != h.run_id]
    if not h.changes:
        lines.append(
            "No cell changed: every difference is within noise or under the practical threshold."
        )
    if latest:
        lines += ["In this run:", ""] + [change_line(c) for c in latest] + [""]
    if earlier:
        lines += ["Earlier in the window:", ""] + [change_line(c) for c in earlier]
    lines.append("")
    return lines
