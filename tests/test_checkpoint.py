from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from harness.cli import main
from harness.errors import CheckpointError
from harness.model import build_model, import_timm, load_checkpoint, load_model, save_checkpoint
from tests.support.cli import assert_one_line_error
from tests.support.timm_reference import TIMM_SHAPES, timm_forward, timm_state_dict


def test_save_load_round_trip_is_bit_exact(tmp_path, small_cfg):
    model = build_model(small_cfg)
    save_checkpoint(model, tmp_path / "ck")
    back = load_checkpoint(tmp_path / "ck")
    assert back.config == small_cfg
    a, b = model.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), back(x))


@pytest.mark.parametrize(
    "name, suffix",
    [
        ("deit_tiny_patch16_224", ".pth"),
        ("deit_tiny_patch16_224", ".safetensors"),
        ("vit_large_patch16_224", ".safetensors"),
        pytest.param("vit_large_patch16_224", ".pth", marks=pytest.mark.slow),
    ],
)
def test_timm_checkpoint_loads_and_matches_own_format(tmp_path, name, suffix):
    sd = timm_state_dict(name)
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".pth":
        torch.save({"model": sd}, path)  # DeiT's release layout
    else:
        save_file(sd, str(path))
    imported = import_timm(path)
    d, depth, heads, mlp, img, patch, classes = TIMM_SHAPES[name]
    assert (
        imported.config.num_heads == (heads,) * depth and imported.config.mlp_dims == (mlp,) * depth
    )
    x = torch.randn(1, 3, img, img, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = imported(x)
    # Same numbers as timm's own forward pass (fused attention there, explicit here).
    torch.testing.assert_close(out, timm_forward(sd, x, heads), rtol=1e-4, atol=1e-4)
    save_checkpoint(imported, tmp_path / "own")
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "own")(x), out)
    del sd, imported


def test_import_with_new_head_and_grey_input(tmp_path):
    sd = timm_state_dict("deit_tiny_patch16_224")
    torch.save(sd, tmp_path / "deit.pth")
    m = import_timm(tmp_path / "deit.pth", num_classes=2, in_chans=1)
    assert m.config.num_classes == 2 and m.config.in_chans == 1
    torch.testing.assert_close(
        m.patch_embed.proj.weight, sd["patch_embed.proj.weight"].sum(1, keepdim=True)
    )
    assert m(torch.randn(1, 1, 224, 224)).shape == (1, 2)


def test_pickled_objects_are_never_loaded(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights-only"):
        import_timm(tmp_path / "evil.pth")


# -- bad input through the CLI: one line, exit 2, no traceback -------------------------------


def _run(*args):
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def test_unknown_preset(tmp_path):
    assert_one_line_error(*_run("info", "vit-huge"), "unknown preset 'vit-huge'", "lite", "tiny")


def test_missing_checkpoint(tmp_path):
    assert_one_line_error(*_run("info", str(tmp_path / "nothere")), "does not exist")
    assert_one_line_error(*_run("info", str(tmp_path / "nothere.pth")), "does not exist")


def test_unreadable_checkpoints(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"\x00not a zip file at all")
    assert_one_line_error(*_run("info", str(tmp_path / "junk.pth")), "junk.pth", "weights-only")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{bad")
    assert_one_line_error(
        *_run("info", str(tmp_path / "junk.safetensors")), "not a readable safetensors file"
    )
    (tmp_path / "empty").mkdir()
    assert_one_line_error(*_run("info", str(tmp_path / "empty")), "has no config.json")


def _saved(tmp_path, small_cfg):
    return save_checkpoint(build_model(small_cfg), tmp_path / "ck")


def test_state_dict_shape_mismatch_names_key_and_both_shapes(tmp_path, small_cfg):
    ck = _saved(tmp_path, small_cfg)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["mlp_dims"] = [128, 64, 48]
    (ck / "config.json").write_text(json.dumps(cfg))
    assert_one_line_error(
        *_run("info", str(ck)), "'blocks.2.mlp.fc1.weight'", "(32, 64)", "(48, 64)"
    )


def test_state_dict_missing_and_unexpected_keys(tmp_path, small_cfg):
    ck = _saved(tmp_path, small_cfg)
    from safetensors.torch import load_file

    sd = load_file(str(ck / "model.safetensors"))
    sd.pop("norm.weight")
    save_file(sd, str(ck / "model.safetensors"))
    assert_one_line_error(*_run("info", str(ck)), "'norm.weight'", "missing", "(64)")
    sd["norm.weight"] = torch.ones(64)
    sd["blocks.0.attn.q_norm.weight"] = torch.ones(16)
    save_file(sd, str(ck / "model.safetensors"))
    assert_one_line_error(
        *_run("info", str(ck)), "unexpected key 'blocks.0.attn.q_norm.weight'", "(16)"
    )


def test_config_with_unknown_or_missing_fields(tmp_path, small_cfg):
    ck = _saved(tmp_path, small_cfg)
    cfg = json.loads((ck / "config.json").read_text())
    (ck / "config.json").write_text(json.dumps(cfg | {"dropout": 0.1}))
    assert_one_line_error(*_run("info", str(ck)), "unknown field(s) dropout")
    del cfg["embed_dim"]
    (ck / "config.json").write_text(json.dumps(cfg))
    assert_one_line_error(*_run("info", str(ck)), "missing field(s) embed_dim")
    (ck / "config.json").write_text("{not json")
    assert_one_line_error(*_run("info", str(ck)), "not valid JSON")


def test_info_on_timm_file_shows_per_block_widths(tmp_path):
    torch.save(timm_state_dict("deit_tiny_patch16_224"), tmp_path / "deit.pth")
    code, out = _run("info", str(tmp_path / "deit.pth"), "--json")
    assert code == 0, out
    d = json.loads(out)
    assert (
        d["num_heads"] == [3] * 12
        and d["mlp_dims"] == [768] * 12
        and abs(d["params_m"] - 5.72) < 0.01
    )


def test_models_and_version():
    code, out = _run("models", "--json")
    assert code == 0
    names = [r["name"] for r in json.loads(out)]
    assert names == [
        "vit-large-16",
        "vit-base-16",
        "lite",
        "tiny",
        "xray-small",
        "xray-teacher",
    ] + ["xray-student"]
    code, out = _run("--version")
    assert code == 0 and "vitbench" in out
    code, out = _run("models")
    assert code == 0 and "vit-large-16" in out and "304.3" in out
