"""Artifacts: an exported model file (or bundle) with its manifest, and the spec it was
exported from.

An artifact lives in a folder of its own: the model (``model.onnx``, ``model.pte``,
``model.mlpackage/``, ``model.pt2``, or a compiled model a target produced) beside
``manifest.json``. The manifest records the file's sha256 so that a corrupt or truncated
artifact is detected before anything loads it. How artifacts are made and cached is
:mod:`harness.export`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError

MANIFEST = "manifest.json"


class ArtifactError(UserError):
    """An artifact that is missing, corrupt or does not fit what is asked of it."""

    kind = "model"


@dataclass(frozen=True)
class ExportSpec:
    """What to export: format, delegate, precision and their options."""

    format: str  # "onnx", "executorch", "coreml", "pt2", or a plugin's name
    delegate: str | None = None  # executorch: "xnnpack", "coreml", "qnn", "mediatek", "portable"
    precision: str = "fp32"  # "fp32", "fp16", "int8"
    batch_size: int = 1
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        """Short name for tables: "onnx", "executorch/xnnpack/int8"."""
        parts = [self.format] + ([self.delegate] if self.delegate else [])
        if self.precision != "fp32" or self.format == "executorch":
            parts.append(self.precision)
        return "/".join(parts)


def sha256_path(path: str | Path) -> str:
    """sha256 of a file, or of a folder (an .mlpackage): each file's relative path and bytes
    in sorted order."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    else:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def path_size(path: str | Path) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


@dataclass(frozen=True)
class Artifact:
    """A model file and its manifest (a dict: sha256, size, exporter, options, inputs,
    outputs, tool versions, created, lowering summary, parity)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def format(self) -> str:
        return self.manifest["format"]

    @property
    def sha256(self) -> str:
        return self.manifest["sha256"]

    @property
    def delegate(self) -> str | None:
        return self.manifest.get("delegate")

    @property
    def precision(self) -> str:
        return self.manifest.get("precision", "fp32")

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """[{"name": ..., "shape": [...], "dtype": "float32"}]"""
        return self.manifest.get("inputs", [])

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return self.manifest.get("outputs", [])

    @property
    def folder(self) -> Path:
        return self.path.parent

    def verify(self) -> Artifact:
        """Check that the file is whole: present, of the recorded size and sha256."""
        if not self.path.exists():
            raise ArtifactError(f"artifact {self.path} is missing")
        size = path_size(self.path)
        if "size" in self.manifest and size != self.manifest["size"]:
            raise ArtifactError(
                f"artifact {self.path} is corrupt or truncated: {size} bytes, manifest says "
                f"{self.manifest['size']}"
            )
        digest = sha256_path(self.path)
        if digest != self.sha256:
            raise ArtifactError(
                f"artifact {self.path} is corrupt: sha256 {digest[:12]}..., manifest says "
                f"{self.sha256[:12]}..."
            )
        return self

    def write_manifest(self) -> Path:
        out = self.folder / MANIFEST
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, out)
        return out

    @classmethod
    def load(cls, path: str | Path) -> Artifact:
        """An artifact from its folder, its model file or its manifest path."""
        p = Path(path)
        if not p.exists():
            raise ArtifactError(f"artifact {p} does not exist")
        if p.name == MANIFEST:
            folder = p.parent
        elif p.is_dir() and (p / MANIFEST).is_file():
            folder = p
        else:
            folder = p.parent
        mpath = folder / MANIFEST
        if not mpath.is_file():
            raise ArtifactError(
                f"{p} has no {MANIFEST} beside it; export it with `vitbench export`"
            )
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{mpath}: unreadable manifest ({exc})") from None
        if not isinstance(manifest, dict) or not {"file", "format", "sha256"} <= set(manifest):
            raise ArtifactError(f"{mpath}: not a vitbench manifest (needs file, format, sha256)")
        return cls(path=folder / manifest["file"], manifest=manifest)


def input_shape(model: Any, spec: ExportSpec) -> tuple[int, int, int, int]:
    """(batch, channels, height, width) the artifact takes: from the model's config, or
    ``spec.options["input_shape"]`` (C, H, W) for a model without one."""
    from harness.model import ViTConfig

    cfg = getattr(model, "config", None)
    if isinstance(cfg, ViTConfig):
        return (spec.batch_size, cfg.in_chans, cfg.img_size, cfg.img_size)
    shape = spec.options.get("input_shape")
    if not shape or len(shape) != 3:
        raise UserError(
            "the model has no config; pass the input shape as options input_shape=[C, H, W]"
        )
    return (spec.batch_size, *(int(s) for s in shape))
