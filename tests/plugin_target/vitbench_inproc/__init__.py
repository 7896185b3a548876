"""A third-party vitbench target: ONNX artifacts measured with ONNX Runtime inside the calling
process (no worker), registered through the ``vitbench.targets`` entry point, plus its own
``vitbench inproc ...`` subcommand through ``vitbench.commands``. It uses only vitbench's
public pieces: the Target contract, the timing loop and the statistics."""

from __future__ import annotations

import platform

import click
import numpy as np

from harness.target import Device, Profile, ProfileSettings, Target, TargetError
from harness.timing import timed_loop


class InProcessTarget(Target):
    name = "inproc"

    def devices(self) -> list[Device]:
        return [Device(self.name, "this-process", chipset=platform.machine(), os=platform.system())]

    def refusal(self, artifact) -> str:
        return (
            ""
            if artifact.format == "onnx"
            else f"inproc runs onnx artifacts, not {artifact.format}"
        )

    def _session(self, artifact, threads: int | None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 1
        return ort.InferenceSession(str(artifact.path), opts, providers=["CPUExecutionProvider"])

    def profile(self, artifact, device: Device, settings: ProfileSettings) -> Profile:
        artifact.verify()
        session = self._session(artifact, settings.threads)
        name = session.get_inputs()[0].name
        shape = [
            settings.batch_size if not isinstance(d, int) else d
            for d in artifact.inputs[0]["shape"]
        ]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        samples, _ = timed_loop(lambda: session.run(None, {name: x}), settings.loop)
        if not samples:
            raise TargetError("no samples", kind="measurement")
        return Profile.from_samples(
            self.name,
            device,
            artifact.sha256,
            "onnxruntime-inproc",
            samples,
            settings=settings.to_dict(),
        )

    def infer(
        self,
        artifact,
        device: Device,
        inputs: list[np.ndarray],
        allow_data_upload: bool = False,
        settings=None,
    ) -> list[np.ndarray]:
        session = self._session(artifact, None)
        name = session.get_inputs()[0].name
        return [session.run(None, {name: np.asarray(x, dtype=np.float32)})[0] for x in inputs]


@click.group()
def inproc() -> None:
    """The inproc target's own commands."""


@inproc.command("whoami")
def whoami() -> None:
    """Say which device this target measures on."""
    (device,) = InProcessTarget().devices()
    click.echo(f"inproc measures on {device.name} ({device.chipset}, {device.os})")
