"""Exporters: one module per format, each an :class:`Exporter`.

An exporter takes the PyTorch model and an :class:`~harness.artifact.ExportSpec` and writes
one artifact (model file + manifest) into ``out_dir``; it never runs what it wrote (parity is
checked by :mod:`harness.export` through the host target). Vendor SDKs are imported inside
``export``, never at module import, so a missing SDK costs only that exporter.

Built-ins and third-party exporters register the same way: an entry point in the group
``vitbench.exporters`` naming a subclass of :class:`Exporter`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from harness.artifact import Artifact, ExportSpec


class Exporter:
    """The exporter contract. Every method the core calls is here, with a default; a plugin
    overrides :meth:`export` and whatever differs."""

    name: str = ""  # "onnx", "executorch", "coreml", "pt2", a plugin's

    def unavailable_reason(self) -> str:
        """Why this exporter cannot be used here ("" when it can): a missing package or SDK."""
        return ""

    def delegates(self) -> dict[str, str]:
        """Each delegate it lowers to (the first is the default) and why that delegate
        cannot be used here ("" when it can); empty for a format without delegates."""
        return {}

    def precisions(self, delegate: str | None = None) -> tuple[str, ...]:
        """The precisions it exports (with ``delegate``); the first is the default."""
        return ("fp32",)

    def resolve(self, spec: ExportSpec) -> ExportSpec:
        """``spec`` with defaults filled in; refuses, with one line, what cannot work (an
        unknown delegate or precision, a missing SDK) before anything heavy is imported."""
        if spec.delegate and not self.delegates():
            raise UserError(f"{self.name} exports take no delegate (got {spec.delegate!r})")
        allowed = self.precisions(spec.delegate)
        precision = spec.precision or allowed[0]
        if precision not in allowed:
            raise UserError(
                f"{self.name} does not export {precision}; it takes {', '.join(allowed)}"
            )
        return dataclasses.replace(spec, precision=precision)

    def export(
        self, model: Any, spec: ExportSpec, out_dir: Path, calibration: Any = None
    ) -> Artifact:
        """Write the artifact into ``out_dir``; ``calibration`` (N, C, H, W) float32 images
        for int8, else None."""
        raise NotImplementedError(f"exporter {self.name!r} does not export")
