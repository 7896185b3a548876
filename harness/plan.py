"""Plans: the benchmark matrix in a TOML file.

A plan names models x exports x targets (x the devices each target selects), how to
measure, what parity and accuracy to check, and the budgets the gate applies::

    name = "nightly"

    [[models]]
    source = "lite"                 # a preset, a checkpoint folder or a timm weights file
    in_chans = 1                    # optional overrides: in_chans, num_classes, img_size
    teacher = "xray-teacher"        # optional: the plan model it was distilled from
    accuracy = true                 # false: [accuracy] does not apply to this model

    [[exports]]
    format = "executorch"           # onnx | executorch | coreml | pt2 | a plugin's name
    delegate = "xnnpack"            # executorch: xnnpack | coreml | qnn | mediatek | portable
    precision = "int8"              # fp32 | fp16 | int8
    calibration = "calib.npz"       # int8: images to calibrate on (seeded images if absent)

    [[targets]]
    name = "host"                   # host | aihub | android | apple | a plugin's name
    devices = ["host"]              # selectors; every reachable device when absent
    concurrency = 1                 # cells of this target measured at once
    compute_unit = "npu"            # optional: the unit asked for (default: [measure]'s)

    [measure]                       # harness.measure rules
    rounds = 3                      # fresh processes / sessions / jobs per cell
    min_iterations = 100            # per cell, shared out among its rounds
    min_seconds = 10.0

    [parity]
    on_device = true                # run seeded inputs on the device and compare with PyTorch

    [accuracy]                      # optional: accuracy measured through the target
    data = "pneumoniamnist.npz"
    limit = 200
    allow_data_upload = false       # true: its images may go to AI Hub in this run

    [budgets]
    latency_ms = 200                # the gated percentile must stay under this
    percentile = 90
    accuracy_retention = 0.95       # on the target vs PyTorch fp32 of the same model
    compression_retention = 0.93    # a student (PyTorch) vs its teacher (PyTorch)
    max_cpu_fallback = 0.0          # optional: gate the share of layers on the CPU
    [[budgets.devices]]             # per-device overrides
    device = "host"
    latency_ms = 100

Errors name the field, its line in the file and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from harness.plan_fields import PlanError, Reader
from harness.timing import DEFAULT_NOISE_FLOOR, DEFAULT_ROUNDS, LoopSettings

PRECISIONS = ("fp32", "fp16", "int8")
PERCENTILES = (50, 90)


@dataclass(frozen=True)
class ModelEntry:
    source: str
    in_chans: int | None = None
    num_classes: int | None = None
    img_size: int | None = None
    # what is judged, not what is measured (left out of the cell key): the source of the plan
    # model this one was distilled from (compression retention), and whether [accuracy]
    # applies to it (false for a model whose input or classes the data set cannot feed)
    teacher: str | None = None
    accuracy: bool = True

    @property
    def label(self) -> str:
        name = Path(self.source).name if ("/" in self.source or "." in self.source) else self.source
        extra = [
            f"{k}={v}"
            for k, v in (
                ("in_chans", self.in_chans),
                ("num_classes", self.num_classes),
                ("img_size", self.img_size),
            )
            if v is not None
        ]
        return name + (f"[{','.join(extra)}]" if extra else "")

    def overrides(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("in_chans", self.in_chans),
                ("num_classes", self.num_classes),
                ("img_size", self.img_size),
            )
            if v is not None
        }


@dataclass(frozen=True)
class ExportEntry:
    format: str
    delegate: str | None = None
    precision: str = "fp32"
    calibration: str | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def spec(self):
        from harness.artifact import ExportSpec

        return ExportSpec(
            format=self.format,
            delegate=self.delegate,
            precision=self.precision,
            options=dict(self.options),
        )

    @property
    def label(self) -> str:
        return self.spec().label


@dataclass(frozen=True)
class TargetEntry:
    name: str
    devices: tuple[str, ...] = ()
    concurrency: int = 1
    runtime: str | None = None
    compute_unit: str | None = None  # the target's own names: "npu", "gpu", "CPU_AND_NE"...
    options: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class MeasureSettings(LoopSettings):
    """The timing loop's settings (harness.timing.LoopSettings) and what a plan adds."""

    threads: int | None = None
    timeout_s: float = 900.0
    retries: int = 2
    compute_unit: str | None = None  # every target's, unless its entry names its own
    rounds: int = DEFAULT_ROUNDS  # each cell in this many fresh processes / sessions / jobs
    noise_floor: float = DEFAULT_NOISE_FLOOR  # least between-round sd the intervals assume

    def profile_settings(self, target: TargetEntry):
        from harness.rounds import in_rounds
        from harness.target import ProfileSettings

        loop = LoopSettings(**{f.name: getattr(self, f.name) for f in fields(LoopSettings)})
        settings = ProfileSettings(
            loop=loop,
            noise_floor=self.noise_floor,
            runtime=target.runtime,
            # the target's entry, then its options (as AI Hub users write them), then [measure]
            compute_unit=target.compute_unit
            or target.options.get("compute_unit")
            or self.compute_unit,
            threads=self.threads,
            timeout_s=self.timeout_s,
            options=dict(target.options),
        )
        return in_rounds(settings, self.rounds)


# `vitbench run --quick`: a CI smoke run of a whole plan
QUICK_MEASURE = dict(
    rounds=1, warmup_iterations=3, warmup_seconds=0.2, min_iterations=20, min_seconds=1.0
)


@dataclass(frozen=True)
class ParitySettings:
    on_device: bool = True


@dataclass(frozen=True)
class AccuracySettings:
    data: str | None = None
    split: str = "test"
    limit: int | None = 200
    allow_data_upload: bool = False  # real images may go to a service (AI Hub) in this run


@dataclass(frozen=True)
class DeviceBudget:
    device: str
    latency_ms: float


@dataclass(frozen=True)
class BudgetSettings:
    latency_ms: float = 200.0
    percentile: int = 90
    parity: bool = True
    accuracy_retention: float | None = 0.95
    # the student's metric over its teacher's (both PyTorch, same images): what compression cost
    compression_retention: float | None = 0.93
    min_samples: int = 30
    # the largest share of the model (layers) allowed on the CPU when an accelerator was
    # asked for; None: CPU fallback is flagged in reports, not gated
    max_cpu_fallback: float | None = None
    devices: tuple[DeviceBudget, ...] = ()

    def latency_for(self, target: str, device: str) -> float:
        for d in self.devices:
            if d.device in (device, f"{target}:{device}"):
                return d.latency_ms
        return self.latency_ms


@dataclass(frozen=True)
class Plan:
    name: str
    models: tuple[ModelEntry, ...]
    exports: tuple[ExportEntry, ...]
    targets: tuple[TargetEntry, ...]
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    parity: ParitySettings = field(default_factory=ParitySettings)
    accuracy: AccuracySettings = field(default_factory=AccuracySettings)
    budgets: BudgetSettings = field(default_factory=BudgetSettings)
    description: str = ""
    source: str = "<built-in>"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        for m in d["models"]:  # a plan that does not use them hashes as before they existed
            if m["teacher"] is None:
                del m["teacher"]
            if m["accuracy"]:
                del m["accuracy"]
        if not any(m.teacher for m in self.models):
            del d["budgets"]["compression_retention"]
        return d

    def teacher_of(self, model: ModelEntry) -> ModelEntry | None:
        """The plan's model entry that ``model`` names as its teacher."""
        if not model.teacher:
            return None
        return next(m for m in self.models if m.source == model.teacher)

    def with_measure(self, quick: bool = False, rounds: int | None = None) -> Plan:
        """This plan measured with ``--quick`` (one round of :data:`QUICK_MEASURE`) and/or
        ``--rounds``."""
        m = self.measure
        if quick:
            m = replace(m, **{**QUICK_MEASURE, "max_iterations": max(m.max_iterations, 20)})
        if rounds is not None:
            m = replace(m, rounds=rounds)
        return self if m == self.measure else replace(self, measure=m)

    @property
    def hash(self) -> str:
        return hashlib.sha256(
            json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        ).hexdigest()


# -- parsing ------------------------------------------------------------------------------


def _export_entry(r: Reader, e: dict[str, Any], i: int, formats: tuple[str, ...]) -> ExportEntry:
    """One [[exports]] table; the registry says which delegates and precisions it takes."""
    from harness import plugins

    t = r.table(
        e,
        ("exports", i),
        {
            "format": formats,
            "delegate": "str",
            "precision": PRECISIONS,
            "calibration": "str",
            "options": "dict",
        },
        required=("format",),
    )
    exporter = plugins.exporter(t["format"])
    delegates = tuple(exporter.delegates())
    if "delegate" in t and not delegates:
        with_delegates = [n for n in formats if plugins.exporter(n).delegates()]
        raise r.fail(
            ("exports", i, "delegate"),
            f"only {' and '.join(with_delegates) or 'no'} exports take a delegate, not "
            f"{t['format']}",
        )
    if "delegate" in t and t["delegate"] not in delegates:
        raise r.fail(("exports", i, "delegate"), f"must be one of {', '.join(delegates)}")
    if delegates and "delegate" not in t:
        t["delegate"] = delegates[0]
    allowed = exporter.precisions(t.get("delegate"))
    if allowed and "precision" not in t:
        t["precision"] = allowed[0]
    elif allowed and t["precision"] not in allowed:
        what = f"{t['format']}/{t['delegate']}" if t.get("delegate") else t["format"]
        raise r.fail(
            ("exports", i, "precision"),
            f"{what} does not take {t['precision']}; it takes {', '.join(allowed)}",
        )
    if "calibration" in t and t.get("precision") != "int8":
        raise r.fail(("exports", i, "calibration"), "calibration data is only used by int8 exports")
    return ExportEntry(**t)


def _measure(r: Reader, data: dict[str, Any]) -> MeasureSettings:
    m = r.table(
        data.get("measure", {}),
        ("measure",),
        {
            "warmup_iterations": "nonnegint",
            "warmup_seconds": "nonnegfloat",
            "min_iterations": "posint",
            "min_seconds": "nonnegfloat",
            "max_iterations": "posint",
            "max_seconds": "posfloat",
            "threads": "posint",
            "timeout_s": "posfloat",
            "retries": "nonnegint",
            "compute_unit": "str",
            "rounds": "posint",
            "noise_floor": "nonnegfloat",
        },
    )
    low = m.get("min_iterations", MeasureSettings.min_iterations)
    if m.get("max_iterations", MeasureSettings.max_iterations) < low:
        raise r.fail(("measure", "max_iterations"), f"must be at least min_iterations ({low})")
    return MeasureSettings(**m)


def _budgets(r: Reader, data: dict[str, Any], targets: list[TargetEntry]) -> BudgetSettings:
    """[budgets] and its [[budgets.devices]], each device one the plan runs."""
    b = dict(data.get("budgets", {}))
    raw_devices = b.pop("devices", [])
    bt = r.table(
        b,
        ("budgets",),
        {
            "latency_ms": "posfloat",
            "percentile": PERCENTILES,
            "parity": "bool",
            "accuracy_retention": "fraction",
            "compression_retention": "fraction",
            "min_samples": "posint",
            "max_cpu_fallback": "unitinterval",
        },
    )
    if not isinstance(raw_devices, list):
        raise r.fail(("budgets", "devices"), "must be [[budgets.devices]] tables")
    dev_budgets = []
    selectable = {d for t in targets for d in t.devices} | {
        f"{t.name}:{d}" for t in targets for d in t.devices
    }
    open_targets = [t.name for t in targets if not t.devices]
    for i, d in enumerate(raw_devices):
        t = r.table(
            d,
            ("budgets.devices", i),
            {"device": "str", "latency_ms": "posfloat"},
            required=("device", "latency_ms"),
        )
        dev = t["device"]
        named_target = dev.split(":", 1)[0] if ":" in dev else None
        if dev not in selectable and named_target not in open_targets:
            runs = sorted(d for t0 in targets for d in t0.devices) or ["(targets list no devices)"]
            raise r.fail(
                ("budgets.devices", i, "device"),
                f"{dev!r} is not a device this plan runs; its devices: {', '.join(runs)}",
            )
        dev_budgets.append(DeviceBudget(**t))
    return BudgetSettings(**bt, devices=tuple(dev_budgets))


TOP_FIELDS = {
    "name",
    "description",
    "models",
    "exports",
    "targets",
    "measure",
    "parity",
    "accuracy",
    "budgets",
}


def _parse(data: dict[str, Any], source: str, text: str) -> Plan:
    from harness import plugins

    r = Reader(source, text)
    unknown = sorted(set(data) - TOP_FIELDS)
    if unknown:
        raise r.fail((unknown[0],), f"unknown field; allowed: {', '.join(sorted(TOP_FIELDS))}")
    if "name" not in data:
        raise r.fail(("name",), "missing: every plan needs a name (runs of one plan are compared)")
    name = r.value(data["name"], ("name",), "str")

    def array(key: str) -> list[dict[str, Any]]:
        v = data.get(key)
        if not isinstance(v, list) or not v or not all(isinstance(x, dict) for x in v):
            raise r.fail((key,), f"needs at least one [[{key}]] table")
        return v

    models = [
        ModelEntry(
            **r.table(
                m,
                ("models", i),
                {
                    "source": "str",
                    "in_chans": "posint",
                    "num_classes": "posint",
                    "img_size": "posint",
                    "teacher": "str",
                    "accuracy": "bool",
                },
                required=("source",),
            )
        )
        for i, m in enumerate(array("models"))
    ]
    sources = [m.source for m in models]
    for i, m in enumerate(models):
        if m.teacher is not None and (m.teacher == m.source or m.teacher not in sources):
            others = ", ".join(s0 for s0 in sources if s0 != m.source) or "(no other model)"
            raise r.fail(
                ("models", i, "teacher"),
                f"{m.teacher!r} is not another model of this plan; its models: {others}",
            )
    formats = tuple(plugins.names("exporter"))
    exports = [_export_entry(r, e, i, formats) for i, e in enumerate(array("exports"))]
    target_names = tuple(plugins.names("target"))
    targets = [
        TargetEntry(
            **r.table(
                t0,
                ("targets", i),
                {
                    "name": target_names,
                    "devices": "strlist",
                    "concurrency": "posint",
                    "runtime": "str",
                    "compute_unit": "str",
                    "options": "dict",
                },
                required=("name",),
            )
        )
        for i, t0 in enumerate(array("targets"))
    ]
    parity = ParitySettings(**r.table(data.get("parity", {}), ("parity",), {"on_device": "bool"}))
    accuracy = AccuracySettings(
        **r.table(
            data.get("accuracy", {}),
            ("accuracy",),
            {
                "data": "str",
                "split": ("train", "val", "test"),
                "limit": "posint",
                "allow_data_upload": "bool",
            },
        )
    )
    return Plan(
        name=name,
        description=data.get("description", ""),
        models=tuple(models),
        exports=tuple(exports),
        targets=tuple(targets),
        measure=_measure(r, data),
        parity=parity,
        accuracy=accuracy,
        budgets=_budgets(r, data, targets),
        source=source,
    )


def load_plan(path: str | Path) -> Plan:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise PlanError(f"plan {p} does not exist") from None
    except OSError as exc:
        raise PlanError(f"cannot read plan {p}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{p}: not valid TOML ({exc})") from None
    return _parse(data, str(p), text)


def plan_from_dict(data: dict[str, Any], source: str = "<dict>") -> Plan:
    return _parse(data, source, "")


# three rounds of 12 iterations and 1 s, each after its own warm-up (bench_repeat.py --plan)
BUILTIN_MEASURE = dict(
    rounds=3, warmup_iterations=3, warmup_seconds=0.3, min_iterations=36, min_seconds=3.0
)
DEFAULT_PLAN: dict[str, Any] = {
    "name": "default",
    "description": (
        "the built-in X-ray teacher and its 8x smaller student (accuracy on the packaged "
        "PneumoniaMNIST test split through each target) and lite / tiny (latency at "
        "224x224), every export this machine can run, on this machine"
    ),
    "models": [
        {"source": "xray-teacher"},
        {"source": "xray-student", "teacher": "xray-teacher"},
        {"source": "lite", "accuracy": False},
        {"source": "tiny", "accuracy": False},
    ],
    "exports": [
        {"format": "onnx"},
        {"format": "executorch", "delegate": "xnnpack", "precision": "fp32"},
        {
            "format": "executorch",
            "delegate": "xnnpack",
            "precision": "int8",
            "calibration": "builtin:pneumonia",  # the train split's first 32 X-rays
        },
        {"format": "pt2"},
    ],
    "targets": [{"name": "host", "devices": ["host"]}],
    "measure": BUILTIN_MEASURE,
    "accuracy": {"data": "builtin:pneumonia", "split": "test", "limit": 1000},  # all 468
    "budgets": {
        "latency_ms": 200.0,
        "percentile": 90,
        "accuracy_retention": 0.95,
        "compression_retention": 0.93,
    },
}


def default_plan() -> Plan:
    return plan_from_dict(DEFAULT_PLAN, "<built-in default plan>")
