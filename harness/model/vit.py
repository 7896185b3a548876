"""The Vision Transformer every stage of vitbench shares.

Written after timm's ``vision_transformer.py`` so that its state-dict names are the ones the
field knows (patch_embed.proj, cls_token, pos_embed, blocks.N.norm1 / attn.qkv / attn.proj /
norm2 / mlp.fc1 / mlp.fc2, norm, head) and real timm or DeiT checkpoints load unchanged.
timm's variants that medical models use are here too, under timm's names: no class token
(``class_token=False``), average pooling of the patch tokens (``global_pool="avg"``), the final
norm after pooling (``fc_norm``, MAE / RETFound) and a norm before the blocks (``norm_pre``,
CLIP image towers). A plain ViT builds exactly the modules it always had.

Two differences from timm, both on purpose:

* each block has its own number of heads and its own MLP width (what pruning produces);
* attention is explicit matmul + softmax, never a fused SDPA kernel, so every exporter lowers
  it to plain operators, and the attention probabilities can be handed back for distillation
  (``return_attention=True``) without changing the graph that ``forward(x)`` exports.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.model.config import ViTConfig


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # B, D, H/P, W/P
        return x.flatten(2).transpose(1, 2)  # B, N, D


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        inner = num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim)

    def forward(
        self, x: torch.Tensor, head_gate: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # B, h, T, hd
        attn = torch.matmul(q * self.scale, k.transpose(-2, -1))
        attn = torch.softmax(attn, dim=-1)
        out = torch.matmul(attn, v)  # B, h, T, hd
        if head_gate is not None:
            # One scalar per head: 0 removes the head, 1 keeps it, and its gradient is the
            # head's importance (Michel et al., 2019).
            out = out * head_gate.view(1, -1, 1, 1)
        out = out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)
        return self.proj(out), attn


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(
        self, dim: int, num_heads: int, head_dim: int, mlp_dim: int, qkv_bias: bool, eps: float
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, head_dim, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(
        self, x: torch.Tensor, head_gate: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y, attn = self.attn(self.norm1(x), head_gate)
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x, attn


class VisionTransformer(nn.Module):
    """ViT with learned position embeddings and per-block widths; a class token unless the
    config says otherwise."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        d, eps = config.embed_dim, config.norm_eps
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if config.class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens, d))
        self.norm_pre = nn.LayerNorm(d, eps=eps) if config.pre_norm else None
        self.blocks = nn.ModuleList(
            Block(d, h, config.head_dim, m, config.qkv_bias, eps)
            for h, m in zip(config.num_heads, config.mlp_dims, strict=False)
        )
        # one final norm: before pooling (`norm`, timm's default) or after it (`fc_norm`)
        self.norm = None if config.fc_norm else nn.LayerNorm(d, eps=eps)
        self.fc_norm = nn.LayerNorm(d, eps=eps) if config.fc_norm else None
        self.head = nn.Linear(d, config.num_classes)

    def forward(
        self,
        x: torch.Tensor,
        return_attention: bool = False,
        head_gates: list[torch.Tensor] | None = None,
    ):
        """Logits for a batch of images (B, C, H, W).

        With ``return_attention=True`` also the attention probabilities of every block, each
        (B, heads of that block, tokens, tokens). ``head_gates`` (one 1-D tensor per block)
        scale each head's output; pruning uses their gradients.
        """
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        if self.norm_pre is not None:
            x = self.norm_pre(x)
        maps = []
        for i, block in enumerate(self.blocks):
            x, attn = block(x, None if head_gates is None else head_gates[i])
            if return_attention:
                maps.append(attn)
        logits = self.head(self.pool(x))
        if return_attention:
            return logits, maps
        return logits

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The features the head reads, from the last block's tokens (B, T, D) -> (B, D)."""
        if self.norm is not None:
            x = self.norm(x)
        if self.config.global_pool == "token":
            x = x[:, 0]
        else:  # "avg": the mean of the patch tokens, the class token left out (as timm)
            n = self.config.num_prefix_tokens
            x = (x[:, n:] if n else x).mean(dim=1)  # no full-range slice: Core ML has no alias
        if self.fc_norm is not None:
            x = self.fc_norm(x)
        return x

    @torch.no_grad()
    def init_weights(self, seed: int) -> VisionTransformer:
        """Deterministic initialisation (timm's scheme) from ``seed``: the same config and
        seed give bit-identical weights on every machine."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif ".norm" in name or name.startswith(("norm.", "norm_pre.", "fc_norm.")):
                p.fill_(1.0)
            elif name == "cls_token":
                nn.init.normal_(p, std=1e-6, generator=g)
            else:  # pos_embed, linear and conv weights
                nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04, generator=g)
        return self


def build_model(config: ViTConfig, init: bool = True) -> VisionTransformer:
    """Build the model without paying for PyTorch's default initialisation.

    ``init=True`` fills it from ``config.seed``; ``init=False`` leaves it uninitialised for a
    state dict to be loaded into.
    """
    with torch.device("meta"):
        model = VisionTransformer(config)
    model = model.to_empty(device="cpu")
    if init:
        model.init_weights(config.seed)
    return model.eval()
