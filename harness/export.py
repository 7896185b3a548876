"""Exporting: the one way the rest of vitbench gets an artifact.

:func:`export_artifact` exports through the registered exporter into a content-addressed
cache (``$VITBENCH_CACHE``, default ``~/.cache/vitbench``). The cache key covers the model's
weights and config, the exporter, the resolved spec and its options, the calibration data and
the versions of torch, executorch, coremltools, onnx and onnxruntime; a second identical
export is served from the cache. Each entry is one folder (model file, ``manifest.json``,
``reference.npz``) built in a temporary folder and renamed into place, verified on every hit
(a corrupt entry is rebuilt, never served), and guarded by a file lock so concurrent exports
of one key do not collide.

Exporters only write files. Parity at export time runs the artifact through the host
target's runtimes (found in the registry, like every target), so this machine has one
runtime stack; a format the host cannot run leaves parity pending with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.artifact import (
    Artifact,
    ArtifactError,
    ExportSpec,
    input_shape,
    path_size,
    sha256_path,
)
from harness.errors import UserError
from harness.locks import file_lock

if TYPE_CHECKING:  # pragma: no cover
    from harness.exporters import Exporter
    from harness.parity import ParityResult

# -- the content-addressed cache ------------------------------------------------------------

CACHE_ENV = "VITBENCH_CACHE"
CACHE_VERSION = 1  # bump when the layout or what an export does changes


class ParityError(UserError):
    """An export whose outputs are outside the tolerance for its precision."""


def cache_root(cache: str | Path | None = None) -> Path:
    """``cache``, else $VITBENCH_CACHE, else ~/.cache/vitbench."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vitbench"


def _config(model: Any) -> Any:
    """The model's ViTConfig, or None for another module (exported with an input_shape option)."""
    from harness.model import ViTConfig

    cfg = getattr(model, "config", None)
    return cfg if isinstance(cfg, ViTConfig) else None


def model_hash(model: Any) -> str:
    """sha256 of the model's config (when it has one) and every tensor of its state dict."""
    import torch

    h = hashlib.sha256()
    cfg = _config(model)
    h.update((cfg.to_json() if cfg is not None else type(model).__qualname__).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().contiguous().cpu()
        h.update(f"\0{name}:{t.dtype}:{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def cache_key(
    model_digest: str,
    exporter: str,
    spec: ExportSpec,
    calibration_digest: str | None,
    tools: dict[str, str | None],
) -> str:
    payload = {
        "v": CACHE_VERSION,
        "model": model_digest,
        "exporter": exporter,
        "spec": spec.to_dict(),
        "calibration": calibration_digest,
        "tools": tools,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def _check_writable(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"{what} {folder} is not writable: {exc.strerror or exc}") from None


def cached(folder: Path, progress: Callable[[str], None] | None = None) -> Artifact | None:
    """The verified artifact in a cache folder, or None when it is absent or not whole."""
    from harness.parity import REFERENCE_FILE

    if not folder.exists():
        return None
    try:
        artifact = Artifact.load(folder).verify()
        if not (folder / REFERENCE_FILE).is_file():
            raise ArtifactError(f"{folder / REFERENCE_FILE} is missing")
        return artifact
    except ArtifactError as exc:
        if progress:
            progress(f"cache entry not whole, rebuilding: {exc}")
        return None


def export_parity(
    artifact: Artifact, inputs: list[Any], reference: list[Any], precision: str
) -> ParityResult:
    """Run ``artifact`` on the seeded ``inputs`` through the host target (the registry's
    ``host``) and judge it against the PyTorch ``reference``; pending, with the host's
    reason, when the host cannot run it (Core ML off macOS, an NPU delegate)."""
    from harness import plugins
    from harness.parity import check, pending

    host = plugins.target("host")
    why = host.refusal(artifact)
    if why:
        return pending(why, precision=precision)
    device = host.devices()[0]
    outputs = host.infer(artifact, device, list(inputs))
    return check(
        reference, outputs, host.parity_precision(artifact), where=host.where(artifact, device)
    )


def _build(
    exporter: Any,
    model: Any,
    spec: ExportSpec,
    tmp: Path,
    calibration: Any,
    base_manifest: dict[str, Any],
    progress: Callable[[str], None],
) -> Artifact:
    """Export into ``tmp``, write the reference outputs, check parity, write the manifest."""
    import torch

    from harness.parity import REFERENCE_COUNT, save_reference, seeded_inputs

    t0 = time.perf_counter()
    progress(f"exporting {spec.label} ...")
    produced = exporter.export(model, spec, tmp, calibration=calibration)
    path = Path(produced.path)
    if not path.exists() or path.resolve().parent != tmp.resolve():
        raise RuntimeError(
            f"exporter {exporter.name!r} must write its file into {tmp}, wrote {path}"
        )
    shape = input_shape(model, spec)
    inputs = seeded_inputs(shape, REFERENCE_COUNT, seed=0)
    with torch.no_grad():
        reference = [model(torch.from_numpy(x)).numpy() for x in inputs]
    save_reference(tmp, reference, shape, REFERENCE_COUNT, 0)
    manifest = {
        **produced.manifest,
        **base_manifest,
        "file": path.name,
        "sha256": sha256_path(path),
        "size": path_size(path),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "export_seconds": round(time.perf_counter() - t0, 3),
        "reference": "reference.npz",
    }
    artifact = Artifact(path=path, manifest=manifest)
    progress("checking parity ...")
    parity = export_parity(artifact, inputs, reference, spec.precision)
    if parity.status == "failed":
        raise ParityError(
            f"{spec.label} parity failed on {parity.where}: {'; '.join(parity.failures)} "
            f"(max abs {parity.max_abs:.3g}, cosine {parity.cosine:.6f}, top-1 {parity.top1:.1%}, "
            f"{parity.n} seeded inputs)",
            kind="model",
        )
    artifact = Artifact(path=path, manifest={**manifest, "parity": parity.to_dict()})
    artifact.write_manifest()
    return artifact


def _copy_out(artifact: Artifact, out: Path) -> Artifact:
    """Copy the artifact folder's files into ``out`` (each file replaced whole)."""
    for src in artifact.folder.iterdir():
        dst = out / src.name
        tmp = out / f".{src.name}.{uuid.uuid4().hex[:8]}.tmp"
        if src.is_dir():
            shutil.copytree(src, tmp)
            if dst.exists():
                shutil.rmtree(dst) if dst.is_dir() and not dst.is_symlink() else dst.unlink()
        else:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    return Artifact.load(out)


def resolve_spec(exporter: Exporter, spec: ExportSpec) -> ExportSpec:
    """The spec with the exporter's defaults filled in (``exporter.resolve``, which also
    refuses what cannot work); precision fp32 when nothing says otherwise."""
    spec = exporter.resolve(spec)
    return spec if spec.precision else replace(spec, precision="fp32")


def export_artifact(
    model: Any,
    spec: ExportSpec,
    *,
    cache: str | Path | None = None,
    out: str | Path | None = None,
    no_cache: bool = False,
    calibration: Any = None,
    progress: Callable[[str], None] | None = None,
) -> Artifact:
    """Export ``model`` as ``spec`` says, through the cache; the one entry point for exports.

    model: a PyTorch module (a :class:`~harness.model.VisionTransformer`, or any module with
        ``options={"input_shape": [C, H, W]}`` in the spec).
    spec: format, delegate, precision, batch size, options; defaults are filled in by the
        exporter (executorch -> xnnpack, coreml -> fp16) and are part of the cache key.
    cache: the cache root (default $VITBENCH_CACHE or ~/.cache/vitbench).
    out: also copy the artifact folder there, and return the copy.
    no_cache: rebuild even when the cache holds a whole entry (which is then replaced).
    calibration: int8 only: a .npz / image folder path, an (N, C, H, W) float32 array, or
        None for seeded synthetic images (see :mod:`harness.calibration`).
    progress: called with one line per step (nothing when None).

    Raises UserError (one line) for an unknown format, delegate or precision, a missing SDK,
    an unwritable folder, a model that fails to lower, or failed parity; nothing is left in
    the cache then.
    """
    import numpy as np

    from harness import plugins
    from harness.calibration import calibration_images, data_hash
    from harness.environment import EXPORT_TOOLS, tool_versions

    say = progress or (lambda _msg: None)
    exporter = plugins.exporter(spec.format)
    spec = resolve_spec(exporter, spec)
    root = cache_root(cache)
    out_dir = Path(out).expanduser() if out is not None else None
    if out_dir is not None:
        _check_writable(out_dir, "output folder")
    _check_writable(root, "cache folder")

    images = None
    calibration_info = None
    if spec.precision == "int8":
        if isinstance(calibration, np.ndarray):
            images, source = calibration.astype(np.float32), "array"
        else:
            images = calibration_images(calibration, input_shape(model, spec))
            source = (
                str(calibration) if calibration is not None else "seeded synthetic images (seed 1)"
            )
        calibration_info = {
            "source": source,
            "count": int(len(images)),
            "sha256": data_hash(images),
        }
    elif calibration is not None:
        say(f"calibration data is used by int8 exports only; ignored for {spec.precision}")

    digest = model_hash(model)
    tools = tool_versions(EXPORT_TOOLS)
    key = cache_key(
        digest, exporter.name, spec, calibration_info and calibration_info["sha256"], tools
    )
    cfg = _config(model)
    name = (cfg.name if cfg is not None else "") or type(model).__name__
    folder = root / f"{_slug(name)}-{_slug(spec.label)}-{key[:16]}"

    artifact = None if no_cache else cached(folder, say)
    if artifact is None:
        with file_lock(root / ".locks" / f"{folder.name}.lock"):
            # another process may have built it while this one waited for the lock
            artifact = None if no_cache else cached(folder)
            if artifact is None:
                artifact = _build_entry(
                    exporter,
                    model,
                    spec,
                    root,
                    folder,
                    images,
                    say,
                    {
                        "format": spec.format,
                        "delegate": spec.delegate,
                        "precision": spec.precision,
                        "batch_size": spec.batch_size,
                        "options": spec.options,
                        "exporter": {
                            "name": exporter.name,
                            "module": type(exporter).__module__,
                            "options": spec.options,
                        },
                        "model": {
                            "name": name,
                            "sha256": digest,
                            "config": cfg.to_dict() if cfg is not None else None,
                        },
                        "tools": tools,
                        "calibration": calibration_info,
                        "cache_key": key,
                    },
                )
            else:
                say(f"cache hit: {artifact.folder}")
    else:
        say(f"cache hit: {artifact.folder}")
    return _copy_out(artifact, out_dir) if out_dir is not None else artifact


def _build_entry(
    exporter: Any,
    model: Any,
    spec: ExportSpec,
    root: Path,
    folder: Path,
    images: Any,
    say: Callable[[str], None],
    base: dict[str, Any],
) -> Artifact:
    """Build in a temporary folder under the cache root and rename it into place."""
    staging = root / ".tmp"
    staging.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=staging))
    try:
        built = _build(exporter, model, spec, tmp, images, base, say)
        if folder.exists():  # a corrupt entry, or --no-cache: move it aside, then swap
            trash = staging / f"{folder.name}.old.{uuid.uuid4().hex[:8]}"
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, folder)
        return replace(built, path=folder / built.path.name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
