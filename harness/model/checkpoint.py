"""Checkpoints: vitbench's own folder format, and one entry point for presets, checkpoint
folders and imported timm / DeiT weights.

vitbench format: a folder with ``config.json`` (a :class:`ViTConfig`) and
``model.safetensors`` (timm state-dict names). Foreign weights load from ``.safetensors`` or
from ``.pth``/``.pt`` through ``torch.load(weights_only=True)`` (:mod:`harness.model.weights`):
nothing is ever unpickled beyond tensors and plain containers. How timm weights become a
model is :mod:`harness.model.timm_import`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import CheckpointError, UserError
from harness.model.builtin import TRAINED, trained_path
from harness.model.config import ViTConfig
from harness.model.presets import PRESETS, preset_config
from harness.model.timm_import import import_timm
from harness.model.vit import VisionTransformer, build_model
from harness.model.weights import load_into, read_safetensors, resample_to_config

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FOREIGN_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# what a vitbench checkpoint folder takes: the rest of its shape is fixed by its weights
FOLDER_OVERRIDES = ("img_size",)


def save_checkpoint(model: VisionTransformer, out_dir: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors``; bit-exact on reload."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        tmp = out / (WEIGHTS_FILE + ".tmp")
        save_file(state, str(tmp), metadata={"format": "pt", "producer": "vitbench"})
        tmp.replace(out / WEIGHTS_FILE)
        (out / CONFIG_FILE).write_text(model.config.to_json())
    except OSError as exc:
        raise UserError(f"cannot write checkpoint to {out}: {exc.strerror or exc}") from None
    return out


def load_checkpoint(path: str | Path, img_size: int | None = None) -> VisionTransformer:
    """Load a vitbench checkpoint folder; ``img_size`` other than its own resamples the
    position embeddings to the new patch grid (bicubic, as timm)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    if not p.is_dir():
        raise CheckpointError(
            f"{p} is not a checkpoint folder (expected {CONFIG_FILE} + {WEIGHTS_FILE})"
        )
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (p / name).is_file():
            raise CheckpointError(f"checkpoint {p} has no {name}")
    config = ViTConfig.from_json_file(p / CONFIG_FILE)
    state = read_safetensors(p / WEIGHTS_FILE)
    config = resample_to_config(state, config, img_size)
    return load_into(config, state, str(p / WEIGHTS_FILE))


def write_threshold(path: str | Path, threshold: float, rule: str) -> Path:
    """Set the decision threshold (and how it was chosen) in a checkpoint's ``config.json``;
    the weights are not touched. Returns the config file written."""
    p = Path(path) / CONFIG_FILE
    config = ViTConfig.from_json_file(p).replace(
        decision_threshold=float(threshold), threshold_rule=rule
    )
    try:
        tmp = p.with_suffix(".json.tmp")
        tmp.write_text(config.to_json())
        tmp.replace(p)
    except OSError as exc:
        raise UserError(f"cannot write {p}: {exc.strerror or exc}") from None
    return p


# -- one entry point for "PRESET_OR_PATH" ---------------------------------------------------


def load_model(spec: str | Path, **overrides: Any) -> VisionTransformer:
    """A preset name, a vitbench checkpoint folder, or a timm/DeiT weights file."""
    s = str(spec)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if s in PRESETS:
        return build_model(preset_config(s, **overrides))
    if s in TRAINED:  # a preset with trained weights shipped in the package
        spec, s = trained_path(s), str(trained_path(s))
    p = Path(s)
    if p.is_dir():
        fixed = [k for k in overrides if k not in FOLDER_OVERRIDES]
        if fixed:
            raise UserError(
                f"{p}: overrides ({', '.join(fixed)}) apply to presets and imports, not to "
                "checkpoints (a checkpoint takes only img_size)"
            )
        return load_checkpoint(p, **overrides)
    if p.suffix in FOREIGN_SUFFIXES:
        return import_timm(p, **overrides)
    if not p.exists() and "/" not in s and "." not in s:
        known = ", ".join([*PRESETS, *TRAINED])
        raise UserError(f"unknown preset {s!r}; known presets: {known}")
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    raise CheckpointError(
        f"{p}: not a checkpoint folder and not a weights file ({', '.join(FOREIGN_SUFFIXES)})"
    )


def load_config(spec: str | Path, **overrides: Any) -> ViTConfig:
    """The configuration behind ``spec``; presets are not built, checkpoints are fully read
    (so a broken checkpoint is reported here too)."""
    s = str(spec)
    if s in PRESETS:
        return preset_config(s, **{k: v for k, v in overrides.items() if v is not None})
    return load_model(spec, **overrides).config
