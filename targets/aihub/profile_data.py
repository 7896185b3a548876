"""An AI Hub profile (the client's ``download_profile()`` dict) in vitbench's terms.

The hub reports times in microseconds and memory in bytes: ``execution_summary`` holds
``all_inference_times`` (one per profiled iteration), first (cold) and warm load times and
peak-memory ranges per stage; ``execution_detail`` holds one entry per layer with the compute
unit that ran it and, when the runtime reports it, its time.

The hub reports every iteration it ran, slow first ones included: those leading iterations
are warm-up (:func:`harness.measure.leading_warmup`), kept raw beside the profile and left out
of its statistics, as every other target's timing loop leaves out its own warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.measure import leading_warmup

MB = 1024 * 1024
UNITS = ("npu", "gpu", "cpu")


@dataclass(frozen=True)
class HubProfile:
    samples_ms: list[float]  # the steady iterations: what statistics are computed from
    metrics: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)  # units of non-standard metrics
    compute_unit: str = ""
    warnings: list[str] = field(default_factory=list)
    layers: dict[str, int] = field(default_factory=dict)  # layer count per compute unit
    warmup_ms: list[float] = field(default_factory=list)  # the leading warm-up iterations


def _us_to_ms(v: Any) -> float | None:
    return None if v is None else float(v) / 1000.0


def _range_mb(v: Any) -> tuple[float, float] | None:
    if not v:
        return None
    lo, hi = v
    return (float(lo) / MB, float(hi) / MB)


def _samples(summary: dict[str, Any]) -> tuple[list[float], list[str]]:
    """Per-iteration inference times (ms), or the one estimate the hub made, and a warning
    when it is only that."""
    times = [t for t in (summary.get("all_inference_times") or []) if t is not None]
    if times:
        return [float(t) / 1000.0 for t in times], []
    if summary.get("estimated_inference_time"):
        return [float(summary["estimated_inference_time"]) / 1000.0], [
            "AI Hub reported one estimated inference time, not per-iteration times"
        ]
    raise ValueError("the AI Hub profile has no inference times")


def _load_and_memory(summary: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Cold and warm load times, and peak memory of inference and of each load."""
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
    return metrics, units


@dataclass(frozen=True)
class _Layers:
    """Layers per compute unit, and their time where the runtime reports it."""

    counts: dict[str, int]
    times: dict[str, float]

    @classmethod
    def of(cls, detail: list[dict[str, Any]]) -> _Layers:
        counts = {u: 0 for u in UNITS}
        times = {u: 0.0 for u in UNITS}
        for layer in detail:
            unit = str(layer.get("compute_unit", "")).lower()
            if unit in counts:
                counts[unit] += 1
                times[unit] += float(layer.get("execution_time") or 0)
        return cls(counts, times)

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def shares(self) -> tuple[dict[str, float], dict[str, str]]:
        metrics = {f"compute_share_{u}": self.counts[u] / self.n for u in UNITS}
        units: dict[str, str] = {}
        total_time = sum(self.times.values())
        if total_time > 0:
            for u in UNITS:
                metrics[f"compute_time_share_{u}"] = self.times[u] / total_time
                units[f"compute_time_share_{u}"] = "fraction"
        return metrics, units

    def primary(self) -> str:
        """The unit that ran most of the model: by time where known, else by layer count."""
        timed = sum(self.times.values()) > 0
        return max(
            UNITS, key=lambda u: (self.times[u] if timed else self.counts[u], self.counts[u])
        )

    def fallback_warnings(self, asked: str) -> list[str]:
        """What to say when layers ran elsewhere than on the unit asked for."""
        if asked not in UNITS:
            return []
        primary, n, on_asked = self.primary(), self.n, self.counts[asked]
        if primary != asked:
            return [
                f"ran mostly on {primary.upper()} although {asked.upper()} was asked for "
                f"({on_asked} of {n} layers on {asked.upper()}): "
                f"{'CPU fallback' if primary == 'cpu' else 'fallback'}"
            ]
        if on_asked < n:
            return [f"{n - on_asked} of {n} layers did not run on {asked.upper()}"]
        return []


def parse_profile(profile: dict[str, Any], asked_unit: str | None = None) -> HubProfile:
    summary = profile.get("execution_summary") or {}
    raw, warnings = _samples(summary)
    k = leading_warmup(raw)
    warmup, samples = raw[:k], raw[k:]
    metrics, units = _load_and_memory(summary)
    layers = _Layers.of(profile.get("execution_detail") or [])
    if not layers.n:
        return HubProfile(
            samples_ms=samples, metrics=metrics, units=units, warnings=warnings, warmup_ms=warmup
        )
    shares, share_units = layers.shares()
    return HubProfile(
        samples_ms=samples,
        metrics=metrics | shares,
        units=units | share_units,
        compute_unit=layers.primary(),
        warnings=warnings + layers.fallback_warnings((asked_unit or "").lower()),
        layers=dict(layers.counts),
        warmup_ms=warmup,
    )
