"""timm's Vision Transformer definitions, as far as a state dict cannot tell them.

The head count is not in the weights: ``attn.qkv`` has 3 x width rows whatever the number of
heads. timm defines every ViT it ships with ``num_heads`` beside width, depth and patch size
(``timm/models/vision_transformer.py`` and ``deit.py``), so those three, with whether the model
has a class token, pick the head count. Where timm has two definitions of one shape with
different head counts the table says so and nothing is decided.

The activation and the LayerNorm epsilon are not in the weights either; :data:`ARCH_ACTIVATIONS`
and :func:`arch_norm_eps` say what timm's architecture names imply, for a ``config.json``
that names one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    name: str  # one timm model of this shape
    width: int
    depth: int
    heads: int
    patches: tuple[int, ...]
    class_token: bool = True


ARCHITECTURES: tuple[Arch, ...] = (
    # with a class token (timm's default; DeiT, DeiT-3, CLIP towers, MAE / RETFound, DINOv2)
    Arch("vit_tiny_patch16_224", 192, 12, 3, (16,)),  # deit_tiny_patch16_224
    Arch("vit_small_patch16_224", 384, 12, 6, (8, 14, 16, 32)),  # deit(3)_small, dinov2 S/14
    Arch("vit_small_patch16_18x2_224", 384, 18, 6, (16,)),
    Arch("vit_small_patch16_36x1_224", 384, 36, 6, (16,)),
    Arch("vit_xsmall_patch16_clip_224", 256, 10, 4, (16,)),
    Arch("vit_medium_patch16_clip_224", 512, 12, 8, (16, 32)),  # deit3_medium_patch16_224
    Arch("vit_betwixt_patch32_clip_224", 640, 12, 10, (32,)),
    Arch("vit_base_patch16_224", 768, 12, 12, (8, 14, 16, 32)),  # deit(3)_base, CLIP B
    Arch("vit_base_patch16_18x2_224", 768, 18, 12, (16,)),
    Arch("vit_base_patch16_plus_240", 896, 12, 14, (16, 32)),  # vit_base_patch16_plus_clip_240
    Arch("vit_large_patch16_224", 1024, 24, 16, (14, 16, 32)),  # MAE / RETFound, CLIP L/14
    Arch("vit_so400m_patch14_reg1_tipsv2", 1152, 27, 16, (14,)),
    Arch("vit_huge_patch14_224", 1280, 32, 16, (14,)),  # deit3_huge_patch14, CLIP H/14
    Arch("vit_giant_patch14_224", 1408, 40, 16, (14,)),  # CLIP g/14
    Arch("vit_giant_patch14_dinov2", 1536, 40, 24, (14,)),
    Arch("vit_gigantic_patch14_224", 1664, 48, 16, (14,)),  # CLIP bigG/14
    # without a class token (global average or attention pooling)
    Arch("vit_wee_patch16_reg1_gap_256", 256, 14, 4, (16,), False),
    Arch("vit_pwee_patch16_reg1_gap_256", 256, 16, 4, (16,), False),
    Arch("vit_little_patch16_reg1_gap_256", 320, 14, 5, (16,), False),
    Arch("vit_medium_patch16_gap_256", 512, 12, 8, (16,), False),
    Arch("vit_mediumd_patch16_reg4_gap_256", 512, 20, 8, (16,), False),
    Arch("vit_betwixt_patch16_gap_256", 640, 12, 10, (16,), False),
    Arch("vit_base_patch16_gap_224", 768, 12, 16, (16,), False),
    Arch("vit_base_patch16_siglip_gap_224", 768, 12, 12, (16, 32), False),
    Arch("vit_so150m2_patch16_reg1_gap_256", 832, 21, 13, (16,), False),
    Arch("vit_so150m_patch16_reg4_gap_256", 896, 18, 14, (16,), False),
    Arch("vit_large_patch16_siglip_gap_256", 1024, 24, 16, (16,), False),
    Arch("vit_so400m_patch14_siglip_gap_224", 1152, 27, 16, (14, 16), False),
    Arch("vit_huge_patch14_gap_224", 1280, 32, 16, (14, 16), False),
    Arch("vit_giant_patch16_gap_224", 1408, 40, 16, (16,), False),
    Arch("vit_giantopt_patch16_siglip_gap_256", 1536, 40, 16, (16,), False),
)


def matching_architectures(width: int, depth: int, patch: int, class_token: bool) -> list[Arch]:
    return [
        a
        for a in ARCHITECTURES
        if (a.width, a.depth, a.class_token) == (width, depth, class_token) and patch in a.patches
    ]


def heads_from_table(width: int, depth: int, patch: int, class_token: bool = True) -> int | None:
    """timm's head count for this shape, or None when timm has no such ViT or defines it with
    more than one head count."""
    counts = {a.heads for a in matching_architectures(width, depth, patch, class_token)}
    return counts.pop() if len(counts) == 1 else None


# Activations timm's architectures use other than GELU (what vitbench's blocks compute); the
# weights look the same either way. Names are timm model names without the ".tag".
GELU_TANH = (
    "vit_base_patch32_siglip_256",
    "vit_base_patch32_siglip_gap_256",
    "vit_large_patch16_siglip_512",
    "vit_large_patch16_siglip_gap_512",
    "vit_so400m_patch16_siglip_256",
    "vit_so400m_patch16_siglip_384",
    "vit_so400m_patch16_siglip_512",
    "vit_so400m_patch16_siglip_gap_256",
    "vit_so400m_patch16_siglip_gap_384",
    "vit_so400m_patch16_siglip_gap_512",
    "vit_giantopt_patch16_siglip_256",
    "vit_giantopt_patch16_siglip_384",
    "vit_giantopt_patch16_siglip_gap_256",
    "vit_giantopt_patch16_siglip_gap_384",
)


def arch_activation(name: str) -> str:
    """timm's activation for architecture ``name`` ("gelu" unless it is known otherwise)."""
    base = name.split(".")[0]
    if "quickgelu" in base:
        return "quick_gelu"
    if base in GELU_TANH:
        return "gelu_tanh"
    if base.startswith("aimv2_"):
        return "silu"  # (and RMSNorm, SwiGLU: refused by their keys first)
    return "gelu"


def arch_norm_eps(name: str) -> float:
    """The LayerNorm epsilon of timm's architecture ``name``: 1e-5 for the CLIP image towers
    (``norm_layer=partial(LayerNorm, eps=1e-5)``), timm's 1e-6 otherwise."""
    return 1e-5 if "_clip_" in name.split(".")[0] else 1e-6


def arch_block_variant(name: str) -> str | None:
    """A block layout timm's architecture ``name`` has that the weights cannot show."""
    base = name.split(".")[0]
    if "_rpn_" in base:
        return "residual post-norm blocks (ResPostBlock, vit_*_rpn_*)"
    return None
