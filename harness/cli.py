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


# Android phones on adb (targets/android.py)
@main.group()
def android() -> None:
    """Phones on adb (Snapdragon, MediaTek, ...): list them, profile an artifact on one."""


def adb_option(fn):
    return click.option("--adb", "adb_address", default=None, metavar="HOST:PORT",
                        help="adb server (default: ANDROID_ADB_SERVER_PORT or 127.0.0.1:5037).")(fn)


@android.command("devices")
@adb_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def android_devices(adb_address: str | None, as_json: bool) -> None:
    """Every phone the adb server sees: model, Android, chipset, ABI, RAM, root."""
    from harness.tables import format_table
    from targets.android import AndroidTarget

    target = AndroidTarget(adb_address)
    rows = target.attached()
    if not rows:
        raise UserError(f"no phones attached to the adb server at {target.client.address}; check with `adb devices` "
                        "(USB debugging on, the authorisation prompt accepted)", exit_code=1)
    if as_json:
        emit_json(rows)
        return
    click.echo(format_table(
        [(r["serial"], r["state"], r.get("model", ""), r.get("android", ""), r.get("chipset_name", ""),
          r.get("abi", ""), r.get("ram_mb", ""), "yes" if r.get("rooted") else "no") for r in rows],
        ["serial", "state", "model", "Android", "chipset", "ABI", "RAM (MB)", "rooted"],
    ))


@android.command("profile")
@click.argument("artifact", type=click.Path(exists=True))
@click.option("--serial", required=True, help="The phone (see `vitbench android devices`).")
@click.option("--runner", default=None, type=click.Path(), help="executor_runner or onnxruntime_perf_test built for Android.")
@click.option("--runner-file", "runner_files", multiple=True, type=click.Path(exists=True),
              help="A shared library pushed beside the runner (repeatable).")
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Measured executions (no minimum time).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Warm-up executions.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for the runner.")
@click.option("--compute-unit", default=None, help="npu, gpu or cpu (ONNX: picks the execution provider).")
@click.option("--ep", default=None, help="onnxruntime_perf_test -e: cpu, nnapi, qnn, xnnpack.")
@click.option("--wait-cool/--no-wait-cool", default=True, show_default=True,
              help="Wait (bounded) for thermal status NONE and a cool battery before measuring.")
@click.option("--max-wait", type=float, default=300.0, show_default=True, help="Longest wait for cooling (s).")
@click.option("--poll-s", type=float, default=10.0, show_default=True, help="Seconds between thermal polls.")
@click.option("--max-battery-c", type=float, default=38.0, show_default=True, help="Battery temperature ceiling.")
@click.option("--pin-big-cores", is_flag=True, help="Run the runner under taskset on the fastest cluster(s).")
@click.option("--sustained", type=float, default=0.0, help="Run rounds for this many seconds; report throttling onset.")
@click.option("--parity", is_flag=True, help="Also compare outputs with the reference beside the artifact.")
@adb_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def android_profile(artifact, serial, runner, runner_files, iterations, warmup, threads, compute_unit, ep,
                    wait_cool, max_wait, poll_s, max_battery_c, pin_big_cores, sustained, parity, adb_address,
                    as_json) -> None:
    """Profile ARTIFACT (.pte or .onnx with its manifest) on one phone."""
    from harness.artifacts import Artifact
    from targets.android import AndroidTarget
    from targets.android_runners import FORMAT_KIND
    from targets.base import ProfileSettings

    art = Artifact.load(artifact)
    options = {"wait_cool": wait_cool, "max_wait_s": max_wait, "poll_s": poll_s, "max_battery_c": max_battery_c,
               "pin_big_cores": pin_big_cores, "sustained_s": sustained, "runner_files": list(runner_files),
               "parity": parity}
    options |= {k: v for k, v in (("runner", runner), ("ort_ep", ep)) if v}
    settings = ProfileSettings(threads=threads, compute_unit=compute_unit, options=options)
    settings = settings.with_loop(warmup_iterations=warmup, warmup_seconds=0.0)
    if iterations is not None:
        settings = settings.with_loop(min_iterations=iterations, min_seconds=0.0)
    runners = {FORMAT_KIND.get(art.format, art.format): runner} if runner else None
    with AndroidTarget(adb_address, runners=runners) as target:
        device = target.device(serial)
        prof = target.profile(art, device, settings)
    if as_json:
        emit_json(prof.to_dict())
        return
    s = prof.stats
    click.echo(f"{device.name}  {device.attributes.get('chipset_name', device.chipset)}  {device.os}")
    click.echo(f"latency ms  p50 {s.p50:.3f}  p90 {s.p90:.3f}  p99 {s.p99:.3f}  mean {s.mean:.3f}  (n={s.n}, cv {s.cv:.1%})")
    for name, value in prof.metrics.items():
        click.echo(f"{name:<24}{value:.4g} {prof.unit(name)}")
    for w in prof.warnings:
        click.echo(f"warning: {w}", err=True)


# -- run, plan, runs, report, gate, compare (plans, store, reports) ----------------------------


# -- train, compress, eval (compression and accuracy) ------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
