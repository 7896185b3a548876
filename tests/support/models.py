"""Small model configurations for tests."""

from __future__ import annotations

from harness.model.config import ViTConfig


def small_config(**kw) -> ViTConfig:
    """A pruned-looking ViT small enough for unit tests: uneven heads and MLP widths."""
    base = dict(
        img_size=32,
        patch_size=8,
        in_chans=3,
        num_classes=5,
        embed_dim=64,
        head_dim=16,
        num_heads=(2, 4, 1),
        mlp_dims=(128, 64, 32),
        name="small",
    )
    base.update(kw)
    return ViTConfig(**base)
