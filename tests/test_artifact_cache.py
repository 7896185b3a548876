"""The content-addressed artifact cache: hits, forced rebuilds, corrupt and half-written
entries, concurrent exports of one key, and failed exports leaving nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.artifact import MANIFEST, Artifact, ExportSpec
from harness.export import cache_key, cache_root, export_artifact, model_hash
from harness.model import build_model
from harness.parity import REFERENCE_FILE
from tests.support.models import small_config

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(**kw):
    """One block at 16x16: every cache test exports it at least twice."""
    return small_config(img_size=16, num_heads=(2,), mlp_dims=(32,), **kw)


@pytest.fixture
def model():
    return build_model(tiny_config())


def entries(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith("."))


def test_cache_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VITBENCH_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("VITBENCH_CACHE")
    assert cache_root() == Path.home() / ".cache" / "vitbench"
    assert cache_root(tmp_path) == tmp_path


def test_key_covers_weights_config_spec_calibration_and_tools(model):
    h = model_hash(model)
    assert h == model_hash(build_model(tiny_config()))  # same seed, same weights
    assert h != model_hash(build_model(tiny_config(seed=1)))  # other weights
    assert h != model_hash(
        build_model(tiny_config(labels=tuple("abcde")))
    )  # other config, same weights
    tools = {"torch": "2.13.0", "executorch": "1.5.1"}
    base = cache_key(h, "onnx", ExportSpec("onnx"), None, tools)
    assert base == cache_key(h, "onnx", ExportSpec("onnx"), None, dict(tools))
    assert base != cache_key(h, "onnx", ExportSpec("onnx", options={"opset": 17}), None, tools)
    assert base != cache_key(h, "pt2", ExportSpec("onnx"), None, tools)
    assert base != cache_key(h, "onnx", ExportSpec("onnx"), "abc", tools)
    assert base != cache_key(h, "onnx", ExportSpec("onnx"), None, {**tools, "torch": "2.14.0"})


def test_hit_forced_rebuild_and_distinct_specs(model, tmp_path):
    first = export_artifact(model, ExportSpec("pt2"), cache=tmp_path)
    inode = first.path.stat().st_ino
    messages = []
    again = export_artifact(model, ExportSpec("pt2"), cache=tmp_path, progress=messages.append)
    assert again.path == first.path and again.path.stat().st_ino == inode  # not re-exported
    assert again.manifest["created"] == first.manifest["created"]
    assert messages == [f"cache hit: {first.folder}"]
    rebuilt = export_artifact(
        model, ExportSpec("pt2"), cache=tmp_path, no_cache=True, progress=messages.append
    )
    assert rebuilt.path == first.path and rebuilt.path.stat().st_ino != inode
    assert any(m.startswith("exporting pt2") for m in messages)
    assert rebuilt.sha256 == first.sha256  # the same program, byte for byte
    other = export_artifact(
        model, ExportSpec("pt2", options={"dynamic_batch": True}), cache=tmp_path
    )
    assert other.folder != first.folder
    assert len(entries(tmp_path)) == 2 and list((tmp_path / ".tmp").iterdir()) == []


@pytest.mark.parametrize(
    "damage", ["truncate", "flip", "no-manifest", "no-reference", "bad-manifest"]
)
def test_corrupt_entry_is_rebuilt_never_served(model, tmp_path, damage):
    art = export_artifact(model, ExportSpec("pt2"), cache=tmp_path)
    good = art.sha256
    if damage == "truncate":
        with open(art.path, "r+b") as fh:
            fh.truncate(art.manifest["size"] // 2)
    elif damage == "flip":
        data = bytearray(art.path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        art.path.write_bytes(bytes(data))
    elif damage == "no-manifest":
        (art.folder / MANIFEST).unlink()
    elif damage == "no-reference":
        (art.folder / REFERENCE_FILE).unlink()
    else:
        (art.folder / MANIFEST).write_text("{not json")
    messages = []
    again = export_artifact(model, ExportSpec("pt2"), cache=tmp_path, progress=messages.append)
    assert messages[0].startswith("cache entry not whole, rebuilding")
    assert any(m.startswith("exporting") for m in messages)
    assert again.folder == art.folder and again.sha256 == good
    Artifact.load(again.folder).verify()
    assert (again.folder / REFERENCE_FILE).is_file()


def test_out_copies_a_verified_artifact(model, tmp_path):
    out = tmp_path / "out"
    art = export_artifact(model, ExportSpec("pt2"), cache=tmp_path / "c", out=out)
    assert art.folder == out and sorted(p.name for p in out.iterdir()) == [
        MANIFEST,
        "model.pt2",
        REFERENCE_FILE,
    ]
    art.verify()
    again = export_artifact(
        model, ExportSpec("pt2"), cache=tmp_path / "c", out=out
    )  # overwrite in place
    assert again.sha256 == art.sha256


def test_concurrent_exports_of_one_key(tmp_path):
    """Three processes export the same key at once: one builds, the others wait on the lock
    and are served the finished entry; nothing is corrupt or left half-written."""
    script = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "from tests.support.models import small_config\n"
        "from harness.model import build_model\n"
        "from harness.artifact import ExportSpec\nfrom harness.export import export_artifact\n"
        "msgs = []\n"
        "m = build_model(small_config(img_size=16, num_heads=(2,), mlp_dims=(32,)))\n"
        "a = export_artifact(m, ExportSpec('pt2'), cache=sys.argv[1], progress=msgs.append)\n"
        "built = any(m.startswith('exporting') for m in msgs)\n"
        "print(json.dumps({'path': str(a.path), 'sha': a.sha256, 'built': built}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len({r["path"] for r in results}) == 1 and len({r["sha"] for r in results}) == 1
    assert sum(r["built"] for r in results) == 1
    (entry,) = entries(tmp_path)
    Artifact.load(entry).verify()
    assert list((tmp_path / ".tmp").iterdir()) == []


def test_failed_parity_raises_with_numbers_and_leaves_nothing(tmp_path, installed_plugin):
    """A runtime that disagrees with PyTorch: the export fails with the numbers and nothing
    reaches the cache. (The TorchScript plugin's output_offset option shifts its outputs.)"""
    r = installed_plugin(
        "export",
        "--model",
        str(installed_plugin.checkpoint),
        "--format",
        "torchscript",
        "-o",
        "output_offset=0.5",
        "--cache",
        str(tmp_path),
    )
    assert r.returncode == 2
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("vitbench: error: torchscript parity failed on torch ")
    assert "(torchscript) on this host: max abs error 0.5" in line
    assert "cosine" in line and "8 seeded inputs" in line
    assert entries(tmp_path) == [] and list((tmp_path / ".tmp").iterdir()) == []
