"""A target for store tests: ONNX artifacts measured with ONNX Runtime inside the calling
process (no worker to start, so a shard of many cells costs milliseconds), on six "lanes"
of this CPU, each a device of its own. A plan of one model x two exports on it has twelve
cells. ``LanesTarget.before_profile`` (a callable, or None) runs before each profile: a test
cuts the store's connection from there, mid-run, at a moment it chooses."""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from harness.target import Device, Profile, ProfileSettings, Target, TargetError
from harness.timing import timed_loop

LANES = 6


class LanesTarget(Target):
    name = "lanes"
    before_profile: ClassVar[Callable[[Device], None] | None] = None

    def devices(self) -> list[Device]:
        return [
            Device(self.name, f"lane-{i}", chipset=platform.machine(), os=platform.system())
            for i in range(LANES)
        ]

    def refusal(self, artifact) -> str:
        return "" if artifact.format == "onnx" else f"lanes runs onnx, not {artifact.format}"

    def _session(self, artifact):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        return ort.InferenceSession(str(artifact.path), opts, providers=["CPUExecutionProvider"])

    def profile(self, artifact, device: Device, settings: ProfileSettings) -> Profile:
        if LanesTarget.before_profile is not None:
            LanesTarget.before_profile(device)
        session = self._session(artifact)
        name = session.get_inputs()[0].name
        x = np.random.default_rng(0).standard_normal(artifact.inputs[0]["shape"])
        feed = {name: x.astype(np.float32)}
        samples, _ = timed_loop(lambda: session.run(None, feed), settings.loop)
        if not samples:
            raise TargetError("no samples", kind="measurement")
        return Profile.from_samples(
            self.name,
            device,
            artifact.sha256,
            "onnxruntime-inproc",
            samples,
            settings=settings.to_dict(),
            details={"samples_taken": len(samples)},
        )

    def infer(self, artifact, device, inputs, allow_data_upload=False, settings=None):
        session = self._session(artifact)
        name = session.get_inputs()[0].name
        return [session.run(None, {name: np.asarray(x, dtype=np.float32)})[0] for x in inputs]


def lanes_plan(name: str, groups: int = 1) -> str:
    """A plan of the tiny ViT's ONNX export on the lanes, ``groups`` target entries of it
    (each a distinct set of cells): ``LANES * groups`` cells, 30 samples each."""
    targets = "".join(
        f'\n[[targets]]\nname = "lanes"\noptions = {{ group = "{g}" }}\n' for g in range(groups)
    )
    return f"""
name = "{name}"

[[models]]
source = "tiny"
img_size = 32

[[exports]]
format = "onnx"
{targets}
[measure]
rounds = 1
warmup_iterations = 1
warmup_seconds = 0.0
min_iterations = 30
min_seconds = 0.0
"""
