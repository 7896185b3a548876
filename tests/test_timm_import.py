"""timm imports are right or refused, never silently wrong: head counts from timm's
architecture table or a config.json beside the weights (a guess only with a warning), the
variants medical models use (average pooling with fc_norm, no class token, norm_pre) checked
against an independent forward pass, every other variant named in one line, and --img-size
resampling the position embeddings as timm does."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors.torch import save_file

from harness.artifact import ExportSpec
from harness.cli import main
from harness.errors import CheckpointError, UserError
from harness.export import export_artifact
from harness.model import (
    ImportGuessWarning,
    VisionTransformer,
    ViTConfig,
    build_model,
    import_timm,
    infer_config,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from harness.model.architectures import heads_from_table
from tests.support.cli import assert_one_line_error
from tests.support.models import small_config
from tests.support.timm_variants import (
    hf_config_json,
    timm_config_json,
    variant_forward,
    variant_state_dict,
)

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def _save(tmp_path, sd, name="model.safetensors"):
    path = tmp_path / name
    if path.suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    return path


def _logits(model, x=X):
    with torch.no_grad():
        return model(x)


def _no_warnings():
    return warnings.catch_warnings(record=True)


# -- the head count --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "width, depth, patch, class_token, heads",
    [
        (192, 12, 16, True, 3),  # vit_tiny / deit_tiny
        (384, 12, 16, True, 6),  # vit_small / deit_small
        (768, 12, 16, True, 12),  # vit_base / deit_base
        (1024, 24, 16, True, 16),  # vit_large (MAE, RETFound)
        (1280, 32, 14, True, 16),  # vit_huge_patch14: head dim 80
        (1408, 40, 14, True, 16),  # vit_giant_patch14: head dim 88
        (1664, 48, 14, True, 16),  # vit_gigantic_patch14: head dim 104
        (1152, 27, 14, False, 16),  # so400m SigLIP (gap): head dim 72
        (768, 12, 16, False, None),  # vit_base_patch16_gap_224 (16) vs siglip_gap (12)
        (128, 2, 8, True, None),  # no such timm ViT
    ],
)
def test_timm_architecture_table_gives_the_head_count(width, depth, patch, class_token, heads):
    assert heads_from_table(width, depth, patch, class_token) == heads


def test_vit_huge_head_dim_80_comes_from_the_architecture_table():
    # ViT-H/14's real tensor shapes, on the meta device (shapes are all the import reads),
    # made by a model with 20 heads of 64: the same tensors, which is why the table is needed
    wrong = small_config(
        img_size=224, patch_size=14, num_classes=1000, embed_dim=1280, head_dim=64,
        num_heads=(20,) * 32, mlp_dims=(5120,) * 32,
    )  # fmt: skip
    with torch.device("meta"):
        sd = VisionTransformer(wrong).state_dict()
    with _no_warnings() as caught:
        warnings.simplefilter("always")
        cfg = infer_config(sd, "vit_huge_patch14_224.safetensors")
    assert not caught, [str(w.message) for w in caught]
    assert cfg.head_dim == 80 and cfg.num_heads == (16,) * 32  # not 1280 / 64 = 20
    assert cfg.img_size == 224 and cfg.patch_size == 14 and cfg.mlp_dims == (5120,) * 32


@pytest.mark.parametrize(
    "write_config",
    [
        lambda folder: timm_config_json(folder, "vit_custom_patch8", num_heads=4),
        lambda folder: hf_config_json(
            folder,
            num_attention_heads=4,
            hidden_size=96,
            num_hidden_layers=2,
            patch_size=8,
            image_size=32,
            layer_norm_eps=1e-6,
        ),
    ],
    ids=["timm", "hugging-face"],
)
def test_head_dim_24_comes_from_the_config_json_beside_the_weights(tmp_path, write_config):
    sd = variant_state_dict(width=96)  # 4 heads of 24: the guess (64) would not even divide
    path = _save(tmp_path, sd)
    write_config(tmp_path)
    with _no_warnings() as caught:
        warnings.simplefilter("always")
        model = import_timm(path)
    assert not [w for w in caught if issubclass(w.category, ImportGuessWarning)]
    assert model.config.head_dim == 24 and model.config.num_heads == (4, 4)
    out = _logits(model)
    torch.testing.assert_close(out, variant_forward(sd, X, num_heads=4), rtol=0, atol=1e-5)
    # the test can tell: the same weights read with 2 heads give other logits
    assert (out - variant_forward(sd, X, num_heads=2)).abs().max() > 1e-3


def test_config_json_wins_over_the_architecture_table(tmp_path):
    # vit_tiny's shape (3 heads in timm); a milder attention keeps 12 blocks well conditioned
    sd = variant_state_dict(width=192, depth=12, mlp=768, classes=4, attn_std=0.08)
    path = _save(tmp_path, sd)
    timm_config_json(tmp_path, "vit_tiny_variant", num_heads=6)
    model = import_timm(path)
    assert model.config.num_heads == (6,) * 12 and model.config.head_dim == 32
    torch.testing.assert_close(_logits(model), variant_forward(sd, X, 6), rtol=0, atol=1e-5)


def test_explicit_heads_win_over_the_config_json(tmp_path):
    sd = variant_state_dict(width=96)
    path = _save(tmp_path, sd)
    timm_config_json(tmp_path, "vit_custom_patch8", num_heads=4)
    assert load_model(path, head_dim=48).config.num_heads == (2, 2)
    assert load_model(path, num_heads=3).config.head_dim == 32
    torch.testing.assert_close(
        _logits(load_model(path, num_heads=3)), variant_forward(sd, X, 3), rtol=0, atol=1e-5
    )


def test_unknown_shape_guesses_64_per_head_and_says_how_to_give_it(tmp_path):
    path = _save(tmp_path, variant_state_dict(width=128, mlp=256))
    with pytest.warns(ImportGuessWarning, match="head count is a guess") as caught:
        model = import_timm(path)
    assert model.config.num_heads == (2, 2)
    message = str(caught[0].message)
    assert "--head-dim" in message and "config.json" in message and "width 128" in message
    with _no_warnings() as quiet:
        warnings.simplefilter("always")
        assert import_timm(path, head_dim=32).config.num_heads == (4, 4)
    assert not quiet


def test_the_cli_shows_the_guess_as_one_warning_line(tmp_path):
    """vitbench's own warnings reach the terminal (third-party ones only the log)."""
    import os
    import subprocess
    import sys

    path = _save(tmp_path, variant_state_dict(width=128, mlp=256))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VITBENCH_LOG": str(tmp_path / "log")},
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith("warning: ") and "head count is a guess" in line
    assert "ImportGuessWarning" in (tmp_path / "log").read_text()  # and it is in the log


def test_ambiguous_timm_shape_warns_with_both_definitions(tmp_path):
    sd = variant_state_dict(width=768, depth=12, mlp=64, patch=16, class_token=False)
    path = _save(tmp_path, sd)
    with pytest.warns(ImportGuessWarning, match="vit_base_patch16_gap_224"):
        assert import_timm(path).config.num_heads == (12,) * 12


def test_width_the_guess_cannot_divide_is_one_line_error(tmp_path):
    path = _save(tmp_path, variant_state_dict(width=96), "w96.pth")
    assert_one_line_error(*_run("info", str(path)), "head_dim 64", "--head-dim")
    code, out = _run("info", str(path), "--head-dim", "24", "--json")
    assert code == 0 and json.loads(out)["num_heads"] == [4, 4], out


def test_config_json_that_disagrees_with_the_weights_is_refused(tmp_path):
    path = _save(tmp_path, variant_state_dict(width=96))
    hf_config_json(tmp_path, num_attention_heads=4, hidden_size=64, patch_size=8)
    with pytest.raises(CheckpointError, match="gives width 64 but the weights .* have 96"):
        import_timm(path)


# -- supported variants, against timm's semantics ---------------------------------------------


@pytest.mark.parametrize(
    "variant, pool",
    [
        (dict(fc_norm=True), "avg"),  # MAE / RETFound fine-tuned: mean of patches, fc_norm
        (dict(class_token=False), "avg"),  # vit_*_gap_*: no class token, norm, then mean
        (dict(class_token=False, fc_norm=True), "avg"),
        (dict(), "token"),
    ],
    ids=["mae-fc-norm", "no-class-token", "no-class-token-fc-norm", "plain"],
)
def test_pooling_variants_match_timm_semantics(tmp_path, variant, pool):
    sd = variant_state_dict(width=128, **variant)
    path = _save(tmp_path, sd)
    model = import_timm(path, head_dim=32)
    cfg = model.config
    assert (cfg.global_pool, cfg.fc_norm) == (pool, variant.get("fc_norm", False))
    assert cfg.class_token == variant.get("class_token", True)
    ref = variant_forward(sd, X, num_heads=4, global_pool=pool)
    torch.testing.assert_close(_logits(model), ref, rtol=0, atol=1e-5)
    # and through vitbench's own format: the variant is in config.json
    save_checkpoint(model, tmp_path / "own")
    assert torch.equal(_logits(load_checkpoint(tmp_path / "own")), _logits(model))


def test_config_json_global_pool_decides_the_pooling(tmp_path):
    sd = variant_state_dict(width=128)  # class token + norm: timm's default is 'token'
    path = _save(tmp_path, sd)
    timm_config_json(tmp_path, "vit_custom", num_heads=4, global_pool="avg")
    model = import_timm(path)
    assert model.config.global_pool == "avg" and not model.config.fc_norm
    ref = variant_forward(sd, X, num_heads=4, global_pool="avg")
    torch.testing.assert_close(_logits(model), ref, rtol=0, atol=1e-5)


def test_clip_style_norm_pre_with_timm_config_uses_clip_eps(tmp_path):
    sd = variant_state_dict(width=128, pre_norm=True)  # no patch bias, as timm builds it
    path = _save(tmp_path, sd)
    timm_config_json(tmp_path, "vit_medium_patch8_clip_32", num_heads=4)
    with _no_warnings() as caught:
        warnings.simplefilter("always")
        model = import_timm(path)
    assert not [w for w in caught if issubclass(w.category, ImportGuessWarning)]
    assert model.config.pre_norm and model.config.norm_eps == 1e-5
    ref = variant_forward(sd, X, num_heads=4, eps=1e-5)
    torch.testing.assert_close(_logits(model), ref, rtol=0, atol=1e-5)


def test_norm_pre_without_config_json_warns_what_it_assumed(tmp_path):
    sd = variant_state_dict(width=128, pre_norm=True)
    path = _save(tmp_path, sd)
    with pytest.warns(ImportGuessWarning, match="QuickGELU"):
        model = import_timm(path, head_dim=32)
    assert model.config.norm_eps == 1e-5
    torch.testing.assert_close(
        _logits(model), variant_forward(sd, X, 4, eps=1e-5), rtol=0, atol=1e-5
    )


def test_plain_config_json_has_no_variant_fields_and_old_files_load():
    cfg = small_config()
    data = cfg.to_dict()
    assert not {"class_token", "global_pool", "fc_norm", "pre_norm"} & set(data)
    assert ViTConfig.from_dict(data) == cfg
    variant = cfg.replace(class_token=False, global_pool="avg", fc_norm=True, pre_norm=True)
    assert ViTConfig.from_dict(json.loads(variant.to_json())) == variant
    with pytest.raises(UserError, match="needs a class token"):
        cfg.replace(class_token=False)


@pytest.mark.parametrize(
    "fmt, precision",
    [
        ("onnx", "fp32"),
        ("coreml", "fp16"),
        pytest.param("executorch", "fp32", marks=pytest.mark.slow),
        pytest.param("pt2", "fp32", marks=pytest.mark.slow),
    ],
)
def test_variant_model_lowers_with_the_exporters(tmp_path, monkeypatch, fmt, precision):
    # every variant path at once; a mean over all tokens once lowered to Core ML's missing
    # `alias` (a full-range slice), so no slice is made without a class token
    monkeypatch.setenv("VITBENCH_CACHE", str(tmp_path / "cache"))
    variant = dict(class_token=False, global_pool="avg", fc_norm=True, pre_norm=True)
    model = build_model(small_config(img_size=16, num_heads=(2,), mlp_dims=(32,), **variant))
    art = export_artifact(model, ExportSpec(fmt, precision=precision))
    status = art.manifest["parity"]["status"]
    assert status == ("pending" if fmt == "coreml" else "passed"), art.manifest["parity"]


# -- named refusals --------------------------------------------------------------------------


def _run(*args):
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def _with(**changes):
    def edit(sd):
        for k, v in changes.items():
            if v is None:
                sd.pop(k)
            else:
                sd[k] = v
        return sd

    return edit


def _rename(old, new):
    return lambda sd: {k.replace(old, new): v for k, v in sd.items()}


def _no_cls_row(sd):
    sd["pos_embed"] = sd["pos_embed"][:, 1:]
    return sd


W = 128
UNSUPPORTED = {
    "distilled": (_with(dist_token=torch.zeros(1, 1, W)), "distilled DeiT"),
    "registers": (_with(reg_token=torch.zeros(1, 4, W)), "register tokens"),
    "layer-scale": (_with(**{"blocks.0.ls1.gamma": torch.ones(W)}), "layer scale"),
    "qk-norm": (_with(**{"blocks.1.attn.q_norm.weight": torch.ones(32)}), "QK normalisation"),
    "map-pool": (_with(**{"attn_pool.latent": torch.zeros(1, 1, W)}), "attention pooling"),
    "swiglu": (_rename("mlp.fc1.", "mlp.fc1_g."), "SwiGLU"),
    "no-embed-class": (_no_cls_row, "no_embed_class"),
    "rms-norm": (_with(**{"norm.bias": None}), "RMSNorm"),
    "no-final-norm": (_with(**{"norm.weight": None, "norm.bias": None}), "no final norm"),
    "mae-decoder": (_with(mask_token=torch.zeros(1, 1, W)), "MAE pretraining"),
    "no-pos-embed": (_with(pos_embed=None), "without learned position embeddings"),
    "proj-no-bias": (_with(**{"blocks.0.attn.proj.bias": None}), "without bias"),
    "hugging-face": (_rename("blocks.", "vit.encoder.layer."), "Hugging Face"),
}


@pytest.mark.parametrize("edit, named", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unsupported_variant_is_named_in_one_line(tmp_path, edit, named):
    path = _save(tmp_path, edit(variant_state_dict(width=W)), "variant.pth")
    code, out = _run("info", str(path), "--head-dim", "32")
    assert_one_line_error(code, out, named, "is not supported")
    assert "missing" not in out and "unexpected key" not in out


@pytest.mark.parametrize(
    "architecture, model_args, named",
    [
        ("vit_base_patch16_clip_quickgelu_224", {}, "quick_gelu"),
        ("vit_so400m_patch16_siglip_gap_256", {}, "gelu_tanh"),
        ("vit_custom", {"act_layer": "silu"}, "silu"),
        ("vit_custom", {"reg_tokens": 4}, "register tokens"),
        ("vit_custom", {"init_values": 1e-5}, "layer scale"),
        ("vit_custom", {"global_pool": "map"}, "global_pool 'map'"),
        ("vit_base_patch16_rpn_224", {}, "residual post-norm"),
    ],
)
def test_variant_named_by_the_config_json_is_refused(tmp_path, architecture, model_args, named):
    path = _save(tmp_path, variant_state_dict(width=W))
    timm_config_json(tmp_path, architecture, num_heads=4, **model_args)
    assert_one_line_error(*_run("info", str(path)), named, "is not supported", "config.json")


# -- --img-size: position embeddings resampled as timm does -----------------------------------


def _bicubic(pos, prefix, old, new):
    """timm.layers.resample_abs_pos_embed, independently: the grid as an image."""
    grid = pos[:, prefix:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", antialias=True, align_corners=False)
    return torch.cat([pos[:, :prefix], grid.permute(0, 2, 3, 1).reshape(1, new * new, -1)], 1)


@pytest.mark.parametrize("class_token", [True, False])
@pytest.mark.parametrize("new_size", [48, 16])
def test_img_size_resamples_pos_embed_bicubically(tmp_path, class_token, new_size):
    sd = variant_state_dict(width=W, class_token=class_token)
    path = _save(tmp_path, sd, "w.pth")
    model = load_model(path, img_size=new_size, head_dim=32)
    prefix = 1 if class_token else 0
    expected = _bicubic(sd["pos_embed"], prefix, 4, new_size // 8)
    assert model.config.img_size == new_size and model.pos_embed.shape == expected.shape
    torch.testing.assert_close(model.pos_embed.data, expected, rtol=0, atol=1e-6)
    if class_token:
        assert torch.equal(model.pos_embed.data[:, 0], sd["pos_embed"][:, 0])  # cls untouched
    x = torch.randn(2, 3, new_size, new_size, generator=torch.Generator().manual_seed(5))
    pool = "token" if class_token else "avg"
    ref = variant_forward(sd, x, 4, global_pool=pool, pos_embed=expected)
    torch.testing.assert_close(_logits(model, x), ref, rtol=0, atol=1e-5)


def test_img_size_on_a_checkpoint_folder_resamples_and_other_overrides_are_refused(tmp_path):
    model = import_timm(_save(tmp_path, variant_state_dict(width=W)), head_dim=32)
    folder = save_checkpoint(model, tmp_path / "own")
    bigger = load_model(folder, img_size=64)
    expected = _bicubic(model.pos_embed.data, 1, 4, 8)
    torch.testing.assert_close(bigger.pos_embed.data, expected, rtol=0, atol=1e-6)
    assert _logits(bigger, torch.zeros(1, 3, 64, 64)).shape == (1, 5)
    with pytest.raises(UserError, match="num_classes"):
        load_model(folder, num_classes=3)
    code, out = _run("info", str(folder), "--img-size", "64", "--json")
    assert code == 0 and json.loads(out)["img_size"] == 64, out


def test_img_size_that_is_not_a_multiple_of_the_patch_is_one_line_error(tmp_path):
    path = _save(tmp_path, variant_state_dict(width=W), "w.pth")
    assert_one_line_error(
        *_run("info", str(path), "--head-dim", "32", "--img-size", "36"), "not a multiple"
    )
