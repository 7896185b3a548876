"""What the fake AI Hub holds: its devices, the runtimes it compiles to, its jobs (whose
state advances with time), and the small helpers the hub and its HTTP handler share."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp
from qai_hub import public_api_pb2 as pb

PB = "application/x-protobuf"
ANDROID = ["os:android", "format:phone", "framework:tflite", "framework:qnn", "framework:onnx"]


@dataclass
class FakeDevice:
    name: str
    os: str
    attributes: list[str]
    soc: str = ""
    base_ms: float = 10.0  # median inference time it reports
    cpu_fallback: bool = False  # layers run on CPU although NPU was asked
    output_noise: float = 0.0  # added to outputs (a lossy runtime)
    fp16: bool = False  # computes in fp16 as the NPU does: outputs off by a few 1e-3
    warmup_iterations: int = 0  # the first profiled iterations are slow (3x, falling to 1x)


DEVICES = [
    FakeDevice(
        "Samsung Galaxy S24 (Family)",
        "14",
        ANDROID + ["chipset:qualcomm-snapdragon-8gen3", "vendor:samsung", "hexagon:v75"],
        "Snapdragon® 8 Gen 3 | SM8650",
        base_ms=8.0,
    ),
    FakeDevice(
        "Samsung Galaxy S24 (Family)",
        "15",
        ANDROID + ["chipset:qualcomm-snapdragon-8gen3", "vendor:samsung", "hexagon:v75"],
        "Snapdragon® 8 Gen 3 | SM8650",
        base_ms=7.8,
    ),
    FakeDevice(
        "Samsung Galaxy S23 (Family)",
        "13",
        ANDROID + ["chipset:qualcomm-snapdragon-8gen2", "vendor:samsung", "hexagon:v73"],
        "Snapdragon® 8 Gen 2 | SM8550",
        base_ms=11.0,
    ),
    FakeDevice(
        "Snapdragon 8 Elite QRD",
        "15",
        ANDROID + ["chipset:qualcomm-snapdragon-8-elite", "vendor:qualcomm", "hexagon:v79"],
        "Snapdragon® 8 Elite | SM8750",
        base_ms=6.0,
    ),
    FakeDevice(
        "Samsung Galaxy S21",
        "12",
        ANDROID + ["chipset:qualcomm-snapdragon-888", "vendor:samsung", "hexagon:v68"],
        "Snapdragon® 888 | SM8350",
        base_ms=25.0,
        cpu_fallback=True,
    ),
    FakeDevice(
        "Snapdragon X Elite CRD",
        "11",
        [
            "os:windows",
            "format:compute",
            "framework:qnn",
            "framework:onnx",
            "chipset:qualcomm-snapdragon-x-elite",
            "vendor:qualcomm",
            "hexagon:v73",
        ],
        "Snapdragon® X Elite | X1E80100",
        base_ms=5.0,
    ),
    FakeDevice(
        "QCS8550 (Proxy)",
        "12",
        [
            "os:android",
            "format:iot",
            "framework:tflite",
            "framework:qnn",
            "framework:onnx",
            "chipset:qualcomm-qcs8550-proxy",
            "vendor:qualcomm",
            "hexagon:v73",
        ],
        "QCS8550 Proxy",
        base_ms=12.0,
    ),
]

RUNTIMES = {
    "tflite": (pb.MODEL_TYPE_TFLITE, "model.tflite"),
    "qnn_dlc": (pb.MODEL_TYPE_QNN_DLC, "model.dlc"),
    "qnn_context_binary": (pb.MODEL_TYPE_QNN_CONTEXT_BINARY, "model.bin"),
    "onnx": (pb.MODEL_TYPE_ONNX, "model.onnx"),
    "precompiled_qnn_onnx": (pb.MODEL_TYPE_ONNX, "model.onnx"),
}


def ts(t: float) -> Timestamp:
    ts = Timestamp()
    ts.FromSeconds(int(t))
    return ts


def parse_options(text: str) -> dict[str, str]:
    """``--name value --flag`` as a dict (a flag without a value is "true")."""
    out, words, i = {}, text.split(), 0
    while i < len(words):
        if not words[i].startswith("--"):
            raise ValueError(f"unexpected argument {words[i]!r}")
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            out[words[i][2:]] = words[i + 1]
            i += 2
        else:
            out[words[i][2:]] = "true"
            i += 1
    return out


@dataclass
class FakeJob:
    id: str
    kind: str  # "compile" or "inference"
    device: FakeDevice
    model_id: str
    options: str
    name: str
    created: float
    duration: float
    failure: tuple[int, str] | None = None  # (JobFailureType, failure text)
    profiling: bool = False
    dataset_id: str = ""
    target_model_id: str = ""
    output_dataset_id: str = ""
    input_specs: dict[str, list[int]] = field(default_factory=dict)  # a compile job's shapes

    def state(self, now: float) -> int:
        elapsed = now - self.created
        if elapsed >= self.duration:
            return pb.JOB_STATE_FAILED if self.failure else pb.JOB_STATE_DONE
        if elapsed < self.duration * 0.2:
            return pb.JOB_STATE_CREATED
        if self.kind == "compile":
            return pb.JOB_STATE_OPTIMIZING_MODEL
        if elapsed < self.duration * 0.5:
            return pb.JOB_STATE_PROVISIONING_DEVICE
        return (
            pb.JOB_STATE_MEASURING_PERFORMANCE if self.profiling else pb.JOB_STATE_RUNNING_INFERENCE
        )
