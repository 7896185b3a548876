"""A third-party target installed as a package (tests/plugin_target) appears in `vitbench
targets`, runs in a plan through the dispatcher and the store, and adds its own `vitbench
inproc ...` subcommand, with no change to the core."""

from __future__ import annotations

import json
import sqlite3


def test_target_is_listed_with_its_devices(installed_target_plugin):
    r = installed_target_plugin("targets", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["target"]: row for row in json.loads(r.stdout)}
    assert rows["inproc"]["source"] == "vitbench-inproc" and rows["inproc"]["available"]
    assert [d["name"] for d in rows["inproc"]["devices"]] == ["this-process"]
    assert rows["host"]["source"] == "built-in"


def test_target_adds_its_own_subcommand(installed_target_plugin):
    r = installed_target_plugin("--help")
    assert r.returncode == 0 and "inproc" in r.stdout, r.stdout
    r = installed_target_plugin("inproc", "whoami")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("inproc measures on this-process")
    r = installed_target_plugin("inproc", "nope")
    assert r.returncode == 2 and "No such command 'nope'" in r.stderr


def test_target_runs_in_a_plan(installed_target_plugin):
    base = installed_target_plugin.base
    plan = base / "inproc.toml"
    plan.write_text(f"""
name = "inproc-plan"
[[models]]
source = "{installed_target_plugin.checkpoint}"
[[exports]]
format = "onnx"
[[targets]]
name = "inproc"
[measure]
warmup_iterations = 1
warmup_seconds = 0.0
min_iterations = 12
min_seconds = 0.05
[budgets]
latency_ms = 10000
""")
    db = base / "inproc.db"
    r = installed_target_plugin("plan", "check", str(plan), "--json")
    assert r.returncode == 0, r.stderr
    assert [c["target"] for c in json.loads(r.stdout)["cells"]] == ["inproc"]
    r = installed_target_plugin(
        "run",
        str(plan),
        "--store",
        str(db),
        "--quiet",
        "--json",
        "--out",
        str(base / "out"),
        "--new",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["done"] == 1 and summary["failed"] == 0 and summary["finished"]
    with sqlite3.connect(db) as con:
        ((target, device, status, runtime),) = con.execute(
            "SELECT target, device_name, status, runtime FROM cells"
        ).fetchall()
        (n,) = con.execute("SELECT COUNT(*) FROM samples").fetchone()
    assert (target, device, status, runtime) == (
        "inproc",
        "this-process",
        "done",
        "onnxruntime-inproc",
    )
    assert n >= 12
    r = installed_target_plugin("gate", "--store", str(db))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout and "inproc:this-process" in r.stdout
