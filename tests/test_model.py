from __future__ import annotations

import pytest
import torch

from harness.errors import ConfigError
from harness.model import build_model, count_macs, count_params, preset_config, preset_names
from harness.model.config import ViTConfig
from tests.support.models import small_config

# Figures from the issue: teacher ~304M, base ~86M, lite ~37-38M (~150 MB), tiny ~5.7M.
EXPECTED_M = {
    "vit-large-16": (304, 304),
    "vit-base-16": (86, 86),
    "lite": (37, 38),
    "tiny": (5.7, 5.7),
}


@pytest.mark.parametrize("name", list(EXPECTED_M))
def test_preset_param_counts_match_the_published_figures(name):
    lo, hi = EXPECTED_M[name]
    params = count_params(preset_config(name)) / 1e6
    assert lo * 0.98 <= params <= hi * 1.02, params


def test_presets_listed_are_the_four():
    assert preset_names() == ["vit-large-16", "vit-base-16", "lite", "tiny", "xray-small"]


def test_analytic_param_count_equals_the_built_model(small_cfg):
    model = build_model(small_cfg)
    assert count_params(small_cfg) == sum(p.numel() for p in model.parameters())
    tiny = build_model(preset_config("tiny"))
    assert count_params(tiny.config) == sum(p.numel() for p in tiny.parameters())


def test_macs_of_vit_base_match_the_literature():
    # timm reports 17.6 GMACs for vit_base_patch16_224.
    assert abs(count_macs(preset_config("vit-base-16")) / 1e9 - 17.6) < 0.1


def test_preset_weights_are_deterministic():
    a = build_model(preset_config("tiny")).state_dict()
    b = build_model(preset_config("tiny")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = build_model(preset_config("tiny", seed=1)).state_dict()
    assert not torch.equal(a["blocks.0.attn.qkv.weight"], c["blocks.0.attn.qkv.weight"])


def test_attention_maps_have_per_block_heads_and_rows_sum_to_one(small_cfg):
    model = build_model(small_cfg)
    x = torch.randn(3, 3, 32, 32)
    logits, maps = model(x, return_attention=True)
    assert logits.shape == (3, 5)
    tokens = small_cfg.num_tokens
    assert [tuple(m.shape) for m in maps] == [(3, h, tokens, tokens) for h in small_cfg.num_heads]
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:-1]))
    # The attention return does not change the logits.
    assert torch.equal(model(x), logits)


def test_head_gate_of_zero_equals_removing_nothing_else(small_cfg):
    model = build_model(small_cfg)
    x = torch.randn(2, 3, 32, 32)
    ones = [torch.ones(h) for h in small_cfg.num_heads]
    assert torch.allclose(model(x, head_gates=ones), model(x))
    gates = [torch.ones(h) for h in small_cfg.num_heads]
    gates[1][2] = 0
    assert not torch.allclose(model(x, head_gates=gates), model(x))


def test_single_channel_input(small_cfg):
    model = build_model(small_cfg.replace(in_chans=1))
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(img_size=30), "not a multiple of patch_size"),
        (dict(num_heads=(1, 2)), "num_heads has 2 blocks but mlp_dims has 3"),
        (dict(num_heads=(1, 0, 1)), "at least one head"),
        (dict(task="regression"), "task must be one of"),
        (dict(embed_dim=0), "embed_dim must be a positive integer"),
        (dict(labels=("a", "b")), "2 labels given for 5 classes"),
    ],
)
def test_invalid_configs_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        small_config(**change)


def test_config_json_round_trip(small_cfg):
    import json

    assert ViTConfig.from_dict(json.loads(small_cfg.to_json())) == small_cfg
