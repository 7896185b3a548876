"""`vitbench aihub ...`: Qualcomm AI Hub's devices, compile + profile on many at once, and
seeded-input parity (the target's own subcommands, added through ``vitbench.commands``)."""

from __future__ import annotations

from typing import Any

import click

from harness.cli.common import emit_json
from harness.errors import UserError
from harness.timing import DEFAULT_ROUNDS


@click.group()
def aihub() -> None:
    """Qualcomm AI Hub: its devices, and profiling on real Snapdragon hardware (needs an AI
    Hub token: `qai-hub configure --api_token TOKEN` or QAI_HUB_API_TOKEN)."""


@aihub.command("devices")
@click.option(
    "--device",
    "selectors",
    multiple=True,
    help="Only these: a name, an attribute such as chipset:qualcomm-snapdragon-8gen3, "
    "optionally @OS or @[low,high).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def aihub_devices(selectors: tuple[str, ...], as_json: bool) -> None:
    """The devices AI Hub offers now, with chipset, OS and the runtimes they take."""
    from harness.tables import format_table
    from targets.aihub import AIHubTarget
    from targets.aihub.devices import device_row

    hub = AIHubTarget()
    rows = [device_row(d) for d in (hub.pick(selectors) if selectors else hub.devices())]
    if as_json:
        emit_json(rows)
        return
    click.echo(
        format_table(
            [(r["name"], r["os"], r["chipset"], ", ".join(r["runtimes"])) for r in rows],
            ["device", "os", "chipset", "runtimes"],
        )
    )


@aihub.command("profile")
@click.argument("artifact", type=click.Path())
@click.option(
    "--device",
    "selectors",
    multiple=True,
    required=True,
    help="Repeat for several devices: a name, chipset:NAME, optionally @OS or @[low,high).",
)
@click.option(
    "--runtime",
    default="tflite",
    show_default=True,
    help="tflite, qnn_dlc, qnn_context_binary, onnx or precompiled_qnn_onnx.",
)
@click.option("--compute-unit", default="npu", show_default=True, help="npu, gpu, cpu or all.")
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Profiled inferences per device, shared among its rounds (at least 10 a job).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="Seconds to wait for each job; a job past it keeps running and a re-run picks it up.",
)
@click.option(
    "--parity", is_flag=True, help="Also run the seeded reference inputs and compare with PyTorch."
)
@click.option(
    "--state",
    type=click.Path(),
    default=None,
    help="Job journal for resuming (default: ~/.cache/vitbench/aihub/journal.json).",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Measure again: new profile (and parity) jobs even for an artifact the journal knows "
    "(the upload and compiled model are reused).",
)
@click.option("--poll-interval", type=float, default=10.0, hidden=True)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=DEFAULT_ROUNDS,
    show_default=True,
    help="Separate profile jobs per device (rounds), every device's at once in each round.",
)
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def aihub_profile(
    artifact: str,
    selectors: tuple[str, ...],
    runtime: str,
    compute_unit: str,
    iterations: int,
    timeout_s: float,
    parity: bool,
    state: str | None,
    fresh: bool,
    poll_interval: float,
    rounds: int,
    quiet: bool,
    as_json: bool,
) -> None:
    """Compile ARTIFACT (ONNX or pt2) for each device and profile it there, all at once.
    Run again, it picks up the jobs of the first time (a run cut off resumes); --fresh
    measures again."""
    import uuid

    from harness.artifact import Artifact
    from harness.rounds import in_rounds, profile_many_rounds
    from harness.tables import format_table
    from harness.target import ProfileSettings, TargetError
    from targets.aihub import AIHubTarget

    def progress(who: str, message: str) -> None:
        if not quiet:
            click.echo(f"[aihub] {who}: {message}", err=True)

    hub = AIHubTarget(journal=state, poll_interval_s=poll_interval, progress=progress)
    art = Artifact.load(artifact)
    hub.check_artifact(art)
    settings = ProfileSettings(
        runtime=runtime,
        compute_unit=compute_unit,
        timeout_s=timeout_s,
        session=f"fresh-{uuid.uuid4().hex[:12]}" if fresh else "",
    ).with_loop(min_iterations=iterations)
    settings = in_rounds(settings, rounds)
    devices = hub.pick(selectors)
    results = profile_many_rounds(hub, art, devices, settings, parity=parity)
    failed = [r for r in results if isinstance(r, TargetError)]
    if as_json:
        emit_json(
            [
                {"device": d.name, "status": "failed", "kind": r.kind, "error": str(r)}
                if isinstance(r, TargetError)
                else {"device": d.name, "status": "done", "profile": r.to_dict()}
                for d, r in zip(devices, results, strict=True)
            ]
        )
    else:
        rows = []
        for d, r in zip(devices, results, strict=True):
            if isinstance(r, TargetError):
                rows.append(
                    (d.name, d.chipset, f"failed ({r.kind})", None, None, None, None, None, "")
                )
                continue
            m = r.metrics
            rows.append(
                (
                    d.name,
                    d.chipset,
                    "done",
                    r.stats.p50,
                    r.stats.p90,
                    m.get("load_cold_ms"),
                    m.get("peak_memory_mb"),
                    m.get("compute_share_npu"),
                    r.compute_unit.upper(),
                )
            )
        click.echo(
            format_table(
                rows,
                [
                    "device",
                    "chipset",
                    "status",
                    "p50 ms",
                    "p90 ms",
                    "cold load ms",
                    "peak MB",
                    "NPU layers",
                    "unit",
                ],
            )
        )
        for d, r in zip(devices, results, strict=True):
            for w in [] if isinstance(r, TargetError) else r.warnings:
                click.echo(f"warning: {d.name}: {w}")
    if failed:
        for r in failed:
            click.echo(f"failed: {r}", err=True)
        raise UserError(
            f"{len(failed)} of {len(results)} devices failed; finished ones are shown above",
            exit_code=1,
        )


@aihub.command("infer")
@click.argument("artifact", type=click.Path())
@click.option(
    "--device",
    "selector",
    required=True,
    help="One device: a name or chipset:NAME, optionally @OS.",
)
@click.option(
    "--inputs",
    "inputs_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help=".npy of shape (N, C, H, W); default: the artifact's seeded reference inputs "
    "(parity check).",
)
@click.option(
    "--allow-data-upload",
    is_flag=True,
    help="Allow --inputs (real images) to be uploaded to AI Hub in this run.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="Write the outputs to this .npy."
)
@click.option("--runtime", default="tflite", show_default=True)
@click.option("--compute-unit", default="npu", show_default=True)
@click.option(
    "--timeout", "timeout_s", type=click.FloatRange(min=0), default=3600.0, show_default=True
)
@click.option("--state", type=click.Path(), default=None, help="Job journal for resuming.")
@click.option("--poll-interval", type=float, default=10.0, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def aihub_infer(
    artifact: str,
    selector: str,
    inputs_path: str | None,
    allow_data_upload: bool,
    out: str | None,
    runtime: str,
    compute_unit: str,
    timeout_s: float,
    state: str | None,
    poll_interval: float,
    as_json: bool,
) -> None:
    """Run inputs through ARTIFACT on one AI Hub device. Without --inputs: the seeded
    synthetic inputs, compared with the PyTorch reference outputs."""
    import numpy as np

    from harness.artifact import Artifact
    from harness.parity import check, load_reference
    from harness.target import ProfileSettings
    from targets.aihub import AIHubTarget
    from targets.aihub.inputs import check_inputs_may_leave

    hub = AIHubTarget(journal=state, poll_interval_s=poll_interval)
    art = Artifact.load(artifact)
    hub.check_artifact(art)
    reference = None
    if inputs_path:
        data = np.load(inputs_path)
        inputs = [data[i : i + 1].astype(np.float32) for i in range(len(data))]
    else:
        inputs, reference = load_reference(art.folder)
    check_inputs_may_leave(art, inputs, allow_data_upload)  # before any traffic
    settings = ProfileSettings(runtime=runtime, compute_unit=compute_unit, timeout_s=timeout_s)
    (device,) = hub.pick([selector])
    outputs = hub.infer(art, device, inputs, allow_data_upload=allow_data_upload, settings=settings)
    if out:
        np.save(out, np.concatenate(outputs))
    result: dict[str, Any] = {
        "device": device.name,
        "inputs": len(inputs),
        "top1": [int(np.argmax(o)) for o in outputs],
    }
    if reference is not None:
        precision = hub.parity_precision(art, settings)
        result["parity"] = check(
            reference, outputs, precision, where=hub.where(art, device)
        ).to_dict()
    if as_json:
        emit_json(result)
        return
    click.echo(f"{device.name}: {len(outputs)} outputs, top-1 {result['top1']}")
    if reference is not None:
        p = result["parity"]
        click.echo(
            f"parity: max abs {p['max_abs']:.3g}, cosine {p['cosine']:.6f}, top-1 {p['top1']:.0%} "
            f"({'; '.join(p['failures']) or 'within ' + p['precision'] + ' tolerance'})"
        )
