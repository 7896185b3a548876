"""Exporters: one module per format, each an :class:`Exporter`.

An exporter takes the PyTorch model and an :class:`ExportSpec` and writes one artifact
(model file + manifest) into ``out_dir``. Vendor SDKs are imported inside ``export`` (or
``available``), never at module import, so a missing SDK costs only that exporter.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from harness.artifacts import Artifact, ExportSpec
    from harness.model import VisionTransformer


@runtime_checkable
class Exporter(Protocol):
    name: str  # "onnx", "executorch", "coreml", "pt2"

    def export(self, model: VisionTransformer, spec: ExportSpec, out_dir: Path) -> Artifact: ...
