"""An AI Hub profile (the client's ``download_profile()`` dict) in vitbench's terms.

The hub reports times in microseconds and memory in bytes: ``execution_summary`` holds
``all_inference_times`` (one per profiled iteration), first (cold) and warm load times and
peak-memory ranges per stage; ``execution_detail`` holds one entry per layer with the compute
unit that ran it and, when the runtime reports it, its time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MB = 1024 * 1024
UNITS = ("npu", "gpu", "cpu")


@dataclass
class HubProfile:
    samples_ms: list[float]
    metrics: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)  # units of non-standard metrics
    compute_unit: str = ""
    warnings: list[str] = field(default_factory=list)
    layers: dict[str, int] = field(default_factory=dict)  # layer count per compute unit


def _us_to_ms(v: Any) -> float | None:
    return None if v is None else float(v) / 1000.0


def _range_mb(v: Any) -> tuple[float, float] | None:
    if not v:
        return None
    lo, hi = v
    return (float(lo) / MB, float(hi) / MB)


def parse_profile(profile: dict[str, Any], asked_unit: str | None = None) -> HubProfile:
    summary = profile.get("execution_summary") or {}
    detail = profile.get("execution_detail") or []
    warnings: list[str] = []

    times = [t for t in (summary.get("all_inference_times") or []) if t is not None]
    if times:
        samples = [float(t) / 1000.0 for t in times]
    elif summary.get("estimated_inference_time"):
        samples = [float(summary["estimated_inference_time"]) / 1000.0]
        warnings.append("AI Hub reported one estimated inference time, not per-iteration times")
    else:
        raise ValueError("the AI Hub profile has no inference times")

    metrics: dict[str, float] = {}
    units: dict[str, str] = {}
    for name, key in (("load_cold_ms", "first_load_time"), ("load_warm_ms", "warm_load_time")):
        ms = _us_to_ms(summary.get(key))
        if ms is not None:
            metrics[name] = ms

    peak = _range_mb(summary.get("inference_memory_peak_range"))
    if peak:
        metrics["peak_memory_mb"] = peak[1]  # the upper bound: what a budget must allow for
        metrics["peak_memory_low_mb"] = peak[0]
        units["peak_memory_low_mb"] = "MB"
    elif summary.get("estimated_inference_peak_memory"):
        metrics["peak_memory_mb"] = float(summary["estimated_inference_peak_memory"]) / MB
    for stage in ("first_load", "warm_load"):
        r = _range_mb(summary.get(f"{stage}_memory_peak_range"))
        if r:
            name = f"load_{'cold' if stage == 'first_load' else 'warm'}_peak_memory_mb"
            metrics[name] = r[1]
            units[name] = "MB"

    counts = {u: 0 for u in UNITS}
    times_by_unit = {u: 0.0 for u in UNITS}
    for layer in detail:
        unit = str(layer.get("compute_unit", "")).lower()
        if unit in counts:
            counts[unit] += 1
            times_by_unit[unit] += float(layer.get("execution_time") or 0)
    n_layers = sum(counts.values())
    primary = ""
    if n_layers:
        for u in UNITS:
            metrics[f"compute_share_{u}"] = counts[u] / n_layers
        total_time = sum(times_by_unit.values())
        if total_time > 0:
            for u in UNITS:
                metrics[f"compute_time_share_{u}"] = times_by_unit[u] / total_time
                units[f"compute_time_share_{u}"] = "fraction"
        primary = max(UNITS, key=lambda u: (times_by_unit[u] if total_time > 0 else counts[u], counts[u]))
        asked = (asked_unit or "").lower()
        if asked in UNITS and primary != asked:
            warnings.append(
                f"ran mostly on {primary.upper()} although {asked.upper()} was asked for "
                f"({counts[asked]} of {n_layers} layers on {asked.upper()}): "
                f"{'CPU fallback' if primary == 'cpu' else 'fallback'}"
            )
        elif asked in UNITS and counts[asked] < n_layers:
            warnings.append(f"{n_layers - counts[asked]} of {n_layers} layers did not run on {asked.upper()}")
    return HubProfile(samples_ms=samples, metrics=metrics, units=units, compute_unit=primary,
                      warnings=warnings, layers={u: counts[u] for u in UNITS if n_layers})
