"""timm ViT variants as state dicts under timm's names, and a forward pass for them written
from timm's ``VisionTransformer`` in plain torch ops, importing nothing of vitbench's model:
class token or none, ``norm_pre`` (CLIP towers), class-token or average pooling, the final
norm before pooling (``norm``) or after it (``fc_norm``, MAE / RETFound)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F


def variant_state_dict(
    width: int = 96,
    depth: int = 2,
    mlp: int = 192,
    img: int = 32,
    patch: int = 8,
    classes: int = 5,
    *,
    class_token: bool = True,
    fc_norm: bool = False,
    pre_norm: bool = False,
    seed: int = 0,
    attn_std: float = 0.25,
) -> dict[str, torch.Tensor]:
    """Random weights of that shape. ``attn_std`` makes attention peaked enough that a wrong
    head count changes the logits; ``pre_norm`` drops the patch bias, as timm does."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, std: float = 0.05) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    def layer_norm(name: str) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": 1 + rand(width), f"{name}.bias": rand(width)}

    tokens = (img // patch) ** 2 + (1 if class_token else 0)
    sd = {
        "patch_embed.proj.weight": rand(width, 3, patch, patch),
        "pos_embed": rand(1, tokens, width),
    }
    if not pre_norm:
        sd["patch_embed.proj.bias"] = rand(width)
    if class_token:
        sd["cls_token"] = rand(1, 1, width)
    if pre_norm:
        sd |= layer_norm("norm_pre")
    for i in range(depth):
        b = f"blocks.{i}."
        sd |= {b + k: v for k, v in layer_norm("norm1").items()}
        sd |= {b + k: v for k, v in layer_norm("norm2").items()}
        sd[b + "attn.qkv.weight"] = rand(3 * width, width, std=attn_std)
        sd[b + "attn.qkv.bias"] = rand(3 * width)
        sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"] = rand(width, width), rand(width)
        sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"] = rand(mlp, width), rand(mlp)
        sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"] = rand(width, mlp), rand(width)
    sd |= layer_norm("fc_norm" if fc_norm else "norm")
    sd["head.weight"], sd["head.bias"] = rand(classes, width, std=0.2), rand(classes)
    return sd


def _ln(sd: dict[str, torch.Tensor], name: str, x: torch.Tensor, eps: float) -> torch.Tensor:
    w = sd[f"{name}.weight"]
    return F.layer_norm(x, w.shape, w, sd[f"{name}.bias"], eps=eps)


def _attention(sd, prefix: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    qkv = F.linear(x, sd[prefix + "qkv.weight"], sd.get(prefix + "qkv.bias"))
    q, k, v = qkv.chunk(3, dim=-1)
    split = [t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v)]  # B, h, T, hd
    y = F.scaled_dot_product_attention(*split)
    return F.linear(
        y.transpose(1, 2).flatten(2), sd[prefix + "proj.weight"], sd[prefix + "proj.bias"]
    )


@torch.no_grad()
def variant_forward(
    sd: dict[str, torch.Tensor],
    x: torch.Tensor,
    num_heads: int,
    global_pool: str = "token",
    eps: float = 1e-6,
    pos_embed: torch.Tensor | None = None,
) -> torch.Tensor:
    """timm's forward_features + forward_head for these weights (``pos_embed`` in place of
    the weights' own, for another input size)."""
    w = sd["patch_embed.proj.weight"]
    x = F.conv2d(x, w, sd.get("patch_embed.proj.bias"), stride=w.shape[-1]).flatten(2).mT
    n_prefix = 0
    if "cls_token" in sd:
        x = torch.cat([sd["cls_token"].expand(len(x), -1, -1), x], dim=1)
        n_prefix = 1
    x = x + (sd["pos_embed"] if pos_embed is None else pos_embed)
    if "norm_pre.weight" in sd:
        x = _ln(sd, "norm_pre", x, eps)
    depth = sum(1 for k in sd if k.endswith(".attn.qkv.weight"))
    for i in range(depth):
        b = f"blocks.{i}."
        x = x + _attention(sd, b + "attn.", _ln(sd, b + "norm1", x, eps), num_heads)
        h = F.gelu(
            F.linear(_ln(sd, b + "norm2", x, eps), sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])
        )
        x = x + F.linear(h, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
    if "norm.weight" in sd:
        x = _ln(sd, "norm", x, eps)
    x = x[:, 0] if global_pool == "token" else x[:, n_prefix:].mean(dim=1)
    if "fc_norm.weight" in sd:
        x = _ln(sd, "fc_norm", x, eps)
    return F.linear(x, sd["head.weight"], sd["head.bias"])


def timm_config_json(folder: Path, architecture: str, **model_args) -> Path:
    """timm's config.json (as ``save_for_hf`` writes it) in ``folder``."""
    data = {
        "architecture": architecture,
        "num_classes": 5,
        "pretrained_cfg": {"input_size": [3, 32, 32], "interpolation": "bicubic"},
    }
    if model_args:
        data["model_args"] = model_args
    path = folder / "config.json"
    path.write_text(json.dumps(data))
    return path


def hf_config_json(folder: Path, **fields) -> Path:
    """A Hugging Face transformers ViTConfig config.json in ``folder``."""
    data = {"model_type": "vit", "hidden_act": "gelu", "qkv_bias": True} | fields
    path = folder / "config.json"
    path.write_text(json.dumps(data))
    return path
