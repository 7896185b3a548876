"""Imports of timm / DeiT Vision Transformer weights: right, or refused with the reason.

A state dict shows widths, depth, patch size, the class token and which norms exist; it does
not show the head count, the pooling, the LayerNorm epsilon or the activation. Those come, in
this order, from what the caller says (``num_heads=`` / ``head_dim=``, ``--head-dim``), from a
timm or Hugging Face ``config.json`` beside the weights, from timm's own definitions of its
architectures (:mod:`harness.model.architectures`), and only then from a guess (64 per head),
which raises an :class:`ImportGuessWarning` saying how to give the real value.

Variants of timm's ViT that vitbench does not build (register tokens, distillation tokens,
layer scale, QK norm, attention pooling, ...) are named in one line, never left to surface as
a missing or unexpected key.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.errors import CheckpointError, VitbenchWarning
from harness.model.architectures import heads_from_table, matching_architectures
from harness.model.config import POOLS, ViTConfig, is_square
from harness.model.foreign_config import SideConfig, read_side_config
from harness.model.vit import VisionTransformer, build_model
from harness.model.weights import (
    load_into,
    read_foreign_state_dict,
    resample_to_config,
    shape_text,
)

GUESSED_HEAD_DIM = 64
CLIP_NORM_EPS = 1e-5  # timm's CLIP towers: partial(LayerNorm, eps=1e-5)


class ImportGuessWarning(VitbenchWarning):
    """An import filled in a value that neither the weights nor a config.json decide; the
    message says which and how to give it."""


# Keys that only timm's variants have, and the variant's name (searched in this order).
VARIANT_KEYS: tuple[tuple[str, str], ...] = (
    (r"^(vit|deit|dinov2|beit)\.|^(embeddings|encoder)\.", "Hugging Face transformers key names"),
    (r"^(dist_token|head_dist\.)", "a distilled DeiT (dist_token, head_dist)"),
    (r"^reg_token$", "register tokens (reg_token)"),
    (r"\.ls[12]\.(gamma|weight)$|\.gamma_[12]$", "layer scale (ls1.gamma / ls2.gamma)"),
    (r"\.attn\.[qk]_norm\.", "QK normalisation (attn.q_norm / attn.k_norm)"),
    (r"\.attn\.[qv]_bias$|relative_position", "BEiT-style attention (q_bias, relative position)"),
    (r"\.(attn|mlp)\.norm\.", "sub-LayerNorms in attention or MLP (scale_attn/mlp_norm, BEiT-3)"),
    (r"\.mlp\.(fc1_g|fc1_x|w12|w1|w3)\.", "a SwiGLU MLP"),
    (r"^blocks\.\d+\.(attns|ffns)\.", "parallel blocks (ParallelThingsBlock)"),
    (r"^blocks\.\d+\.in_proj\.", "parallel scaling blocks (ParallelScalingBlock)"),
    (r"^attn_pool\.", "attention pooling (attn_pool, the 'map' head of SigLIP)"),
    (r"^pre_logits\.", "a pre-logits layer (pre_logits.fc)"),
    (r"^(decoder_|mask_token$)", "an MAE pretraining checkpoint with its decoder (decoder_*)"),
    (r"^patch_embed\.norm\.", "a norm in the patch embedding (embed_norm_layer)"),
    (r"^patch_embed\.backbone\.", "a hybrid CNN stem (patch_embed.backbone)"),
)
_VARIANT_RES = tuple((re.compile(p), what) for p, what in VARIANT_KEYS)


@dataclass(frozen=True)
class Shape:
    """What the tensors show."""

    width: int
    in_chans: int
    patch: int
    class_token: bool
    grid: int
    qkv_rows: tuple[int, ...]
    mlp_dims: tuple[int, ...]

    @property
    def depth(self) -> int:
        return len(self.qkv_rows)


def _unsupported(source: str, what: str, where: str) -> CheckpointError:
    return CheckpointError(f"{source}: {what} is not supported ({where})")


def refuse_variants(state: Mapping[str, torch.Tensor], source: str) -> None:
    """One line naming the first timm variant in ``state`` that vitbench does not build."""
    for rx, what in _VARIANT_RES:
        hit = next((k for k in state if rx.search(k)), None)
        if hit is not None:
            raise _unsupported(source, what, f"key {hit!r}")
    if "patch_embed.proj.weight" not in state:
        raise CheckpointError(
            f"{source}: key 'patch_embed.proj.weight' is missing; "
            "not a timm VisionTransformer state dict"
        )
    if "pos_embed" not in state:
        raise _unsupported(source, "a ViT without learned position embeddings", "no 'pos_embed'")
    has_norm, has_fc_norm = "norm.weight" in state, "fc_norm.weight" in state
    if has_norm == has_fc_norm:
        what = "both a final norm and fc_norm" if has_norm else "no final norm (final_norm=False)"
        raise _unsupported(source, what, "keys 'norm.weight' and 'fc_norm.weight'")
    for layer in ("norm_pre", "blocks.0.norm1", "norm" if has_norm else "fc_norm"):
        if f"{layer}.weight" in state and f"{layer}.bias" not in state:
            raise _unsupported(source, "RMSNorm (a norm without bias)", f"no '{layer}.bias'")
    for layer in ("blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2"):
        if f"{layer}.weight" in state and f"{layer}.bias" not in state:
            raise _unsupported(source, "linear layers without bias (proj_bias=False)", layer)


def read_shape(state: Mapping[str, torch.Tensor], source: str) -> Shape:
    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(
                f"{source}: key {key!r} is missing; not a timm VisionTransformer state dict"
            )
        return state[key]

    proj = need("patch_embed.proj.weight")
    if proj.ndim != 4 or proj.shape[2] != proj.shape[3]:
        raise CheckpointError(
            f"{source}: patch_embed.proj.weight has shape {shape_text(proj)}; expected (D, C, P, P)"
        )
    pos = need("pos_embed")
    class_token = "cls_token" in state
    tokens = int(pos.shape[1]) if pos.ndim == 3 else 0
    if class_token and is_square(tokens):
        raise _unsupported(
            source,
            "position embeddings without a class-token row (no_embed_class: DeiT-3, FlexiViT)",
            f"pos_embed {shape_text(pos)} with a cls_token",
        )
    n_patches = tokens - (1 if class_token else 0)
    if n_patches < 1 or not is_square(n_patches):
        raise CheckpointError(
            f"{source}: pos_embed has shape {shape_text(pos)}; {n_patches} patches is not a "
            "square grid"
        )
    rows, mlps = [], []
    while f"blocks.{len(rows)}.attn.qkv.weight" in state:
        i = len(rows)
        rows.append(int(state[f"blocks.{i}.attn.qkv.weight"].shape[0]))
        mlps.append(int(need(f"blocks.{i}.mlp.fc1.weight").shape[0]))
    if not rows:
        need("blocks.0.attn.qkv.weight")
    return Shape(
        width=int(proj.shape[0]),
        in_chans=int(proj.shape[1]),
        patch=int(proj.shape[2]),
        class_token=class_token,
        grid=math.isqrt(n_patches),
        qkv_rows=tuple(rows),
        mlp_dims=tuple(mlps),
    )


def check_side_config(side: SideConfig, shape: Shape, source: str) -> None:
    """The config.json beside the weights describes these weights, and nothing unsupported."""
    actual = {
        "width": shape.width,
        "depth": shape.depth,
        "patch": shape.patch,
        "img_size": shape.grid * shape.patch,
    }
    for what, value in side.claims:
        if value != actual[what]:
            raise CheckpointError(
                f"{side.source} gives {what} {value} but the weights {source} have {actual[what]}"
            )
    if side.unsupported:
        raise _unsupported(source, side.unsupported, side.source)
    if side.activation != "gelu":
        raise _unsupported(
            source, f"the activation {side.activation!r} (vitbench's MLPs use GELU)", side.source
        )


def _width_per_head(width: int, heads: int, source: str, where: str) -> int:
    if heads < 1 or width % heads:
        raise CheckpointError(
            f"{source}: width {width} is not divisible by {heads} heads ({where})"
        )
    return width // heads


def _guess_note(shape: Shape, source: str) -> str:
    archs = matching_architectures(shape.width, shape.depth, shape.patch, shape.class_token)
    if archs:
        known = "; ".join(f"{a.heads} heads in {a.name}" for a in archs)
        why = f"timm defines this shape more than once ({known})"
    else:
        cls = "" if shape.class_token else " without a class token"
        why = (
            f"timm defines no ViT of width {shape.width}, depth {shape.depth}, "
            f"patch {shape.patch}{cls}"
        )
    return (
        f"{source}: the head count is a guess (head dim {GUESSED_HEAD_DIM}, "
        f"{shape.width // GUESSED_HEAD_DIM} heads): no config.json beside the weights says it "
        f"and {why}; pass the head dimension (--head-dim, head_dim=) or num_heads=, or put the "
        "model's config.json beside the weights"
    )


def choose_head_dim(
    shape: Shape,
    source: str,
    head_dim: int | None = None,
    num_heads: int | None = None,
    side: SideConfig | None = None,
) -> tuple[int, str, str | None]:
    """(head dimension, where it came from, the warning to give when it is a guess)."""
    if num_heads is not None:
        return _width_per_head(shape.width, num_heads, source, "num_heads given"), "given", None
    if head_dim is not None:
        return head_dim, "given", None
    if side is not None and side.head_dim is not None:
        return side.head_dim, side.source, None
    if side is not None and isinstance(side.num_heads, int):
        where = f"num_heads {side.num_heads} in {side.source}"
        return _width_per_head(shape.width, side.num_heads, source, where), where, None
    heads = heads_from_table(shape.width, shape.depth, shape.patch, shape.class_token)
    if heads is not None:
        return shape.width // heads, "timm's definition of this architecture", None
    return GUESSED_HEAD_DIM, "guessed", _guess_note(shape, source)


def block_heads(shape: Shape, head_dim: int, where: str, source: str) -> tuple[int, ...]:
    heads = []
    for i, rows in enumerate(shape.qkv_rows):
        if rows % (3 * head_dim):
            raise CheckpointError(
                f"{source}: blocks.{i}.attn.qkv.weight has {rows} rows, not a multiple of 3 x "
                f"head_dim {head_dim} ({where}); pass the model's head dimension (--head-dim)"
            )
        heads.append(rows // (3 * head_dim))
    return tuple(heads)


def choose_pool(shape: Shape, has_fc_norm: bool, side: SideConfig | None, source: str) -> str:
    """timm's rule: the class token unless there is none or the final norm is fc_norm (which
    timm turns on with average pooling); a config.json's ``global_pool`` decides first."""
    pool = side.global_pool if side is not None else None
    if pool is None:
        return "avg" if has_fc_norm or not shape.class_token else "token"
    assert side is not None
    if pool not in POOLS:
        raise _unsupported(
            source, f"global_pool {pool!r} (vitbench pools 'token' or 'avg')", side.source
        )
    if pool == "token" and not shape.class_token:
        raise CheckpointError(
            f"{source}: {side.source} pools by class token but the weights have no cls_token"
        )
    return pool


def choose_norm_eps(
    pre_norm: bool, side: SideConfig | None, source: str
) -> tuple[float, str | None]:
    """(LayerNorm epsilon, the warning to give when it is assumed)."""
    if side is not None and side.norm_eps is not None:
        return side.norm_eps, None
    if pre_norm:
        return CLIP_NORM_EPS, (
            f"{source}: norm_pre without a config.json: taken as timm's CLIP image tower "
            f"(LayerNorm eps {CLIP_NORM_EPS}, GELU); an OpenAI CLIP model with QuickGELU "
            "(vit_*_clip_quickgelu_*) would give other outputs; put timm's config.json beside "
            "the weights"
        )
    return 1e-6, None


def infer_config(
    state: Mapping[str, torch.Tensor],
    source: str,
    head_dim: int | None = None,
    num_heads: int | None = None,
    side: SideConfig | None = None,
    **overrides: Any,
) -> ViTConfig:
    """The ViTConfig of timm-named weights ``state``, at the weights' own input size. Reads
    shapes only (meta tensors do). Warns (:class:`ImportGuessWarning`) for what it guesses."""
    refuse_variants(state, source)
    shape = read_shape(state, source)
    if side is not None:
        check_side_config(side, shape, source)
    hd, where, head_note = choose_head_dim(shape, source, head_dim, num_heads, side)
    heads = block_heads(shape, hd, where, source)
    pre_norm = "norm_pre.weight" in state
    eps, eps_note = choose_norm_eps(pre_norm, side, source)
    fields: dict[str, Any] = dict(
        img_size=shape.grid * shape.patch,
        patch_size=shape.patch,
        in_chans=shape.in_chans,
        embed_dim=shape.width,
        head_dim=hd,
        num_heads=heads,
        mlp_dims=shape.mlp_dims,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        norm_eps=eps,
        num_classes=int(state["head.weight"].shape[0]) if "head.weight" in state else 1000,
        name=(side.architecture if side is not None else None) or Path(source).stem,
        class_token=shape.class_token,
        global_pool=choose_pool(shape, "fc_norm.weight" in state, side, source),
        fc_norm="fc_norm.weight" in state,
        pre_norm=pre_norm,
    )
    fields.update({k: v for k, v in overrides.items() if v is not None})
    for note in (head_note, None if "norm_eps" in overrides else eps_note):
        if note:
            warnings.warn(note, ImportGuessWarning, stacklevel=2)
    return ViTConfig(**fields)


def import_timm(
    path: str | Path,
    head_dim: int | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    img_size: int | None = None,
    num_heads: int | None = None,
    **overrides: Any,
) -> VisionTransformer:
    """Load timm / DeiT ViT weights, inferring per-block widths from the tensor shapes.

    ``num_classes`` different from the checkpoint's head gives a new head initialised from the
    config seed (fine-tuning on a medical task). ``in_chans=1`` on an RGB checkpoint sums the
    patch-embedding filters over colour (timm's ``adapt_input_conv``), for X-rays.
    ``img_size`` other than the weights' resamples ``pos_embed`` bicubically, as timm does.
    """
    p = Path(path)
    state = dict(read_foreign_state_dict(p))
    side = read_side_config(p)
    # Parameter-free timm modules leave no tensors; anything else left over is reported.
    cfg = infer_config(
        state, str(p), head_dim=head_dim, num_heads=num_heads, side=side, **overrides
    )
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
    if "patch_embed.proj.bias" not in state:  # timm builds it without bias under norm_pre (CLIP)
        state["patch_embed.proj.bias"] = torch.zeros(cfg.embed_dim)
    cfg = resample_to_config(state, cfg, img_size)
    cfg = cfg.replace(num_classes=num_classes or ckpt_classes, in_chans=in_chans or ckpt_chans)
    if "head.weight" not in state:
        fresh = build_model(cfg).state_dict()
        state["head.weight"], state["head.bias"] = fresh["head.weight"], fresh["head.bias"]
    return load_into(cfg, state, str(p))
