"""What a ``config.json`` beside imported weights says about the model.

Three kinds are read: timm's (``"architecture"``, optional ``"model_args"``, ``"global_pool"``,
``"pretrained_cfg"``), Hugging Face's ``ViTConfig`` (``"num_attention_heads"``,
``"hidden_size"``, ``"num_hidden_layers"``, ``"patch_size"``, ``"image_size"``) and vitbench's
own. Each becomes a :class:`SideConfig`: the facts the weights cannot show (heads, pooling,
LayerNorm epsilon, activation) and the shape it claims, which the import checks against the
tensors. Any other ``config.json`` says nothing about a ViT and is left alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import CheckpointError
from harness.model.architectures import arch_activation, arch_block_variant, arch_norm_eps

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class SideConfig:
    source: str  # the config.json's path, for messages
    kind: str  # "timm", "Hugging Face", "vitbench"
    num_heads: int | tuple[int, ...] | None = None  # per block for vitbench's own
    head_dim: int | None = None
    global_pool: str | None = None
    norm_eps: float | None = None
    activation: str = "gelu"
    architecture: str | None = None
    unsupported: str | None = None  # a variant the config names that vitbench does not build
    claims: tuple[tuple[str, Any], ...] = ()  # (what, value) of width, depth, patch, img_size


def read_side_config(weights: Path) -> SideConfig | None:
    """The ``config.json`` in the weights' folder, or None when there is none or it is not a
    ViT's configuration."""
    path = weights.parent / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("architecture"), str):
        return _timm(data, str(path))
    if "num_attention_heads" in data:
        return _hugging_face(data, str(path))
    if "mlp_dims" in data and "num_heads" in data:
        return _vitbench(data, str(path))
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, list | tuple) and value:
        value = value[-1]  # [3, 224, 224], [16, 16]
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _timm_unsupported(arch: str, args: dict[str, Any]) -> str | None:
    if _int(args.get("reg_tokens")):
        return "register tokens (reg_tokens)"
    if args.get("no_embed_class"):
        return "position embeddings without a class-token row (no_embed_class)"
    if args.get("init_values"):
        return "layer scale (init_values)"
    if args.get("qk_norm"):
        return "QK normalisation (qk_norm)"
    if args.get("final_norm") is False:
        return "no final norm (final_norm=False)"
    if args.get("pos_embed") in ("", "none"):
        return "no learned position embedding (pos_embed='none')"
    return arch_block_variant(arch)


def _timm(data: dict[str, Any], source: str) -> SideConfig:
    arch = data["architecture"]
    args = data.get("model_args") if isinstance(data.get("model_args"), dict) else {}
    pool = args.get("global_pool", data.get("global_pool"))
    act = args.get("act_layer")
    claims = [
        (what, _int(args.get(key)))
        for what, key in (("width", "embed_dim"), ("depth", "depth"), ("patch", "patch_size"))
    ]
    return SideConfig(
        source=source,
        kind="timm",
        num_heads=_int(args.get("num_heads")),
        global_pool=pool if isinstance(pool, str) else None,
        norm_eps=arch_norm_eps(arch),
        activation=act if isinstance(act, str) else arch_activation(arch),
        architecture=arch.split(".")[0],
        unsupported=_timm_unsupported(arch, args),
        claims=tuple((w, v) for w, v in claims if v is not None),
    )


def _hugging_face(data: dict[str, Any], source: str) -> SideConfig:
    eps = data.get("layer_norm_eps")
    claims = [
        ("width", _int(data.get("hidden_size"))),
        ("depth", _int(data.get("num_hidden_layers"))),
        ("patch", _int(data.get("patch_size"))),
        ("img_size", _int(data.get("image_size"))),
    ]
    return SideConfig(
        source=source,
        kind="Hugging Face",
        num_heads=_int(data.get("num_attention_heads")),
        norm_eps=float(eps) if isinstance(eps, int | float) and eps > 0 else None,
        activation=str(data.get("hidden_act", "gelu")),
        claims=tuple((w, v) for w, v in claims if v is not None),
    )


def _vitbench(data: dict[str, Any], source: str) -> SideConfig:
    from harness.model.config import ViTConfig

    cfg = ViTConfig.from_dict(data, source=source)
    claims = (
        ("width", cfg.embed_dim),
        ("depth", cfg.depth),
        ("patch", cfg.patch_size),
        ("img_size", cfg.img_size),
    )
    return SideConfig(
        source=source,
        kind="vitbench",
        num_heads=cfg.num_heads,
        head_dim=cfg.head_dim,
        global_pool=cfg.global_pool,
        norm_eps=cfg.norm_eps,
        claims=claims,
    )
