"""Built-in model shapes. Each initialises from a fixed seed, so a preset always gives the
same weights (and, later, the same artifact hash): the default job works offline.

The teacher, base and tiny presets keep the shape of their public ImageNet checkpoints
(3 channels, 1000 classes), so their parameter counts match the published figures and timm
weights import into them. ``lite`` is the deployment model and defaults to a 2-class head.
Every field can be overridden for a task (``--in-chans 1 --num-classes 14`` for CheXpert
X-rays, say).
"""

from __future__ import annotations

from typing import Any

from harness.errors import UserError
from harness.model.config import ViTConfig

_COMMON = dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000, seed=0)

PRESETS: dict[str, dict[str, Any]] = {
    # teacher: ViT-Large/16, ~304M parameters
    "vit-large-16": dict(embed_dim=1024, depth=24, num_heads=16, mlp_dim=4096),
    # ViT-Base/16, ~86M
    "vit-base-16": dict(embed_dim=768, depth=12, num_heads=12, mlp_dim=3072),
    # the compressed deployment size: ~38M parameters, ~150 MB fp32
    "lite": dict(embed_dim=512, depth=12, num_heads=8, mlp_dim=2048, num_classes=2),
    # DeiT-Tiny shape, ~5.7M: fast tests and demos
    "tiny": dict(embed_dim=192, depth=12, num_heads=3, mlp_dim=768),
    # the built-in X-ray teacher's shape (~1.2M): 28x28 grey PneumoniaMNIST, 16 patches of 7x7
    "xray-small": dict(
        embed_dim=128,
        depth=6,
        num_heads=4,
        mlp_dim=512,
        img_size=28,
        patch_size=7,
        in_chans=1,
        num_classes=2,
    ),  # fmt: skip
}

DESCRIPTIONS = {
    "vit-large-16": "teacher (ViT-Large/16)",
    "vit-base-16": "ViT-Base/16",
    "lite": "compressed deployment target",
    "tiny": "DeiT-Tiny shape, for tests and demos",
    "xray-small": "shape of the built-in X-ray teacher (28x28 grey)",
}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_config(name: str, **overrides: Any) -> ViTConfig:
    """The configuration of preset ``name``; ``overrides`` replace any field
    (``in_chans``, ``num_classes``, ``img_size``, ``task``, ``labels``, ``seed``)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    p = PRESETS[name]
    kwargs: dict[str, Any] = {**_COMMON, "name": name}
    kwargs.update(
        {k: p[k] for k in ("img_size", "patch_size", "in_chans", "num_classes") if k in p}
    )
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    return ViTConfig.uniform(
        p["depth"], p["num_heads"], p["mlp_dim"], embed_dim=p["embed_dim"], **kwargs
    )
