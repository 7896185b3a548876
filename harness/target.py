"""The Target contract and the types every target returns (the core's side of every device
family: built-ins in targets/, others through the ``vitbench.targets`` entry point).

A target is a family of devices (this machine, Qualcomm AI Hub, phones on adb, Macs). It says
which devices it can reach now, whether it accepts an artifact, and profiles or runs that
artifact on one device. Whatever the device, the answer is a :class:`Profile` with raw
samples and the same statistics (harness.measure), so numbers compare across targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from harness.errors import VitbenchError
from harness.measure import LatencyStats, LoopSettings, summarize
from harness.timing import DEFAULT_NOISE_FLOOR

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from harness.artifact import Artifact
    from harness.parity import ParityResult


@dataclass(frozen=True)
class Device:
    """One device a target can run on."""

    target: str  # "host", "aihub", "android", "apple", or a plugin's name
    name: str  # "Samsung Galaxy S24 (Family)", "Pixel 8", "host"
    chipset: str = ""  # "qualcomm-snapdragon-8gen3", "mt6989", "apple-m3"
    os: str = ""  # "Android 14", "macOS 14.5", "Linux 6.1"
    attributes: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def id(self) -> str:
        return f"{self.target}:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Device:
        return cls(**d)


@dataclass(frozen=True)
class ProfileSettings:
    """What a profile measures and for how long. ``quick()`` fits CI; the defaults fit a
    nightly run."""

    loop: LoopSettings = field(default_factory=LoopSettings)
    runtime: str | None = None  # target-specific: "ort", "executorch", "torch", "tflite", ...
    threads: int | None = None  # None: the runtime's default, recorded as used
    compute_unit: str | None = None  # "npu", "gpu", "cpu", "all", Core ML's "CPU_AND_NE", ...
    timeout_s: float = 900.0  # one measurement, load included
    batch_size: int = 1
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # the measurement this belongs to ("RUN_ID/CELL_KEY" in a run): a target that keeps
    # remote jobs to pick up again (AI Hub) keys them by it, so a new run measures again and
    # only a resume of the same run finds its own jobs; "" reuses the jobs of a known artifact
    session: str = ""
    # fresh processes / sessions / jobs the cell is measured in (harness/rounds.py); ``loop``
    # is one round's
    rounds: int = 1
    noise_floor: float = DEFAULT_NOISE_FLOOR  # least between-round sd of a two-level interval

    @classmethod
    def quick(cls, **kw: Any) -> ProfileSettings:
        loop = LoopSettings(
            warmup_iterations=3, warmup_seconds=0.2, min_iterations=20, min_seconds=1.0
        )
        return cls(loop=loop, timeout_s=300.0, **kw)

    def with_loop(self, **kw: Any) -> ProfileSettings:
        return replace(self, loop=replace(self.loop, **kw))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProfileSettings:
        d = dict(d)
        d["loop"] = LoopSettings(**d.get("loop", {}))
        return cls(**d)


# Metric names every target uses where it has the number (unit in brackets):
#   load_cold_ms, load_warm_ms, first_inference_ms       [ms]
#   peak_memory_mb, planned_memory_mb                     [MB]
#   compute_share_npu / _gpu / _cpu                       [fraction of layers or time]
#   parity_max_abs, parity_cosine, parity_top1            [-]
STANDARD_METRICS = {
    "load_cold_ms": "ms",
    "load_warm_ms": "ms",
    "first_inference_ms": "ms",
    "peak_memory_mb": "MB",
    "planned_memory_mb": "MB",
    "compute_share_npu": "fraction",
    "compute_share_gpu": "fraction",
    "compute_share_cpu": "fraction",
}


# what a compute unit asked for means for CPU fallback: "all" and the CPU itself allow the CPU
CPU_UNITS = ("", "all", "cpu", "cpu_only")


def cpu_fallback(asked: str | None, metrics: dict[str, float]) -> float | None:
    """The share of the model's layers that ran on the CPU although an accelerator (an NPU,
    a GPU, Core ML's Neural Engine) was asked for; None when none was asked or the target
    reports no compute shares."""
    if (asked or "").lower() in CPU_UNITS or "compute_share_cpu" not in metrics:
        return None
    return float(metrics["compute_share_cpu"])


@dataclass(frozen=True)
class Profile:
    """A measurement of one artifact on one device."""

    target: str
    device: Device
    artifact_sha256: str
    runtime: str
    samples_ms: list[float]
    stats: LatencyStats
    metrics: dict[str, float] = field(default_factory=dict)  # STANDARD_METRICS and more
    units: dict[str, str] = field(default_factory=dict)  # unit of any metric not standard
    compute_unit: str = ""  # the primary compute unit that ran the model ("npu", "cpu", ...)
    environment: dict[str, Any] = field(default_factory=dict)  # what could bias the numbers
    warnings: list[str] = field(default_factory=list)  # CPU fallback, drift, thermal...
    settings: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(
        default_factory=dict
    )  # target-specific: job ids, per-layer data
    sample_rounds: list[int] = field(default_factory=list)  # each sample's round; []: one

    @property
    def rounds(self) -> int:
        return self.stats.rounds

    @classmethod
    def from_samples(
        cls,
        target: str,
        device: Device,
        artifact_sha256: str,
        runtime: str,
        samples_ms: list[float],
        warnings: Sequence[str] = (),
        **kw: Any,
    ) -> Profile:
        stats = summarize(samples_ms)
        notes = list(warnings)
        if stats.drift_significant and abs(stats.drift) > 0.05:
            notes.append(
                f"latency drifted {stats.drift:+.0%} from the first to the last quarter of the run"
            )
        return cls(
            target=target,
            device=device,
            artifact_sha256=artifact_sha256,
            runtime=runtime,
            samples_ms=[float(s) for s in samples_ms],
            stats=stats,
            warnings=notes,
            **kw,
        )

    def with_warnings(self, *warnings: str) -> Profile:
        """A new profile with ``warnings`` added (this one is left as it is)."""
        return replace(self, warnings=[*self.warnings, *warnings])

    def with_metrics(
        self, metrics: dict[str, float], units: dict[str, str] | None = None, **changes: Any
    ) -> Profile:
        """A new profile with ``metrics`` (and their ``units``) added or replaced."""
        return replace(
            self,
            metrics={**self.metrics, **metrics},
            units={**self.units, **(units or {})},
            **changes,
        )

    def unit(self, metric: str) -> str:
        return self.units.get(metric) or STANDARD_METRICS.get(metric, "")

    def metric_rows(self) -> list[tuple[str, float, str]]:
        """(name, value, unit) rows for the store: latency statistics, then every metric."""
        s = self.stats
        rows = [
            ("latency_p50_ms", s.p50, "ms"),
            ("latency_p90_ms", s.p90, "ms"),
            ("latency_p99_ms", s.p99, "ms"),
            ("latency_mean_ms", s.mean, "ms"),
            ("latency_std_ms", s.std, "ms"),
            ("latency_cv", s.cv, "ratio"),
            ("latency_min_ms", s.min, "ms"),
            ("latency_max_ms", s.max, "ms"),
            ("latency_p50_ci_low_ms", s.p50_ci[0], "ms"),
            ("latency_p50_ci_high_ms", s.p50_ci[1], "ms"),
            ("latency_p90_ci_low_ms", s.p90_ci[0], "ms"),
            ("latency_p90_ci_high_ms", s.p90_ci[1], "ms"),
            ("latency_drift", s.drift, "ratio"),
            ("latency_outliers", float(s.outliers), "count"),
            ("iterations", float(s.n), "count"),
            ("rounds", float(s.rounds), "count"),
            ("latency_between_round_cv", s.between_round_cv, "ratio"),
            ("latency_within_round_cv", s.within_round_cv, "ratio"),
            ("latency_round_share", s.round_share, "ratio"),
        ]
        rows += [(k, float(v), self.unit(k)) for k, v in self.metrics.items()]
        return rows

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["device"] = self.device.to_dict()
        d["stats"] = self.stats.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        d = dict(d)
        d["device"] = Device.from_dict(d["device"])
        d["stats"] = LatencyStats.from_dict(d["stats"])
        return cls(**d)


class TargetError(VitbenchError):
    """A measurement that could not be made. ``kind`` classifies it for the store:
    'infrastructure' (device gone, service down: retryable), 'model' (the artifact cannot
    run), 'measurement' (it ran but the numbers cannot be trusted), 'configuration' (a
    credential or setting the user must fix: the run stops). ``samples_ms`` keeps what was
    measured before the failure."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        kind: str = "infrastructure",
        samples_ms: list[float] | None = None,
        retryable: bool | None = None,
    ):
        super().__init__(message, kind=kind)
        self.samples_ms = list(samples_ms or [])
        self.retryable = (kind == "infrastructure") if retryable is None else retryable


class Target:
    """What every device family implements. Subclass it and override what differs: every
    method the core calls is here, with a default, so the core never probes a plugin.

    Required: ``name``, :meth:`devices`, :meth:`profile`, :meth:`infer`.
    """

    name: str = ""
    # True when :meth:`profile` / :meth:`profile_many` measure ``settings.rounds`` rounds
    # themselves, all at once (AI Hub submits every round's profile job together) and return
    # them merged; otherwise the core asks for one round at a time.
    rounds_at_once: bool = False

    # -- what is there ------------------------------------------------------------------
    def unavailable_reason(self) -> str:
        """Why this target cannot be used here at all ("" when it can): a missing SDK, no
        credentials."""
        return ""

    def devices(self) -> list[Device]:
        """What is reachable now, with chipset and OS."""
        raise NotImplementedError(f"target {self.name!r} does not list its devices")

    def select(self, selectors: Sequence[str]) -> tuple[list[Device], list[str]]:
        """The devices ``selectors`` pick (every reachable one when there are none) and the
        selectors that matched nothing. A selector is a device name, its id
        ``target:name`` or ``chipset:SLUG``; targets with richer selectors override this."""
        reachable = self.devices()
        if not selectors:
            return reachable, []
        picked: list[Device] = []
        unmatched: list[str] = []
        for sel in selectors:
            key = sel.removeprefix("chipset:")
            hits = [
                d
                for d in reachable
                if sel in (d.name, d.id) or (sel.startswith("chipset:") and d.chipset == key)
            ]
            if hits:
                picked += [d for d in hits if d not in picked]
            else:
                unmatched.append(sel)
        return picked, unmatched

    # -- what it runs -------------------------------------------------------------------
    def unmatched_reason(self, selector: str) -> str:
        """Why ``selector``, left unmatched by :meth:`select`, names no device it can use,
        and what to do about it (a phone listed as unauthorized); "" when it cannot tell."""
        return ""

    def refusal(self, artifact: Artifact) -> str:
        """Why this target cannot run ``artifact`` ("" when it can)."""
        return ""

    def accepts(self, artifact: Artifact) -> bool:
        """Whether this target can run ``artifact`` at all."""
        return not self.refusal(artifact)

    def parity_precision(self, artifact: Artifact, settings: ProfileSettings | None = None) -> str:
        """The precision whose tolerance judges this target's outputs for ``artifact`` run
        with ``settings`` (a runtime or compute unit that computes in fp16 is judged as fp16
        whatever the export says)."""
        return artifact.precision

    # -- measuring ----------------------------------------------------------------------
    def profile(self, artifact: Artifact, device: Device, settings: ProfileSettings) -> Profile:
        raise NotImplementedError(f"target {self.name!r} does not profile")

    def profile_many(
        self, artifact: Artifact, devices: Sequence[Device], settings: ProfileSettings
    ) -> list[Profile | TargetError]:
        """One profile (or the error that stopped it) per device; targets that can measure
        several devices at once override this."""
        out: list[Profile | TargetError] = []
        for device in devices:
            try:
                out.append(self.profile(artifact, device, settings))
            except TargetError as exc:
                out.append(exc)
        return out

    def infer(
        self,
        artifact: Artifact,
        device: Device,
        inputs: list[np.ndarray],
        allow_data_upload: bool = False,
        settings: ProfileSettings | None = None,
    ) -> list[np.ndarray]:
        """Outputs for ``inputs`` (one array per input batch), for parity and accuracy.
        ``allow_data_upload``: the user allowed real images to leave this machine in this
        run; a target that sends inputs to a service (AI Hub) refuses them without it.
        ``settings``: the cell's runtime, compute unit and options, so the outputs come from
        the model that was profiled (None: the target's defaults)."""
        raise NotImplementedError(f"target {self.name!r} does not run inference")

    def parity(
        self, artifact: Artifact, device: Device, settings: ProfileSettings | None = None
    ) -> ParityResult:
        """The artifact's seeded reference inputs run on ``device`` through :meth:`infer`
        with the cell's ``settings``, judged against the PyTorch outputs stored beside it
        (:mod:`harness.parity`) with the tolerance of :meth:`parity_precision`."""
        from harness.artifact import ArtifactError
        from harness.parity import REFERENCE_FILE, check, load_reference

        if not (artifact.folder / REFERENCE_FILE).is_file():
            raise ArtifactError(
                f"{artifact.folder} has no {REFERENCE_FILE}; export it with `vitbench export` "
                "(which writes the seeded reference outputs)"
            )
        inputs, reference = load_reference(artifact.folder)
        outputs = self.infer(artifact, device, inputs, settings=settings)
        precision = self.parity_precision(artifact, settings)
        return check(reference, outputs, precision, where=self.where(artifact, device))

    def where(self, artifact: Artifact, device: Device) -> str:
        """What runs ``artifact`` on ``device``, as parity results say it."""
        return f"{self.name}:{device.name}"

    def close(self) -> None:
        """Release connections and what the target keeps on its devices."""

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
