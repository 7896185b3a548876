from __future__ import annotations

import pytest
import torch

from harness.compress.prune import compute_importance, prune, prune_to, select_keep
from harness.model import build_model, count_params
from tests.support.models import small_config


def _zeroed(model, keep_heads, keep_neurons):
    """The same model with the pruned heads' value rows and the pruned neurons' fc1 rows
    zeroed: their outputs are exactly zero, as if removed."""
    ref = build_model(model.config, init=False)
    ref.load_state_dict(model.state_dict())
    hd = model.config.head_dim
    with torch.no_grad():
        for i, block in enumerate(ref.blocks):
            h = model.config.num_heads[i]
            for j in range(h):
                if j not in keep_heads[i]:
                    block.attn.proj.weight[:, j * hd : (j + 1) * hd] = 0
            for j in range(model.config.mlp_dims[i]):
                if j not in keep_neurons[i]:
                    block.mlp.fc2.weight[:, j] = 0
    return ref


def test_pruning_equals_zeroing_the_pruned_heads_and_neurons():
    cfg = small_config(seed=3)
    model = build_model(cfg)
    # make biases non-zero so a wrong row/column choice would show
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    keep_heads = [[1], [0, 2], [0]]
    keep_neurons = [list(range(0, 128, 3)), [5, 7, 63], list(range(32))[::2]]
    small = prune(model, keep_heads, keep_neurons)
    x = torch.randn(4, 3, 32, 32)
    ref = _zeroed(model, keep_heads, keep_neurons)
    with torch.no_grad():
        assert torch.allclose(small(x), ref(x), atol=1e-5)
        assert not torch.allclose(small(x), model(x), atol=1e-3)
    assert small.config.num_heads == (1, 2, 1)
    assert small.config.mlp_dims == (43, 3, 16)
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small == count_params(small.config) < count_params(cfg)
    assert small.blocks[1].attn.qkv.weight.shape == (3 * 2 * 16, 64)
    assert small.blocks[1].mlp.fc2.weight.shape == (64, 3)
    # the input model is untouched
    assert (
        model.config.num_heads == (2, 4, 1)
        and model.blocks[1].attn.qkv.weight.shape[0] == 3 * 4 * 16
    )


def test_head_gate_gradient_ranks_a_dead_head_last():
    cfg = small_config(num_heads=(4, 4, 4), seed=1)
    model = build_model(cfg)
    with torch.no_grad():  # block 1, head 2 contributes nothing
        model.blocks[1].attn.proj.weight[:, 2 * 16 : 3 * 16] = 0
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,))
    imp = compute_importance(model, [(x, y)], torch.nn.functional.cross_entropy)
    assert imp.heads[1][2] == 0 and (imp.heads[1][[0, 1, 3]] > 0).all()
    keep = select_keep(imp.heads, 1)
    assert keep[1] == [0, 1, 3] and keep[0] == [0, 1, 2, 3]
    assert all(len(n) == m for n, m in zip(imp.neurons, cfg.mlp_dims, strict=True))


def test_select_keep_ranks_across_layers_and_keeps_one_per_layer():
    scores = [torch.tensor([1.0, 0.0, 0.0]), torch.tensor([5.0, 4.0]), torch.tensor([0.1])]
    keep = select_keep(scores, 10)
    assert [len(k) for k in keep] == [1, 1, 1]
    assert keep[0] == [0] and keep[1] == [0]


@pytest.mark.parametrize("method", ["taylor", "magnitude"])
def test_prune_to_reaches_the_target_parameter_count(method):
    cfg = small_config(num_heads=(4, 4, 4), mlp_dims=(128, 128, 128))
    model = build_model(cfg)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,))
    imp = compute_importance(
        model, [(x, y)], torch.nn.functional.cross_entropy, neuron_method=method
    )
    target = count_params(cfg) // 2
    small, kh, kn = prune_to(model, imp, target)
    n = count_params(small.config)
    assert n <= target and n > target * 0.9
    assert small.config.num_heads == tuple(map(len, kh)) and small.config.mlp_dims == tuple(
        map(len, kn)
    )
