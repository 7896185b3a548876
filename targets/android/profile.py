"""A cell's readings from a phone (:class:`Measured`) as a vitbench Profile: the standard
metrics (load times, first inference, peak memory, compute-unit shares from the ETDump),
what could bias them (the phone's state before and after, the thermal wait, pinning,
throttling in sustained mode) and the warnings a reader needs beside the numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.artifact import Artifact
from harness.target import Device, Profile, ProfileSettings
from targets.android.device import PhoneInfo
from targets.android.etdump import BackendTimes
from targets.android.measurement import Measured, warmup_executions
from targets.android.options import AndroidOptions
from targets.android.runners import Runner
from targets.android.thermal import throttle_onset

if TYPE_CHECKING:  # pragma: no cover
    from harness.parity import ParityResult

RUNTIME = {"executorch": "executorch", "onnxruntime": "ort"}
COMPUTE_UNIT = {
    "qnn": "npu",
    "mediatek": "npu",
    "neuron": "npu",
    "nnapi": "npu",
    "vulkan": "gpu",
    "xnnpack": "cpu",
    "portable": "cpu",
    "cpu": "cpu",
    None: "cpu",
}


@dataclass(frozen=True)
class RunnerUsed:
    """The runner that measured, as the profile records it."""

    runner: Runner
    sha256: str
    abi_check: str


def compute_unit(
    artifact: Artifact, settings: ProfileSettings, opts: AndroidOptions, info: PhoneInfo
) -> str:
    if artifact.format == "onnx":
        return COMPUTE_UNIT.get(opts.execution_provider(settings, info), "cpu")
    return COMPUTE_UNIT.get(artifact.delegate, "npu")


def _run_metrics(m: Measured) -> dict[str, float]:
    first, last = m.runs[0], m.runs[-1]
    metrics: dict[str, float] = {}
    if first.output.load_ms is not None:
        metrics["load_cold_ms"] = first.output.load_ms
    if len(m.runs) > 1 and last.output.load_ms is not None:
        metrics["load_warm_ms"] = last.output.load_ms
    if first.output.first_inference_ms is not None:
        metrics["first_inference_ms"] = first.output.first_inference_ms
    metrics["thermal_wait_s"] = m.wait.waited_s
    return metrics


def peak_memory(m: Measured, runner: Runner) -> tuple[float | None, str | None, str]:
    """The runner's peak memory (MB), where it came from ("VmHWM": the wrapper's samples of
    /proc/PID/status; "runner": what the runner itself reports, ORT's peak working set) and
    what to say beside it when VmHWM could not be read ("" when it was)."""
    peaks = [r.peak_kb for r in m.runs if r.peak_kb]
    if peaks:
        return max(peaks) / 1024, "VmHWM", ""
    if any(r.status_reads for r in m.runs):
        why = "/proc/PID/status of the runner had no VmHWM line"
    else:
        why = (
            "the wrapper could not read the runner's /proc/PID/status (it ended before the "
            "first sample, or the phone does not let the shell user read it)"
        )
    reported = [r.output.peak_memory_mb for r in m.runs if r.output.peak_memory_mb]
    if reported:
        return max(reported), "runner", f"peak memory from {runner.name}'s own report: {why}"
    return None, None, f"peak memory not measured: {why}, and {runner.name} reports none"


def _etdump_metrics(dump: BackendTimes, skip: int, unit: str) -> dict[str, float]:
    """Time in the delegate and in CPU kernels per measured execution, and the shares."""
    measured = max(dump.executions - skip, 1)
    metrics = {
        "etdump_delegate_ms": sum(dump.delegate_ms[skip:]) / measured,
        "etdump_cpu_kernels_ms": sum(dump.operator_ms[skip:]) / measured,
    }
    share = dump.delegated_share(skip)
    if unit == "cpu":
        return metrics | {"compute_share_cpu": 1.0}
    return metrics | {f"compute_share_{unit}": share, "compute_share_cpu": 1.0 - share}


def _environment(m: Measured, settings: ProfileSettings, adb_server: str) -> dict[str, Any]:
    info, before, after = m.info, m.state_before, m.state_after
    threads = settings.threads if settings.threads is not None else "runner default"
    return {
        "serial": info.serial,
        "phone": info.to_dict(),
        "adb_server": adb_server,
        "state_before": before.to_dict(),
        "state_after": after.to_dict(),
        "thermal_wait": m.wait.to_dict(),
        "threads": threads,
        "pinned_cpus": list(m.pinned),
        "screen": before.screen,
        "os": f"Android {info.android}",
        "thermal_state": f"{before.thermal_name} -> {after.thermal_name}",
        "governor": ", ".join(sorted({c.governor for c in before.cpus if c.governor})),
    }


def _warnings(m: Measured, runner: Runner, onset: dict[str, Any] | None) -> list[str]:
    before, after = m.state_before, m.state_after
    warnings = [w for w in (m.wait.warning(),) if w]
    if not all(r.output.per_iteration for r in m.runs):
        warnings.append(
            f"{runner.name} printed no per-execution times and wrote no ETDump: the "
            "samples are per-process means, so percentiles are not per execution; "
            "use a newer runner"
        )
    if onset is not None:
        warnings.append(
            f"throttling from round {onset['round']} (after {onset['start_s']:.1f} s "
            f"of inference): {onset['why']}"
        )
    if before.screen and before.screen != "Awake":
        warnings.append(f"screen is {before.screen}: the phone may be in a power-saving state")
    if (after.thermal_status or 0) > (before.thermal_status or 0):
        warnings.append(
            f"thermal status rose during the run: {before.thermal_name} -> {after.thermal_name}"
        )
    return warnings


def build_profile(
    target: str,
    adb_server: str,
    artifact: Artifact,
    device: Device,
    settings: ProfileSettings,
    opts: AndroidOptions,
    used: RunnerUsed,
    m: Measured,
) -> Profile:
    """The profile of one cell, made once from everything it measured."""
    runner = used.runner
    unit = compute_unit(artifact, settings, opts, m.info)
    metrics = _run_metrics(m)
    peak_mb, peak_source, peak_note = peak_memory(m, runner)
    if peak_mb is not None:
        metrics["peak_memory_mb"] = peak_mb
    units: dict[str, str] = {"thermal_wait_s": "s"}
    details: dict[str, Any] = {
        "peak_memory_source": peak_source,
        "runner": {
            "kind": runner.kind,
            "name": runner.name,
            "sha256": used.sha256,
            "abi_check": used.abi_check,
        },
        "runs": [
            {
                "executions": len(r.output.samples_ms),
                "load_ms": r.output.load_ms,
                "peak_kb": r.peak_kb,
                "runner_summary": r.output.summary,
            }
            for r in m.runs
        ],
    }
    dumps = [r.etdump for r in m.runs if r.etdump]
    if dumps:
        skip = warmup_executions(settings)
        details["etdump"] = dumps[-1].to_dict() | {
            "delegate": artifact.delegate,
            "warmup_executions": skip,
        }
        metrics |= _etdump_metrics(dumps[-1], skip, unit)
        units |= {"etdump_delegate_ms": "ms", "etdump_cpu_kernels_ms": "ms"}
    onset = throttle_onset(m.rounds)
    if m.rounds:
        details["sustained"] = list(m.rounds)
        details["sustained_baseline"] = {  # what the rounds are judged against: before round 1
            "thermal_status": m.state_before.thermal_status,
            "battery_c": m.state_before.battery_c,
        }
    if onset is not None:
        metrics["throttle_onset_s"] = onset["start_s"]
        units["throttle_onset_s"] = "s"
    return Profile.from_samples(
        target,
        device,
        artifact.sha256,
        RUNTIME[runner.kind],
        list(m.samples),
        metrics=metrics,
        units=units,
        compute_unit=unit,
        environment=_environment(m, settings, adb_server)
        | ({"memory_method": peak_source} if peak_source else {}),
        warnings=_warnings(m, runner, onset) + ([peak_note] if peak_note else []),
        settings=settings.to_dict(),
        details=details,
    )


def with_parity(prof: Profile, result: ParityResult) -> Profile:
    """A new profile with the parity metrics (those it has numbers for: outputs of the wrong
    size have none but the verdict), the result in its details and its failures among the
    warnings."""
    rows = [r for r in result.metric_rows() if math.isfinite(r[1])]
    return prof.with_metrics(
        {name: value for name, value, _ in rows},
        {name: unit for name, _, unit in rows},
        details={**prof.details, "parity": result.to_dict()},
        warnings=[*prof.warnings, *(f"parity ({result.precision}): {f}" for f in result.failures)],
    )
