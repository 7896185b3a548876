"""What a plan or the CLI may set for a phone on adb (``ProfileSettings.options``), and the
ONNX Runtime execution provider those settings pick on a given phone."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.target import ProfileSettings
from targets.android.device import PhoneInfo


@dataclass(frozen=True)
class AndroidOptions:
    """``ProfileSettings.options`` this target reads (all optional)."""

    runner: str | None = None  # path to the runner binary (else the target's or the env's)
    runner_kind: str | None = None  # "executorch" | "onnxruntime" when the name does not say
    runner_files: tuple[str, ...] = ()  # shared libraries pushed beside the runner
    wait_cool: bool = True
    max_wait_s: float = 300.0
    poll_s: float = 10.0
    max_battery_c: float = 38.0
    pin_big_cores: bool = False
    sustained_s: float = 0.0  # > 0: rounds until this much inference time, throttling onset
    max_rounds: int = 100
    throttle_ratio: float = 1.10  # a round's median this much above the first round's: throttled
    etdump: bool = True
    ort_ep: str | None = None  # onnxruntime_perf_test -e; default from settings.compute_unit
    env: dict[str, str] = field(default_factory=dict)
    keep_on_device: bool = False
    parity: bool = False  # also run the seeded inputs, compare with the reference beside it

    @classmethod
    def from_settings(cls, settings: ProfileSettings) -> AndroidOptions:
        known = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in settings.options.items() if k in known}
        if "runner_files" in kw:
            kw["runner_files"] = tuple(kw["runner_files"])
        return cls(**kw)

    def execution_provider(self, settings: ProfileSettings, info: PhoneInfo) -> str:
        """``onnxruntime_perf_test -e``: the one named, else what the compute unit asks for
        on this phone (QNN on Snapdragon, NNAPI elsewhere)."""
        if self.ort_ep:
            return self.ort_ep
        unit = (settings.compute_unit or "cpu").lower()
        if unit in ("npu", "all"):
            return "qnn" if info.chipset.startswith("qualcomm") else "nnapi"
        if unit == "gpu":
            return "nnapi"
        return "cpu"
