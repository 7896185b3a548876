"""Checkpoints: vitbench's own folder format and imports of timm / DeiT weights.

vitbench format: a folder with ``config.json`` (a :class:`ViTConfig`) and
``model.safetensors`` (timm state-dict names). Foreign weights load from ``.safetensors`` or
from ``.pth``/``.pt`` through ``torch.load(weights_only=True)``: nothing is ever unpickled
beyond tensors and plain containers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from harness.errors import CheckpointError, UserError
from harness.model.config import ViTConfig, is_square
from harness.model.presets import PRESETS, preset_config
from harness.model.vit import VisionTransformer, build_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FOREIGN_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def _shape(t: Any) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_state_dict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raise one clear line if ``state`` does not fit ``model`` key for key, shape for shape."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(
            f"{source}: key {missing[0]!r}{more} is missing; the model expects shape "
            f"{_shape(expected[missing[0]])}"
        )
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(
            f"{source}: unexpected key {unexpected[0]!r}{more} with shape "
            f"{_shape(state[unexpected[0]])}; "
            "the model has no such parameter"
        )
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: key {k!r} has shape {_shape(state[k])} in the checkpoint "
                f"but the model expects {_shape(v)}"
            )


def _load_into(
    config: ViTConfig, state: Mapping[str, torch.Tensor], source: str
) -> VisionTransformer:
    model = build_model(config, init=False)
    check_state_dict(model, state, source)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    return model.eval()


# -- vitbench's own format ------------------------------------------------------------------


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


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def load_checkpoint(path: str | Path) -> VisionTransformer:
    """Load a vitbench checkpoint folder."""
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
    return _load_into(config, read_safetensors(p / WEIGHTS_FILE), str(p / WEIGHTS_FILE))


# -- timm / DeiT imports --------------------------------------------------------------------


def read_foreign_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors or a .pth/.pt/.bin file, unwrapping the usual containers
    ({"model": ...} in DeiT releases, {"state_dict": ...}, a "module." prefix from DDP)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        state: Any = read_safetensors(path)
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure to read a user file is the user's
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{path}: cannot be read as a weights-only PyTorch checkpoint ({first[:200]})"
            ) from None
    for wrapper in ("model", "state_dict", "model_ema"):
        if isinstance(state, Mapping) and wrapper in state and isinstance(state[wrapper], Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def infer_config(
    state: Mapping[str, torch.Tensor], source: str, head_dim: int = 64, **overrides: Any
) -> ViTConfig:
    """Read a ViT's shape from its tensors: widths per block from qkv and fc1 rows."""

    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(
                f"{source}: key {key!r} is missing; not a timm VisionTransformer state dict"
            )
        return state[key]

    proj = need("patch_embed.proj.weight")
    if proj.ndim != 4 or proj.shape[2] != proj.shape[3]:
        raise CheckpointError(
            f"{source}: patch_embed.proj.weight has shape {_shape(proj)}; expected (D, C, P, P)"
        )
    embed_dim, in_chans, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[2])
    pos = need("pos_embed")
    extra = [k for k in ("dist_token", "reg_token") if k in state]
    if extra:
        raise CheckpointError(
            f"{source}: has {extra[0]!r}; distilled/register-token ViTs are not supported"
        )
    n_patches = int(pos.shape[1]) - 1
    if not is_square(n_patches):
        raise CheckpointError(
            f"{source}: pos_embed has shape {_shape(pos)}; {n_patches} patches is not a square grid"
        )
    img_size = math.isqrt(n_patches) * patch
    depth = 0
    while f"blocks.{depth}.attn.qkv.weight" in state:
        depth += 1
    if depth == 0:
        raise CheckpointError(
            f"{source}: key 'blocks.0.attn.qkv.weight' is missing; not a timm VisionTransformer "
            "state dict"
        )
    heads, mlps = [], []
    for i in range(depth):
        rows = int(state[f"blocks.{i}.attn.qkv.weight"].shape[0])
        if rows % (3 * head_dim):
            raise CheckpointError(
                f"{source}: blocks.{i}.attn.qkv.weight has {rows} rows, not a multiple of 3 x "
                f"head_dim {head_dim}; "
                "pass the model's head dimension (--head-dim)"
            )
        heads.append(rows // (3 * head_dim))
        mlps.append(int(need(f"blocks.{i}.mlp.fc1.weight").shape[0]))
    num_classes = int(state["head.weight"].shape[0]) if "head.weight" in state else None
    fields: dict[str, Any] = dict(
        img_size=img_size,
        patch_size=patch,
        in_chans=in_chans,
        embed_dim=embed_dim,
        head_dim=head_dim,
        num_heads=heads,
        mlp_dims=mlps,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        num_classes=num_classes or 1000,
        name=Path(source).stem,
    )
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return ViTConfig(**fields)


def import_timm(
    path: str | Path,
    head_dim: int = 64,
    num_classes: int | None = None,
    in_chans: int | None = None,
    **overrides: Any,
) -> VisionTransformer:
    """Load timm / DeiT ViT weights, inferring per-block widths from the tensor shapes.

    ``num_classes`` different from the checkpoint's head gives a new head initialised from the
    config seed (fine-tuning on a medical task). ``in_chans=1`` on an RGB checkpoint sums the
    patch-embedding filters over colour (timm's ``adapt_input_conv``), for X-rays.
    """
    p = Path(path)
    state = dict(read_foreign_state_dict(p))
    # Parameter-free timm modules leave no tensors; anything else left over is reported.
    cfg = infer_config(state, str(p), head_dim=head_dim, **overrides)
    ckpt_classes = int(state["head.weight"].shape[0]) if "head.weight" in state else None
    if num_classes is not None and num_classes != ckpt_classes:
        state.pop("head.weight", None)
        state.pop("head.bias", None)
    elif ckpt_classes is None:
        raise CheckpointError(
            f"{p}: has no classification head (head.weight); pass --num-classes to add one"
        )
    ckpt_chans = cfg.in_chans
    if in_chans is not None and in_chans != ckpt_chans:
        w = state["patch_embed.proj.weight"]
        if in_chans == 1:
            state["patch_embed.proj.weight"] = w.sum(dim=1, keepdim=True)
        else:
            raise CheckpointError(
                f"{p}: cannot adapt {ckpt_chans} input channels to {in_chans} (only to 1)"
            )
    cfg = cfg.replace(num_classes=num_classes or ckpt_classes, in_chans=in_chans or ckpt_chans)
    if "head.weight" not in state:
        fresh = build_model(cfg).state_dict()
        state["head.weight"], state["head.bias"] = fresh["head.weight"], fresh["head.bias"]
    return _load_into(cfg, state, str(p))


# -- one entry point for "PRESET_OR_PATH" ---------------------------------------------------


def load_model(spec: str | Path, **overrides: Any) -> VisionTransformer:
    """A preset name, a vitbench checkpoint folder, or a timm/DeiT weights file."""
    s = str(spec)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if s in PRESETS:
        return build_model(preset_config(s, **overrides))
    p = Path(s)
    if p.is_dir():
        if overrides:
            raise UserError(
                f"{p}: overrides ({', '.join(overrides)}) apply to presets and imports, not to "
                "checkpoints"
            )
        return load_checkpoint(p)
    if p.suffix in FOREIGN_SUFFIXES:
        return import_timm(p, **overrides)
    if not p.exists() and "/" not in s and "." not in s:
        raise UserError(f"unknown preset {s!r}; known presets: {', '.join(PRESETS)}")
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
