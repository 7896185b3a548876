"""A third-party exporter installed through the ``vitbench.exporters`` entry point shows up
in ``vitbench exporters`` and is used by ``vitbench export``, with no change to the core."""

from __future__ import annotations

import json

from harness.artifacts import Artifact


def test_plugin_is_listed(installed_plugin):
    r = installed_plugin("exporters", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["torchscript"]["available"] is True
    assert rows["torchscript"]["source"] == "vitbench-torchscript"
    assert rows["torchscript"]["ref"] == "vitbench_torchscript:TorchScriptExporter"
    assert rows["broken"]["available"] is False and "failed to load" in rows["broken"]["reason"]
    r = installed_plugin("exporters")
    assert "torchscript" in r.stdout and "broken" in r.stdout


def test_plugin_exports_through_the_cache(installed_plugin, tmp_path):
    args = ("export", "--model", str(installed_plugin.checkpoint), "--format", "torchscript",
            "--cache", str(tmp_path), "--json")
    r = installed_plugin(*args)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["format"] == "torchscript" and m["file"] == "model.ts"
    assert m["exporter"]["module"] == "vitbench_torchscript"
    assert m["parity"]["status"] == "passed" and m["parity"]["where"] == "torch.jit on this host"
    Artifact.load(m["path"]).verify()
    again = json.loads(installed_plugin(*args).stdout)
    assert again["path"] == m["path"] and again["created"] == m["created"]  # a cache hit


def test_unknown_format_lists_the_plugin_too(installed_plugin):
    r = installed_plugin("export", "--model", "tiny", "--format", "nope")
    assert r.returncode == 2
    assert "unknown exporter 'nope'; available: onnx, executorch, coreml, pt2, " in r.stderr
    assert "torchscript" in r.stderr and "broken" in r.stderr
