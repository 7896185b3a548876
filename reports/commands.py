"""`vitbench runs`, `vitbench report` and `vitbench compare`: reading the store (the reports
package's own subcommands, added through ``vitbench.commands``)."""

from __future__ import annotations

import click

from harness.cli.common import emit_json, store_option
from harness.errors import UserError


@click.command()
@store_option
@click.option("--plan", "plan_name", default=None, help="Only runs of this plan.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Newest runs to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs(store_url, plan_name, limit, as_json) -> None:
    """Runs in the store, newest first: plan, commit, start, status, cells done/failed/total."""
    from harness.store import open_store
    from harness.tables import format_table
    from reports.frame import runs_frame

    frame = runs_frame(open_store(store_url, readonly=True), plan_name, limit)
    if as_json:
        emit_json(frame.to_dict(orient="records"))
        return
    if frame.empty:
        click.echo("no runs" + (f" of plan {plan_name!r}" if plan_name else "") + " in the store")
        return
    click.echo(
        format_table(
            [
                (
                    r.id,
                    r.plan,
                    r.commit[:10],
                    r.started_at,
                    r.status,
                    r.cells_done,
                    r.cells_failed,
                    r.cells_total,
                )
                for r in frame.itertuples()
            ],
            ["run", "plan", "commit", "started (UTC)", "status", "done", "failed", "total"],
        )
    )


@click.command()
@click.argument("run_id", required=False)
@click.option("--format", "fmt", default="md", show_default=True, help="md | html | csv | json")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write to this file (default: stdout).",
)
@store_option
@click.option(
    "--history",
    "history_runs",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Runs of the same plan to look back over for trends and changes (0: none).",
)
def report(run_id, fmt, out, store_url, history_runs) -> None:
    """Report of RUN_ID (default: the latest run): Markdown for a CI job summary, one
    self-contained HTML page with plots, or the cell table as CSV / JSON."""
    from pathlib import Path

    from harness.store import open_store
    from reports.report import check_format, render_report

    check_format(fmt)
    if out and not Path(out).resolve().parent.is_dir():
        raise UserError(f"cannot write {out}: folder {Path(out).resolve().parent} does not exist")
    text = render_report(open_store(store_url, readonly=True), run_id, fmt, history_runs)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"report written to {out}", err=True)
    else:
        click.echo(text, nl=False)


@click.command()
@click.argument("run_a")
@click.argument("run_b")
@store_option
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.01,
    show_default=True,
    help="Significance level of the test on the ratio of medians.",
)
@click.option(
    "--min-effect",
    type=click.FloatRange(min=0),
    default=0.05,
    show_default=True,
    help="Smallest change of the median that counts (0.05 = 5%).",
)
@click.option(
    "--noise-floor",
    type=click.FloatRange(min=0),
    default=0.02,
    show_default=True,
    help="Run-to-run noise of a cell (0.02 = 2%) assumed where RUN_A's plan has too few "
    "earlier runs to measure it.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compare(run_a, run_b, store_url, alpha, min_effect, noise_floor, as_json) -> None:
    """Per-cell latency change from RUN_A to RUN_B: ratio of medians with a 95% interval that
    holds the within-run sampling noise and the cell's run-to-run noise (from the history of
    RUN_A's plan, else --noise-floor), p-value, and slower / faster / no change."""
    from harness.store import open_store
    from harness.tables import format_table
    from reports.data import records
    from reports.trends import compare_runs

    frame = compare_runs(
        open_store(store_url, readonly=True),
        run_a,
        run_b,
        alpha,
        min_effect,
        noise_floor=noise_floor,
    )
    if as_json:
        emit_json(
            {
                "run_a": run_a,
                "run_b": run_b,
                "alpha": alpha,
                "min_effect": min_effect,
                "cells": records(frame),
            }
        )
        return
    rows = []
    for r in frame.itertuples():
        if r.verdict == "not compared":
            rows.append(
                (r.label, None, None, None, "-", "-", f"not compared ({r.status_a} / {r.status_b})")
            )
            continue
        ci = (
            f"{r.ratio_ci_low:.3f}-{r.ratio_ci_high:.3f}"
            if r.ratio_ci_low == r.ratio_ci_low
            else "-"
        )
        p = (
            "<1e-16"
            if r.p_value < 1e-16
            else (f"{r.p_value:.2g}" if r.p_value == r.p_value else "-")
        )
        rows.append((r.label, r.median_a_ms, r.median_b_ms, round(r.ratio, 3), ci, p, r.verdict))
    click.echo(
        f"{run_b} against {run_a}: median ratio B/A, 95% interval and p with within-run and "
        f"run-to-run noise (a change needs p < {alpha:g}, an interval excluding 1 and at least "
        f"{min_effect:.0%})"
    )
    click.echo(
        format_table(
            rows,
            ["cell", "A p50 ms", "B p50 ms", "ratio", "95% CI", "p", "verdict"],
            align="lrrrrrl",
        )
    )
    counts = frame["verdict"].value_counts()
    click.echo(", ".join(f"{counts.get(v, 0)} {v}" for v in ("slower", "faster", "no change")))
