"""The `vitbench` command line: parses, calls into harness/targets/reports, prints.

Errors a user can cause end with one line on stderr and a non-zero exit (2 unless a command
documents another); programming errors keep their traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from harness import __version__
from harness.errors import UserError


class VitbenchGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"vitbench: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def model_options(fn):
    """Options that shape a preset or an imported checkpoint (ignored for nothing: a vitbench
    checkpoint folder refuses them)."""
    fn = click.option("--head-dim", type=click.IntRange(min=1), default=None,
                      help="Head dimension when importing timm weights (default 64).")(fn)
    fn = click.option("--img-size", type=click.IntRange(min=1), default=None,
                      help="Input resolution (presets only).")(fn)
    fn = click.option("--num-classes", type=click.IntRange(min=1), default=None,
                      help="Output classes (presets; imports get a fresh head).")(fn)
    fn = click.option("--in-chans", type=click.IntRange(min=1), default=None,
                      help="Input channels: 1 for X-ray, 3 for colour.")(fn)
    return fn


def model_overrides(in_chans, num_classes, img_size, head_dim) -> dict[str, Any]:
    out = {"in_chans": in_chans, "num_classes": num_classes, "img_size": img_size}
    if head_dim is not None:
        out["head_dim"] = head_dim
    return out


@click.group(cls=VitbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="vitbench")
def main() -> None:
    """Compress, export and benchmark a lightweight medical ViT across devices."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json: bool) -> None:
    """The built-in presets: parameters, fp32 size and GMACs at their input size."""
    from harness.model import describe, preset_config, preset_names
    from harness.model.presets import DESCRIPTIONS
    from harness.tables import format_table

    rows = [describe(preset_config(n)) | {"description": DESCRIPTIONS[n]} for n in preset_names()]
    if as_json:
        emit_json(rows)
        return
    click.echo(format_table(
        [(r["name"], r["params_m"], r["size_mb_fp32"], r["gmacs"], f"{r['img_size']}x{r['img_size']}",
          r["depth"], r["embed_dim"], r["description"]) for r in rows],
        ["preset", "params (M)", "fp32 (MB)", "GMACs", "input", "depth", "width", "what"],
    ))


@main.command()
@click.argument("model")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(model: str, in_chans, num_classes, img_size, head_dim, as_json: bool) -> None:
    """Describe a preset, a vitbench checkpoint folder or a timm/DeiT weights file."""
    from harness.model import describe, load_config
    from harness.tables import format_table

    cfg = load_config(model, **model_overrides(in_chans, num_classes, img_size, head_dim))
    d = describe(cfg)
    if as_json:
        emit_json(d)
        return
    click.echo(f"model       {model}")
    click.echo(f"params      {d['params_m']} M ({d['params']:,})")
    click.echo(f"fp32 size   {d['size_mb_fp32']} MB")
    click.echo(f"GMACs       {d['gmacs']} at {d['img_size']}x{d['img_size']}x{d['in_chans']}")
    click.echo(f"shape       width {d['embed_dim']}, head dim {d['head_dim']}, depth {d['depth']}, "
               f"patch {d['patch_size']}, {d['num_classes']} classes ({d['task']})")
    click.echo("")
    click.echo(format_table(
        [(i, h, h * cfg.head_dim, m) for i, (h, m) in enumerate(zip(cfg.num_heads, cfg.mlp_dims, strict=False))],
        ["block", "heads", "attn width", "MLP width"],
    ))


# -- export and exporters (exporter registry) -------------------------------------------------


# -- targets and profile (measurement engine, host target) -------------------------------------

@main.command()
@click.option("--target", "only", default=None, help="Only this target.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def targets(only: str | None, as_json: bool) -> None:
    """Targets and the devices each can reach now."""
    from harness import plugins
    from harness.tables import format_table

    infos = [i for i in plugins.describe("target") if only in (None, i.name)]
    if only and not infos:
        raise UserError(f"unknown target {only!r}; available: {', '.join(plugins.names('target'))}")
    rows = []
    for info in infos:
        devices, reason = [], info.reason
        if info.available:
            try:
                devices = [d.to_dict() for d in plugins.target(info.name).devices()]
            except UserError as exc:
                reason = str(exc)
        rows.append({"target": info.name, "source": info.source, "available": not reason,
                     "reason": reason, "devices": devices})
    if as_json:
        emit_json(rows)
        return
    table = []
    for r in rows:
        if not r["devices"]:
            table.append((r["target"], "-", "-", "-", r["reason"] or "no devices reachable"))
        for d in r["devices"]:
            table.append((r["target"], d["name"], d["chipset"] or "-", d["os"] or "-", ""))
    click.echo(format_table(table, ["target", "device", "chipset", "os", "note"]))


def _profile_settings(quick, iterations, min_seconds, warmup, threads, runtime, timeout, batch_size):
    from targets.base import ProfileSettings

    base = ProfileSettings.quick() if quick else ProfileSettings()
    loop = {k: v for k, v in (("min_iterations", iterations), ("min_seconds", min_seconds),
                              ("warmup_iterations", warmup)) if v is not None}
    if iterations is not None and iterations > base.loop.max_iterations:
        loop["max_iterations"] = iterations
    try:
        settings = base.with_loop(**loop)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    from dataclasses import replace

    return replace(settings, runtime=runtime, threads=threads, batch_size=batch_size,
                   timeout_s=timeout if timeout is not None else settings.timeout_s)


def render_profile(prof) -> str:
    """The profile as a table: latency statistics, load and memory, then the environment."""
    from harness.tables import format_table

    s, m = prof.stats, prof.metrics
    rows = [
        ("iterations", s.n, ""), ("p50", s.p50, "ms"),
        ("p50 95% CI", f"{s.p50_ci[0]:.3f} - {s.p50_ci[1]:.3f}", "ms"),
        ("p90", s.p90, "ms"), ("p90 95% CI", f"{s.p90_ci[0]:.3f} - {s.p90_ci[1]:.3f}", "ms"),
        ("p99", s.p99, "ms"), ("mean", s.mean, "ms"), ("std", s.std, "ms"), ("CV", f"{s.cv:.1%}", ""),
        ("min / max", f"{s.min:.3f} / {s.max:.3f}", "ms"),
        ("drift (last vs first quarter)", f"{s.drift:+.1%}{' (significant)' if s.drift_significant else ''}", ""),
        ("outliers (> 3 IQR)", s.outliers, ""),
    ]
    rows += [(k.removesuffix("_ms").removesuffix("_mb").replace("_", " "), v, prof.unit(k)) for k, v in m.items()]
    env = prof.environment
    for key in ("cpu", "cores_usable", "threads", "governor", "load_average_before", "load_average_after",
                "thermal_max_c", "runtime_version", "memory_method", "os"):
        if key in env:
            val = env[key]
            rows.append((key.replace("_", " "), ", ".join(f"{x:.2f}" for x in val) if isinstance(val, list) else val, ""))
    head = f"{prof.target}:{prof.device.name}  runtime {prof.runtime}  artifact {prof.artifact_sha256[:12]}"
    out = [head, format_table(rows, ["measure", "value", "unit"], align="lrl")]
    out += [f"warning: {w}" for w in prof.warnings]
    return "\n".join(out)


@main.command()
@click.argument("artifact", type=click.Path())
@click.option("--target", "target_name", default="host", show_default=True, help="Where to run it.")
@click.option("--device", default=None, help="Device name (default: the target's first).")
@click.option("--runtime", default=None, help="host: ort | executorch | torch (default: by format).")
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="At least this many timed runs.")
@click.option("--min-seconds", type=click.FloatRange(min=0), default=None, help="And at least this long.")
@click.option("--warmup", type=click.IntRange(min=0), default=None, help="Warm-up iterations.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Runtime threads (default: usable cores).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=1), default=None, help="Seconds before the worker is killed.")
@click.option("--quick", is_flag=True, help="CI settings: 20 iterations and 1 s minimum.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (raw samples included).")
def profile(artifact, target_name, device, runtime, iterations, min_seconds, warmup, threads, batch_size,
            timeout, quick, as_json) -> None:
    """Measure ARTIFACT: latency statistics, load times, first inference, peak memory."""
    from harness import plugins
    from harness.artifacts import Artifact

    art = Artifact.load(artifact)
    target = plugins.target(target_name)
    if not target.accepts(art):
        capable = [n for n in plugins.names("target") if n != target_name and _accepts(n, art)]
        why = target.refusal(art) if hasattr(target, "refusal") else f"{target_name} cannot run {art.format}"
        raise UserError(f"{why}" + (f" (targets that take it: {', '.join(capable)})" if capable else ""))
    dev = _pick_device(target, target_name, device)
    settings = _profile_settings(quick, iterations, min_seconds, warmup, threads, runtime, timeout, batch_size)
    prof = target.profile(art, dev, settings)
    if as_json:
        emit_json(prof.to_dict())
    else:
        click.echo(render_profile(prof))


def _accepts(name: str, art) -> bool:
    from harness import plugins

    try:
        return bool(plugins.target(name).accepts(art))
    except Exception:  # noqa: BLE001 - a target that cannot even load does not take it
        return False


def _pick_device(target, target_name: str, name: str | None):
    devices = target.devices()
    if not devices:
        raise UserError(f"target {target_name} has no reachable devices")
    if name is None:
        return devices[0]
    for d in devices:
        if name in (d.name, d.id):
            return d
    raise UserError(f"unknown device {name!r} on {target_name}; devices: {', '.join(d.name for d in devices)}")



# -- run, plan, runs, report, gate, compare (plans, store, reports) ----------------------------

# reports: runs, report, compare (reports/)

STORE_HELP = "Results store: a file path, sqlite:///PATH or postgresql://... (default: $VITBENCH_STORE or ./vitbench-results.db)."


@main.command()
@click.option("--store", "store_url", default=None, help=STORE_HELP)
@click.option("--plan", "plan_name", default=None, help="Only runs of this plan.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Newest runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs(store_url, plan_name, limit, as_json) -> None:
    """Runs in the store, newest first: plan, commit, start, status, cells done/failed/total."""
    from harness.tables import format_table
    from reports.frame import open_results, runs_frame

    frame = runs_frame(open_results(store_url), plan_name, limit)
    if as_json:
        emit_json(frame.to_dict(orient="records"))
        return
    if frame.empty:
        click.echo("no runs" + (f" of plan {plan_name!r}" if plan_name else "") + " in the store")
        return
    click.echo(format_table(
        [(r.id, r.plan, r.commit[:10], r.started_at, r.status, r.cells_done, r.cells_failed, r.cells_total)
         for r in frame.itertuples()],
        ["run", "plan", "commit", "started (UTC)", "status", "done", "failed", "total"]))


@main.command()
@click.argument("run_id", required=False)
@click.option("--format", "fmt", default="md", show_default=True, help="md | html | csv | json")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to this file (default: stdout).")
@click.option("--store", "store_url", default=None, help=STORE_HELP)
@click.option("--history", "history_runs", type=click.IntRange(min=0), default=30, show_default=True,
              help="Runs of the same plan to look back over for trends and changes (0: none).")
def report(run_id, fmt, out, store_url, history_runs) -> None:
    """Report of RUN_ID (default: the latest run): Markdown for a CI job summary, one
    self-contained HTML page with plots, or the cell table as CSV / JSON."""
    from pathlib import Path

    from reports.frame import open_results
    from reports.report import check_format, render_report

    check_format(fmt)
    if out and not Path(out).resolve().parent.is_dir():
        raise UserError(f"cannot write {out}: folder {Path(out).resolve().parent} does not exist")
    text = render_report(open_results(store_url), run_id, fmt, history_runs)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"report written to {out}", err=True)
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--store", "store_url", default=None, help=STORE_HELP)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01, show_default=True,
              help="Significance level of the Mann-Whitney test.")
@click.option("--min-effect", type=click.FloatRange(min=0), default=0.05, show_default=True,
              help="Smallest change of the median that counts (0.05 = 5%).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compare(run_a, run_b, store_url, alpha, min_effect, as_json) -> None:
    """Per-cell latency change from RUN_A to RUN_B on the raw samples: ratio of medians with
    its bootstrap interval, Mann-Whitney p-value, and slower / faster / no change."""
    from harness.tables import format_table
    from reports.data import records
    from reports.frame import open_results
    from reports.trends import compare_runs

    frame = compare_runs(open_results(store_url), run_a, run_b, alpha, min_effect)
    if as_json:
        emit_json({"run_a": run_a, "run_b": run_b, "alpha": alpha, "min_effect": min_effect,
                   "cells": records(frame)})
        return
    rows = []
    for r in frame.itertuples():
        if r.verdict == "not compared":
            rows.append((r.label, None, None, None, "-", "-", f"not compared ({r.status_a} / {r.status_b})"))
            continue
        ci = f"{r.ratio_ci_low:.3f}-{r.ratio_ci_high:.3f}" if r.ratio_ci_low == r.ratio_ci_low else "-"
        p = "<1e-16" if r.p_value < 1e-16 else (f"{r.p_value:.2g}" if r.p_value == r.p_value else "-")
        rows.append((r.label, r.median_a_ms, r.median_b_ms, round(r.ratio, 3), ci, p, r.verdict))
    click.echo(f"{run_b} against {run_a}: median ratio B/A, 95% bootstrap interval, Mann-Whitney p "
               f"(a change needs p < {alpha:g}, an interval excluding 1 and at least {min_effect:.0%})")
    click.echo(format_table(rows, ["cell", "A p50 ms", "B p50 ms", "ratio", "95% CI", "p", "verdict"],
                            align="lrrrrrl"))
    counts = frame["verdict"].value_counts()
    click.echo(", ".join(f"{counts.get(v, 0)} {v}" for v in ("slower", "faster", "no change")))



# -- train, compress, eval (compression and accuracy) ------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
