"""`vitbench targets` and `vitbench profile`: the target registry and one measurement."""

from __future__ import annotations

import click

from harness.cli.common import emit_json, pick_device, render_profile
from harness.errors import UserError
from harness.timing import DEFAULT_ROUNDS


@click.command()
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
        rows.append(
            {
                "target": info.name,
                "source": info.source,
                "available": not reason,
                "reason": reason,
                "devices": devices,
            }
        )
    if as_json:
        emit_json(rows)
        return
    table = []
    for r in rows:
        if not r["devices"]:
            table.append((r["target"], "-", "-", "-", r["reason"] or "no devices reachable"))
        for d in r["devices"]:
            note = (d.get("attributes") or {}).get(
                "reason", ""
            )  # a configured host not reachable now
            table.append((r["target"], d["name"], d["chipset"] or "-", d["os"] or "-", note))
    click.echo(format_table(table, ["target", "device", "chipset", "os", "note"]))


def _profile_settings(
    quick, iterations, min_seconds, warmup, threads, runtime, timeout, batch_size, rounds=None
):
    from harness.rounds import in_rounds
    from harness.target import ProfileSettings

    base = ProfileSettings.quick() if quick else ProfileSettings()
    rounds = rounds or (1 if quick else DEFAULT_ROUNDS)
    loop = {
        k: v
        for k, v in (
            ("min_iterations", iterations),
            ("min_seconds", min_seconds),
            ("warmup_iterations", warmup),
        )
        if v is not None
    }
    if iterations is not None and iterations > base.loop.max_iterations:
        loop["max_iterations"] = iterations
    try:
        settings = base.with_loop(**loop)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    from dataclasses import replace

    return replace(
        in_rounds(settings, rounds),
        runtime=runtime,
        threads=threads,
        batch_size=batch_size,
        timeout_s=timeout if timeout is not None else settings.timeout_s,
    )


@click.command()
@click.argument("artifact", type=click.Path())
@click.option("--target", "target_name", default="host", show_default=True, help="Where to run it.")
@click.option("--device", default=None, help="Device name (default: the target's first).")
@click.option(
    "--runtime", default=None, help="host: ort | executorch | torch (default: by format)."
)
@click.option(
    "--iterations", type=click.IntRange(min=1), default=None, help="At least this many timed runs."
)
@click.option(
    "--min-seconds", type=click.FloatRange(min=0), default=None, help="And at least this long."
)
@click.option("--warmup", type=click.IntRange(min=0), default=None, help="Warm-up iterations.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Runtime threads (default: usable cores).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds before the worker is killed.",
)
@click.option(
    "--compute-unit",
    default=None,
    help="apple, Core ML: ALL | CPU_AND_NE | CPU_AND_GPU | CPU_ONLY (default ALL).",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=None,
    help=f"Fresh worker processes / sessions / jobs to measure in (default {DEFAULT_ROUNDS}; "
    "--quick: 1); "
    "the iterations and seconds are shared among them.",
)
@click.option(
    "--quick", is_flag=True, help="CI settings: one round, 20 iterations and 1 s minimum."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output (raw samples included)."
)
def profile(
    artifact,
    target_name,
    device,
    runtime,
    iterations,
    min_seconds,
    warmup,
    threads,
    batch_size,
    timeout,
    compute_unit,
    rounds,
    quick,
    as_json,
) -> None:
    """Measure ARTIFACT: latency statistics, load times, first inference, peak memory."""
    from harness import plugins
    from harness.artifact import Artifact

    art = Artifact.load(artifact)
    target = plugins.target(target_name)
    if not target.accepts(art):
        capable = [n for n in plugins.names("target") if n != target_name and _accepts(n, art)]
        why = target.refusal(art) or f"{target_name} cannot run {art.format}"
        raise UserError(
            f"{why}" + (f" (targets that take it: {', '.join(capable)})" if capable else "")
        )
    dev = pick_device(target, target_name, device)
    settings = _profile_settings(
        quick, iterations, min_seconds, warmup, threads, runtime, timeout, batch_size, rounds
    )
    if compute_unit:
        from dataclasses import replace

        settings = replace(settings, compute_unit=compute_unit)
    from harness.rounds import measure_rounds

    prof = measure_rounds(target, art, dev, settings)
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
