"""What goes to AI Hub and comes back as tensors: input specs and names for a job, the
fingerprint of an inference job's inputs, its first output, and the rule that only
vitbench's seeded synthetic inputs leave the machine unless the user allows it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from harness.artifact import Artifact
from harness.errors import UserError
from harness.target import TargetError


def input_specs(artifact: Artifact) -> dict[str, tuple[tuple[int, ...], str]] | None:
    """The fixed input shapes a compile job needs. AI Hub compiles for one shape: an axis the
    artifact leaves free (a dynamic batch, named "batch" in its manifest) is sent as 1, the
    batch every target profiles at."""
    if not artifact.inputs:
        return None
    return {
        i["name"]: (tuple(_fixed(s) for s in i["shape"]), i.get("dtype", "float32"))
        for i in artifact.inputs
    }


def _fixed(size: Any) -> int:
    if isinstance(size, int) or (isinstance(size, str) and size.isdigit()):
        return int(size)
    return 1


def input_name(artifact: Artifact) -> str:
    return artifact.inputs[0]["name"] if artifact.inputs else "input"


def inputs_fingerprint(inputs: list[Any] | None) -> str:
    h = hashlib.sha256()
    for a in inputs or []:
        h.update(str(a.shape).encode() + str(a.dtype).encode() + a.tobytes())
    return h.hexdigest()[:16]


def first_output(out: dict[str, list[Any]] | None, artifact: Artifact) -> list[Any]:
    if not out:
        raise TargetError("AI Hub returned no outputs for the inference job", kind="infrastructure")
    names = [o.get("name") for o in artifact.outputs]
    key = next((n for n in names if n in out), next(iter(out)))
    return list(out[key])


def check_inputs_may_leave(
    artifact: Artifact, inputs: Sequence[Any], allow_data_upload: bool
) -> None:
    """Only vitbench's seeded synthetic inputs (harness.parity.seeded_inputs) may be sent to
    AI Hub, unless the user allowed data upload for this run."""
    import numpy as np

    from harness.parity import REFERENCE_FILE, seeded_inputs

    if allow_data_upload or not inputs:
        return
    seeds = {0}
    ref = artifact.folder / REFERENCE_FILE
    if ref.is_file():
        with np.load(ref) as z:
            seeds.add(int(z["seed"]))
    shape = np.shape(inputs[0])
    for seed in seeds:
        synthetic = seeded_inputs(shape, len(inputs), seed)
        pairs = zip(inputs, synthetic, strict=True)
        if all(np.shape(a) == shape and np.array_equal(a, s) for a, s in pairs):
            return
    raise UserError(
        "these inputs are not vitbench's seeded synthetic inputs and would be uploaded "
        "to AI Hub; real images leave this machine only with --allow-data-upload "
        "(allow_data_upload=True) for this run"
    )
