"""Structured pruning: whole attention heads and whole MLP neurons.

Importance comes from gradients on held-out batches: a head's is |d loss / d gate| of a gate
scaling its output (Michel et al., 2019), a neuron's is the first-order Taylor term
|sum w * dL/dw| over its fc1 row and fc2 column (or the weight magnitude). Units are ranked
across all layers after normalising each layer's scores, so every layer keeps its own number
(at least one). :func:`prune` returns a new, smaller model with dense matrices: qkv rows and
proj columns of removed heads, fc1 rows and fc2 columns of removed neurons are gone. The
input model is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from harness.model.config import ViTConfig, count_params
from harness.model.vit import VisionTransformer, build_model


@dataclass(frozen=True)
class Importance:
    heads: list[torch.Tensor]  # per block, one score per head
    neurons: list[torch.Tensor]  # per block, one score per MLP neuron


def compute_importance(
    model: VisionTransformer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    neuron_method: str = "taylor",
) -> Importance:
    """Head and neuron importance from gradients of ``loss_fn(model(x), y)`` over ``batches``."""
    if neuron_method not in ("taylor", "magnitude"):
        raise ValueError(f"unknown neuron importance {neuron_method!r}; use taylor or magnitude")
    cfg = model.config
    was_training = model.training
    model.eval()
    gates = [torch.ones(h, requires_grad=True) for h in cfg.num_heads]
    heads = [torch.zeros(h) for h in cfg.num_heads]
    neurons = [torch.zeros(m) for m in cfg.mlp_dims]
    model.zero_grad(set_to_none=True)
    seen = 0
    for x, y in batches:
        for g in gates:
            g.grad = None
        loss = loss_fn(model(x, head_gates=gates), y)
        loss.backward()
        for i, g in enumerate(gates):
            heads[i] += g.grad.abs()
        seen += 1
        if neuron_method == "taylor":
            for i, block in enumerate(model.blocks):
                fc1, fc2 = block.mlp.fc1, block.mlp.fc2
                neurons[i] += (
                    (
                        (fc1.weight * fc1.weight.grad).sum(1)
                        + fc1.bias * fc1.bias.grad
                        + (fc2.weight * fc2.weight.grad).sum(0)
                    )
                    .detach()
                    .abs()
                )
            model.zero_grad(set_to_none=True)
    if seen == 0:
        raise ValueError("no batches to compute importance on")
    if neuron_method == "magnitude":
        for i, block in enumerate(model.blocks):
            neurons[i] = block.mlp.fc1.weight.detach().norm(
                dim=1
            ) * block.mlp.fc2.weight.detach().norm(dim=0)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return Importance(heads, neurons)


def _normalised(scores: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    # Michel et al. normalise each layer's importance by its L2 norm before ranking globally.
    return [s / (s.norm() + 1e-12) for s in scores]


def select_keep(scores: Sequence[torch.Tensor], n_remove: int) -> list[list[int]]:
    """Indices to keep per layer after removing the ``n_remove`` least important units ranked
    across layers (each layer keeps at least one)."""
    norm = _normalised(scores)
    counts = [s.numel() for s in norm]
    order = sorted(
        ((float(v), layer, j) for layer, s in enumerate(norm) for j, v in enumerate(s.tolist()))
    )
    removed: list[set[int]] = [set() for _ in norm]
    left = n_remove
    for _, layer, j in order:
        if left <= 0:
            break
        if counts[layer] - len(removed[layer]) > 1:
            removed[layer].add(j)
            left -= 1
    return [
        [j for j in range(counts[layer]) if j not in removed[layer]] for layer in range(len(norm))
    ]


def prune(
    model: VisionTransformer,
    keep_heads: Sequence[Sequence[int]] | None = None,
    keep_neurons: Sequence[Sequence[int]] | None = None,
) -> VisionTransformer:
    """A new model keeping heads ``keep_heads[i]`` and MLP neurons ``keep_neurons[i]`` of
    block i (None keeps all); its config records the new widths."""
    cfg = model.config
    depth = cfg.depth
    keep_heads = (
        [list(range(h)) for h in cfg.num_heads]
        if keep_heads is None
        else [sorted(k) for k in keep_heads]
    )
    keep_neurons = (
        [list(range(m)) for m in cfg.mlp_dims]
        if keep_neurons is None
        else [sorted(k) for k in keep_neurons]
    )
    if len(keep_heads) != depth or len(keep_neurons) != depth:
        raise ValueError(f"need one keep list per block ({depth})")
    for i in range(depth):
        if not keep_heads[i] or not keep_neurons[i]:
            raise ValueError(f"block {i} must keep at least one head and one neuron")
        if max(keep_heads[i]) >= cfg.num_heads[i] or max(keep_neurons[i]) >= cfg.mlp_dims[i]:
            raise ValueError(f"block {i}: keep index out of range")
    new_cfg = cfg.replace(  # a pruned model needs its own operating point: the old one is dropped
        num_heads=tuple(len(k) for k in keep_heads),
        mlp_dims=tuple(len(k) for k in keep_neurons),
        decision_threshold=None,
        threshold_rule="",
    )
    new = build_model(new_cfg, init=False)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    hd, inner_of = cfg.head_dim, cfg.num_heads
    for i in range(depth):
        heads = torch.tensor(keep_heads[i])
        cols = (heads[:, None] * hd + torch.arange(hd)[None, :]).reshape(-1)  # within one of q/k/v
        rows = torch.cat([cols + s * inner_of[i] * hd for s in range(3)])
        p = f"blocks.{i}."
        state[p + "attn.qkv.weight"] = state[p + "attn.qkv.weight"][rows]
        if p + "attn.qkv.bias" in state:
            state[p + "attn.qkv.bias"] = state[p + "attn.qkv.bias"][rows]
        state[p + "attn.proj.weight"] = state[p + "attn.proj.weight"][:, cols]
        neurons = torch.tensor(keep_neurons[i])
        state[p + "mlp.fc1.weight"] = state[p + "mlp.fc1.weight"][neurons]
        state[p + "mlp.fc1.bias"] = state[p + "mlp.fc1.bias"][neurons]
        state[p + "mlp.fc2.weight"] = state[p + "mlp.fc2.weight"][:, neurons]
    new.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True)
    return new.train(model.training)


def params_after(cfg: ViTConfig, head_fraction: float, neuron_fraction: float) -> int:
    """Parameters left if each block keeps the given fractions of heads and neurons."""
    return count_params(
        cfg.replace(
            num_heads=tuple(max(1, round(h * head_fraction)) for h in cfg.num_heads),
            mlp_dims=tuple(max(1, round(m * neuron_fraction)) for m in cfg.mlp_dims),
        )
    )


def min_params(cfg: ViTConfig) -> int:
    """The smallest model pruning can reach: one head and one neuron per block."""
    return count_params(cfg.replace(num_heads=(1,) * cfg.depth, mlp_dims=(1,) * cfg.depth))


def prune_to(
    model: VisionTransformer, importance: Importance, target_params: int
) -> tuple[VisionTransformer, list[list[int]], list[list[int]]]:
    """Remove the least important heads and neurons, the same fraction of each kind, until
    the model has at most ``target_params`` parameters (or one of each per block is left).
    Returns the pruned model and the kept head and neuron indices per block."""
    cfg = model.config
    total_h, total_m = sum(cfg.num_heads), sum(cfg.mlp_dims)
    lo, hi = 0.0, 1.0  # fraction removed
    for _ in range(40):
        mid = (lo + hi) / 2
        kh = select_keep(importance.heads, round(mid * total_h))
        kn = select_keep(importance.neurons, round(mid * total_m))
        n = count_params(cfg.replace(num_heads=tuple(map(len, kh)), mlp_dims=tuple(map(len, kn))))
        if n > target_params:
            lo = mid
        else:
            hi = mid
    kh = select_keep(importance.heads, round(hi * total_h))
    kn = select_keep(importance.neurons, round(hi * total_m))
    return prune(model, kh, kn), kh, kn
