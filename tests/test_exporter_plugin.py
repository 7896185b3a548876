"""A third-party exporter installed through the ``vitbench.exporters`` entry point shows up
in ``vitbench exporters`` and is used by ``vitbench export``, with no change to the core; the
runtime the same package registers through ``vitbench.runtimes`` runs its artifacts on the
host target, so export-time parity is checked there."""

from __future__ import annotations

import json

from harness.artifact import Artifact


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
    args = (
        "export",
        "--model",
        str(installed_plugin.checkpoint),
        "--format",
        "torchscript",
        "--cache",
        str(tmp_path),
        "--json",
    )
    r = installed_plugin(*args)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["format"] == "torchscript" and m["file"] == "model.ts"
    assert m["exporter"]["module"] == "vitbench_torchscript"
    assert m["parity"]["status"] == "passed" and m["parity"]["where"].endswith(
        "(torchscript) on this host"
    )
    Artifact.load(m["path"]).verify()
    again = json.loads(installed_plugin(*args).stdout)
    assert again["path"] == m["path"] and again["created"] == m["created"]  # a cache hit


def test_unknown_format_lists_the_plugin_too(installed_plugin):
    r = installed_plugin("export", "--model", "tiny", "--format", "nope")
    assert r.returncode == 2
    assert "unknown exporter 'nope'; available: coreml, executorch, onnx, pt2, " in r.stderr
    assert "torchscript" in r.stderr and "broken" in r.stderr


def test_plugin_runtime_that_disagrees_fails_parity(installed_plugin, tmp_path):
    """The runtime reads the export option ``output_offset`` from the artifact's manifest and
    shifts its outputs: the export fails with the numbers and nothing reaches the cache."""
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
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("vitbench: error: torchscript parity failed on torch "), line
    assert "(torchscript) on this host: max abs error 0.5" in line and "8 seeded inputs" in line
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
