"""`vitbench plan check`, `vitbench run` and `vitbench gate`: a plan from matrix to verdict."""

from __future__ import annotations

import sys

import click

from harness.cli.common import emit_json, store_option


def _plan(path: str | None):
    from harness.plan import default_plan, load_plan

    return load_plan(path) if path else default_plan()


@click.group()
def plan() -> None:
    """Benchmark plans (TOML)."""


@plan.command("check")
@click.argument("path", required=False)
@click.option(
    "--devices/--no-devices",
    default=True,
    show_default=True,
    help="Ask each target which devices it reaches (off: list selectors only).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan_check(path: str | None, devices: bool, as_json: bool) -> None:
    """Validate PATH (default: the built-in plan) and print the expanded matrix."""
    from harness.cells import expand
    from harness.tables import format_table

    p = _plan(path)
    cells, _ = expand(p, resolve_targets=devices)
    if as_json:
        emit_json(
            {
                "plan": p.to_dict(),
                "hash": p.hash,
                "cells": [
                    {
                        "key": c.key,
                        "model": c.model.label,
                        "export": c.export.label,
                        "target": c.target.name,
                        "device": c.device.name,
                        "problem": c.problem,
                    }
                    for c in cells
                ],
            }
        )
        return
    click.echo(f"plan {p.name} ({p.source}), hash {p.hash[:12]}: {len(cells)} cells")
    rows = sorted(
        (c.model.label, c.export.label, c.target.name, c.device.name, c.problem or "")
        for c in cells
    )
    click.echo(format_table(rows, ["model", "export", "target", "device", "note"]))


@click.command()
@click.argument("plan_path", required=False, metavar="[PLAN]")
@store_option
@click.option(
    "--resume",
    "resume_id",
    default=None,
    metavar="RUN_ID",
    help="Finish this run: skip cells done.",
)
@click.option("--run-id", default=None, help="Name the run (shards of one nightly share it).")
@click.option(
    "--new", "fresh", is_flag=True, help="A new run even if this plan and commit ran before."
)
@click.option("--shard", default=None, metavar="I/N", help="Run only slice I of N of the cells.")
@click.option(
    "--cache", default=None, metavar="DIR", help="Artifact cache (default: $VITBENCH_CACHE)."
)
@click.option("--no-cache", is_flag=True, help="Re-export every artifact.")
@click.option(
    "--out", "out_dir", default="vitbench-out", show_default=True, help="Where reports are written."
)
@click.option(
    "--allow-data-upload",
    is_flag=True,
    help="The [accuracy] data set's images may go to AI Hub in this run (recorded in the run).",
)
@click.option(
    "--store-patience",
    type=click.FloatRange(min=0),
    default=120.0,
    show_default=True,
    metavar="SECONDS",
    help="How long the run's start and end wait for a store that went away (measuring "
    "goes on meanwhile; cells wait in OUT/spool).",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=None,
    help="Rounds per cell, each in a fresh process / session / job (default: the plan's "
    "[measure] rounds, 3).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A CI smoke run of the whole plan: one round of 20 iterations and 1 s per cell "
    "(a different plan hash, so never mixed with full runs).",
)
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
def run(
    plan_path,
    store_url,
    resume_id,
    run_id,
    fresh,
    shard,
    cache,
    no_cache,
    out_dir,
    allow_data_upload,
    store_patience,
    rounds,
    quick,
    quiet,
    as_json,
) -> None:
    """Run PLAN (default: the built-in plan) and write results to the store."""
    from dataclasses import asdict, replace
    from pathlib import Path

    from harness.cells import choose_run, parse_shard
    from harness.dispatch import Dispatcher
    from harness.errors import VitbenchError
    from harness.store import open_store

    p = _plan(plan_path).with_measure(quick=quick, rounds=rounds)
    if allow_data_upload:
        p = replace(p, accuracy=replace(p.accuracy, allow_data_upload=True))
    shard_t = parse_shard(shard)
    run_name, resume = choose_run(p, resume_id=resume_id, run_id=run_id, fresh=fresh)
    store = open_store(store_url, patience_s=store_patience)
    summary = Dispatcher(
        p,
        store,
        shard=shard_t,
        cache=cache,
        no_cache=no_cache,
        quiet=quiet or as_json,
        spool_dir=Path(out_dir) / "spool",
        store_patience_s=store_patience,
    ).run(run_name, resume=resume)
    if summary.local_store:  # the store is away: this shard's cells, from its local copy
        local = open_store(summary.local_store, readonly=True)
        try:
            written = _write_reports(local, summary.run_id, out_dir)
        finally:
            local.close()
    else:
        written = _write_reports(store, summary.run_id, out_dir)
    if as_json:
        emit_json(asdict(summary) | {"reports": written})
    else:
        click.echo(
            f"run {summary.run_id}: {summary.done} done, {summary.failed} failed, "
            f"{summary.skipped} already "
            f"done, of {summary.total} cells; {_state(summary)}; {summary.seconds:.1f} s"
        )
        for f in summary.failures:
            click.echo(f"  failed: {f}")
        for path in written:
            click.echo(f"report: {path}")
    if summary.spooled:
        raise VitbenchError(
            f"{summary.store_error}; {summary.spooled} measured cells are kept in "
            f"{summary.spool} (reports above are from this shard's cells only): run this "
            f"command again with --run-id {summary.run_id} to store them",
            exit_code=1,
        )
    if summary.store_error:
        raise VitbenchError(
            f"{summary.store_error}; every cell is stored, but run {summary.run_id} could not "
            f"be marked finished: run this command again with --run-id {summary.run_id}",
            exit_code=1,
        )


def _state(summary) -> str:
    """How the run stands after this invocation, in words."""
    if summary.finished:
        return "finished"
    if summary.spooled:
        return "not stored yet"
    if summary.shard != "1/1":
        return (
            f"shard {summary.shard} done; run {summary.run_id} waits for {summary.waiting} "
            f"cell{'s' if summary.waiting != 1 else ''} of other shards"
        )
    return f"incomplete (resume with --resume {summary.run_id})"


def _write_reports(store, run_id: str, out_dir: str) -> list[str]:
    """The run's reports, from every report writer in the registry (the built-in one
    writes Markdown and HTML)."""
    from harness import plugins

    written: list[str] = []
    for name in plugins.names("reporter"):
        written += [str(p) for p in plugins.load("reporter", name).write(store, run_id, out_dir)]
    return written


@click.command()
@click.argument("run_id", required=False)
@store_option
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Latency budget for every device (default: the plan's, 200 ms).",
)
@click.option(
    "--percentile",
    type=click.Choice(["50", "90"]),
    default=None,
    help="Gated percentile (default 90).",
)
@click.option(
    "--accuracy-retention",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Accuracy on the target must keep this fraction of PyTorch fp32's (default 0.95).",
)
@click.option(
    "--compression-retention",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="A student must keep this fraction of its teacher's accuracy (default 0.93).",
)
@click.option(
    "--max-cpu-fallback",
    type=click.FloatRange(0, 1),
    default=None,
    metavar="FRACTION",
    help="Fail cells with more than this share of layers on the CPU when an accelerator was "
    "asked for (0: any layer).",
)
@click.option(
    "--device-budget",
    "device_budgets",
    multiple=True,
    metavar="DEVICE=MS",
    help="A budget for one device (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable verdicts.")
def gate(
    run_id,
    store_url,
    latency_ms,
    percentile,
    accuracy_retention,
    compression_retention,
    max_cpu_fallback,
    device_budgets,
    as_json,
) -> None:
    """Pass / fail / inconclusive for RUN_ID (default: the latest run).

    Exit codes: 0 pass, 1 fail, 3 inconclusive, 2 usage error."""
    from harness import gate as gating
    from harness.store import open_store

    store = open_store(store_url, readonly=True)
    run_row = store.run(run_id) if run_id else store.latest_run()
    cells = store.cells([run_row["id"]])
    known = {c["device_name"] for c in cells} | {f"{c['target']}:{c['device_name']}" for c in cells}
    per_device = gating.parse_device_budgets(device_budgets)
    budgets = gating.with_overrides(
        gating.budgets_from_plan(run_row.get("plan")),
        latency_ms,
        int(percentile) if percentile else None,
        accuracy_retention,
        per_device,
        known,
        max_cpu_fallback,
        compression_retention,
    )
    result = gating.judge_run(store, run_row["id"], budgets)
    missing = max(0, int(run_row.get("total_cells") or 0) - len(result.cells))
    if as_json:
        emit_json(result.to_dict() | {"missing_cells": missing})
    else:
        click.echo(gating.render(result, missing))
    sys.exit(result.exit_code)
