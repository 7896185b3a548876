"""Macs as targets: Core ML and ExecuTorch (Core ML, MPS, XNNPACK delegates), measured by the
profiling agent on this Mac or on one reached over SSH.

Devices are the hosts with ``target = "apple"`` in the hosts file (targets/remote/config.py), plus
``local`` when vitbench itself runs on macOS. Each is described by the agent: machine model
(``sysctl hw.model``), chip, macOS version, memory, thermal state.

Core ML is measured once per compute-unit setting (ALL, CPU_AND_NE, CPU_AND_GPU, CPU_ONLY):
first load (the on-device compile), warm load (the compiled model reopened), first inference,
latency, peak memory, and the compute plan (MLComputePlan, macOS 14.4+): operations and
estimated cost on the Neural Engine, GPU and CPU, with a warning when operations fall back
from the Neural Engine. Before measuring, the agent waits (up to ``thermal_wait_s``, default
120 s) for a nominal thermal state, and records the state with the numbers.

Core ML prediction exists only on macOS: the agent refuses it anywhere else, and its Core ML
branches are verified only on a Mac. On Linux the tests run everything else: the SSH path,
ExecuTorch through this target, Core ML conversion and spec reading.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from harness.artifact import Artifact
from harness.errors import UserError
from harness.target import Device, ProfileSettings
from targets.agent.client import AgentAnswer
from targets.agent.coreml import COMPUTE_UNITS
from targets.remote.config import HostConfig, load_hosts
from targets.remote.target import RemoteTarget
from targets.remote.transport import transport_for

# what a compute-unit setting asks for, as Profile.compute_unit names it
REQUESTED_UNIT = {"ALL": "all", "CPU_AND_NE": "npu", "CPU_AND_GPU": "gpu", "CPU_ONLY": "cpu"}
PLAN_UNIT = {"neural_engine": "npu", "gpu": "gpu", "cpu": "cpu"}
DELEGATE_UNIT = {"coreml": "all", "mps": "gpu", "xnnpack": "cpu", "portable": "cpu"}


class AppleTarget(RemoteTarget):
    name = "apple"
    runtimes_for_format = {"coreml": ("coreml",), "executorch": ("executorch",)}
    delegates = (None, "", "xnnpack", "portable", "coreml", "mps")
    thermal_wait_s = 120.0
    elsewhere = {
        "onnx": "the host or remote target",
        "pt2": "the host target",
        "qnn": "the aihub or android target",
        "mediatek": "the android target",
    }

    def hosts(self) -> list[HostConfig]:
        hosts = load_hosts(self.name)
        if sys.platform == "darwin" and not any(h.local for h in hosts):  # verified only on a Mac
            hosts.insert(0, HostConfig(name="local", target=self.name, ssh="local"))
        return hosts

    def prepare_settings(self, artifact: Artifact, settings: ProfileSettings) -> ProfileSettings:
        if artifact.format != "coreml":
            return settings
        unit = str(settings.compute_unit or settings.options.get("compute_units") or "ALL").upper()
        if unit not in COMPUTE_UNITS:
            raise UserError(
                f"unknown Core ML compute units {unit!r}; one of {', '.join(COMPUTE_UNITS)}"
            )
        return replace(
            settings, compute_unit=unit, options={**settings.options, "compute_units": unit}
        )

    def profile_compute_units(
        self,
        artifact: Artifact,
        device: Device,
        settings: ProfileSettings,
        units: tuple[str, ...] | list[str] = COMPUTE_UNITS,
    ):
        """One Profile per compute-unit setting (the artifact is copied once), yielded as each
        finishes."""
        return self.iter_profiles(
            artifact, device, [replace(settings, compute_unit=u) for u in units]
        )

    def inspect(self, artifact: Artifact, device: Device) -> dict:
        """A Core ML model's inputs, outputs and operation histogram, read by the agent on the
        device's host (any system with coremltools)."""
        if artifact.format != "coreml":
            raise UserError(f"inspect reads Core ML artifacts, not {artifact.format}")
        artifact.verify()
        host = self.host_for(device)
        with transport_for(host) as t:
            request = {
                "action": "inspect",
                "artifact": {
                    "path": t.stage(artifact.path, artifact.sha256),
                    "format": artifact.format,
                    "inputs": artifact.inputs,
                },
            }
            return (self._run(host, request, 120.0, t).result or {})["spec"]

    def compute_unit_of(
        self, artifact: Artifact, settings: ProfileSettings, answer: AgentAnswer
    ) -> str:
        if artifact.format != "coreml":
            return DELEGATE_UNIT.get(artifact.delegate or "portable", "cpu")
        plan = ((answer.result or {}).get("facts") or {}).get("compute_plan") or {}
        share = plan.get("cost_share")
        if share:
            return PLAN_UNIT[max(share, key=share.get)]
        return REQUESTED_UNIT[settings.compute_unit or "ALL"]

    def parity_precision(self, artifact: Artifact, settings: ProfileSettings | None = None) -> str:
        """Core ML runs ML programs in fp16 unless converted with compute_precision=FLOAT32,
        and fp16 Core ML is judged on top-1 agreement and cosine, not raw differences
        (harness.parity's ``coreml-fp16`` tolerance)."""
        if artifact.format != "coreml":
            return artifact.precision
        if (
            artifact.precision == "fp32"
            and artifact.manifest.get("options", {}).get("compute_precision") == "fp32"
        ):
            return "fp32"
        return "coreml-fp16"
