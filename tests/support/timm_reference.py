"""timm VisionTransformer weights and forward pass, written from timm's definition without
importing timm or vitbench's model, so imports are checked against an independent reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# (embed_dim, depth, heads, mlp, img, patch, classes) of timm's models
TIMM_SHAPES = {
    "vit_large_patch16_224": (1024, 24, 16, 4096, 224, 16, 1000),
    "deit_tiny_patch16_224": (192, 12, 3, 768, 224, 16, 1000),
}


def timm_state_dict(name: str, seed: int = 0, std: float = 0.02) -> dict[str, torch.Tensor]:
    d, depth, _, mlp, img, patch, classes = TIMM_SHAPES[name]
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * std

    tokens = (img // patch) ** 2 + 1
    sd = {
        "cls_token": r(1, 1, d),
        "pos_embed": r(1, tokens, d),
        "patch_embed.proj.weight": r(d, 3, patch, patch),
        "patch_embed.proj.bias": r(d),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        sd |= {
            p + "norm1.weight": 1 + r(d),
            p + "norm1.bias": r(d),
            p + "attn.qkv.weight": r(3 * d, d),
            p + "attn.qkv.bias": r(3 * d),
            p + "attn.proj.weight": r(d, d),
            p + "attn.proj.bias": r(d),
            p + "norm2.weight": 1 + r(d),
            p + "norm2.bias": r(d),
            p + "mlp.fc1.weight": r(mlp, d),
            p + "mlp.fc1.bias": r(mlp),
            p + "mlp.fc2.weight": r(d, mlp),
            p + "mlp.fc2.bias": r(d),
        }
    sd |= {
        "norm.weight": 1 + r(d),
        "norm.bias": r(d),
        "head.weight": r(classes, d),
        "head.bias": r(classes),
    }
    return sd


@torch.no_grad()
def timm_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """timm's VisionTransformer.forward (class-token pooling, fused attention)."""
    w = sd["patch_embed.proj.weight"]
    x = F.conv2d(x, w, sd["patch_embed.proj.bias"], stride=w.shape[-1]).flatten(2).transpose(1, 2)
    b, _, d = x.shape
    x = torch.cat([sd["cls_token"].expand(b, -1, -1), x], 1) + sd["pos_embed"]
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        p = f"blocks.{i}."
        y = F.layer_norm(x, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        t = y.shape[1]
        qkv = F.linear(y, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(b, t, 3, num_heads, d // num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = x + F.linear(y, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        y = F.layer_norm(x, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        y = F.linear(
            F.gelu(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
            sd[p + "mlp.fc2.weight"],
            sd[p + "mlp.fc2.bias"],
        )
        x = x + y
        i += 1
    x = F.layer_norm(x, (d,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    return F.linear(x[:, 0], sd["head.weight"], sd["head.bias"])
