"""Weights in and out of the model: reading tensor files without unpickling, checking a state
dict against the model key for key, and resampling position embeddings to another input size.

Nothing here knows where weights came from (vitbench's own folders or timm imports); both
load through :func:`load_into`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.errors import CheckpointError
from harness.model.config import ViTConfig
from harness.model.vit import VisionTransformer, build_model


def shape_text(t: Any) -> str:
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
            f"{shape_text(expected[missing[0]])}"
        )
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(
            f"{source}: unexpected key {unexpected[0]!r}{more} with shape "
            f"{shape_text(state[unexpected[0]])}; "
            "the model has no such parameter"
        )
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: key {k!r} has shape {shape_text(state[k])} in the checkpoint "
                f"but the model expects {shape_text(v)}"
            )


def load_into(
    config: ViTConfig, state: Mapping[str, torch.Tensor], source: str
) -> VisionTransformer:
    model = build_model(config, init=False)
    check_state_dict(model, state, source)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    return model.eval()


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


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


def resample_pos_embed(
    pos_embed: torch.Tensor, old_grid: int, new_grid: int, num_prefix_tokens: int
) -> torch.Tensor:
    """Position embeddings for another patch grid, as timm's ``resample_abs_pos_embed`` makes
    them: the prefix (class token) rows untouched, the patch rows laid out as a
    (1, D, grid, grid) image and resized bicubically with antialiasing, in float32."""
    if old_grid == new_grid:
        return pos_embed
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    d = patches.shape[-1]
    grid = patches.float().reshape(1, old_grid, old_grid, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", antialias=True)
    patches = grid.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, d).to(pos_embed.dtype)
    return torch.cat([prefix, patches], dim=1)


def resample_to_config(
    state: dict[str, torch.Tensor], old: ViTConfig, img_size: int | None
) -> ViTConfig:
    """``old`` at ``img_size`` (None keeps it), resampling ``state["pos_embed"]`` in place to
    the new patch grid. The ViTConfig check says when the size does not fit the patch."""
    if img_size is None or img_size == old.img_size:
        return old
    new = old.replace(img_size=img_size)
    if "pos_embed" in state:
        state["pos_embed"] = resample_pos_embed(
            state["pos_embed"], old.grid_size, new.grid_size, old.num_prefix_tokens
        )
    return new
