"""`vitbench android ...`: phones on adb (the target's own subcommands, added through
``vitbench.commands``)."""

from __future__ import annotations

import click

from harness.cli.common import emit_json, render_profile
from harness.errors import UserError
from harness.timing import DEFAULT_ROUNDS


@click.group()
def android() -> None:
    """Phones on adb (Snapdragon, MediaTek, ...): list them, profile an artifact on one."""


def adb_option(fn):
    return click.option(
        "--adb",
        "adb_address",
        default=None,
        metavar="HOST:PORT",
        help="adb server (default: as adb finds it: ADB_SERVER_SOCKET, "
        "ANDROID_ADB_SERVER_ADDRESS/_PORT, else 127.0.0.1:5037).",
    )(fn)


@android.command("devices")
@adb_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def android_devices(adb_address: str | None, as_json: bool) -> None:
    """Every phone the adb server sees: model, Android, chipset, ABI, RAM, root."""
    from harness.tables import format_table
    from targets.android.target import AndroidTarget

    target = AndroidTarget(adb_address)
    rows = target.attached()
    if not rows:
        raise UserError(
            f"no phones attached to the adb server at {target.client.address}; check with "
            "`adb devices` (USB debugging on, the authorisation prompt accepted)",
            exit_code=1,
        )
    if as_json:
        emit_json(rows)
        return
    click.echo(
        format_table(
            [
                (
                    r["serial"],
                    r["state"],
                    r.get("model", ""),
                    r.get("android", ""),
                    r.get("chipset_name", ""),
                    r.get("abi", ""),
                    r.get("ram_mb", ""),
                    "yes" if r.get("rooted") else "no",
                )
                for r in rows
            ],
            ["serial", "state", "model", "Android", "chipset", "ABI", "RAM (MB)", "rooted"],
        )
    )
    for r in rows:
        if r.get("advice"):
            click.echo(f"{r['serial']} is {r['state']}: {r['advice']}")


@android.command("profile")
@click.argument("artifact", type=click.Path(exists=True))
@click.option("--serial", required=True, help="The phone (see `vitbench android devices`).")
@click.option(
    "--runner",
    default=None,
    type=click.Path(),
    help="executor_runner or onnxruntime_perf_test built for Android.",
)
@click.option(
    "--runner-file",
    "runner_files",
    multiple=True,
    type=click.Path(exists=True),
    help="A shared library pushed beside the runner (repeatable).",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=None,
    help="Measured executions (no minimum time).",
)
@click.option(
    "--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Warm-up executions."
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="CPU threads for the runner."
)
@click.option(
    "--compute-unit", default=None, help="npu, gpu or cpu (ONNX: picks the execution provider)."
)
@click.option("--ep", default=None, help="onnxruntime_perf_test -e: cpu, nnapi, qnn, xnnpack.")
@click.option(
    "--wait-cool/--no-wait-cool",
    default=True,
    show_default=True,
    help="Wait (bounded) for thermal status NONE and a cool battery before measuring.",
)
@click.option(
    "--max-wait", type=float, default=300.0, show_default=True, help="Longest wait for cooling (s)."
)
@click.option(
    "--poll-s", type=float, default=10.0, show_default=True, help="Seconds between thermal polls."
)
@click.option(
    "--max-battery-c",
    type=float,
    default=38.0,
    show_default=True,
    help="Battery temperature ceiling.",
)
@click.option(
    "--pin-big-cores", is_flag=True, help="Run the runner under taskset on the fastest cluster(s)."
)
@click.option(
    "--sustained",
    type=float,
    default=0.0,
    help="Run rounds for this many seconds; report throttling onset.",
)
@click.option(
    "--parity", is_flag=True, help="Also compare outputs with the reference beside the artifact."
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=900.0,
    show_default=True,
    help="Seconds the runner may take in all (a runner past it is killed).",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=DEFAULT_ROUNDS,
    show_default=True,
    help="Fresh runner launches, each after the cool-down wait; --iterations is shared.",
)
@adb_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def android_profile(
    artifact,
    serial,
    runner,
    runner_files,
    iterations,
    warmup,
    threads,
    compute_unit,
    ep,
    wait_cool,
    max_wait,
    poll_s,
    max_battery_c,
    pin_big_cores,
    sustained,
    parity,
    timeout_s,
    rounds,
    adb_address,
    as_json,
) -> None:
    """Profile ARTIFACT (.pte or .onnx with its manifest) on one phone."""
    from harness.artifact import Artifact
    from harness.rounds import in_rounds, measure_rounds
    from harness.target import ProfileSettings
    from targets.android.runners import FORMAT_KIND
    from targets.android.target import AndroidTarget

    art = Artifact.load(artifact)
    options = {
        "wait_cool": wait_cool,
        "max_wait_s": max_wait,
        "poll_s": poll_s,
        "max_battery_c": max_battery_c,
        "pin_big_cores": pin_big_cores,
        "sustained_s": sustained,
        "runner_files": list(runner_files),
        "parity": parity,
    }
    options |= {k: v for k, v in (("runner", runner), ("ort_ep", ep)) if v}
    settings = ProfileSettings(
        threads=threads, compute_unit=compute_unit, timeout_s=timeout_s, options=options
    )
    settings = settings.with_loop(warmup_iterations=warmup, warmup_seconds=0.0)
    if iterations is not None:
        settings = settings.with_loop(min_iterations=iterations, min_seconds=0.0)
    settings = in_rounds(settings, rounds)
    runners = {FORMAT_KIND.get(art.format, art.format): runner} if runner else None
    with AndroidTarget(adb_address, runners=runners) as target:
        device = target.device(serial)
        prof = measure_rounds(target, art, device, settings)
    if as_json:
        emit_json(prof.to_dict())
        return
    click.echo(render_profile(prof))
