"""`vitbench run`: the whole pipeline on small models, kill -9 and resume, shards, failures."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.dispatch import Dispatcher
from harness.plan import load_plan
from harness.store import open_store

PLAN = """
name = "small"

[[models]]
source = "tiny"
img_size = 32

[[exports]]
format = "onnx"

[[exports]]
format = "pt2"

[[targets]]
name = "host"
devices = ["host"]

[measure]
warmup_iterations = 1
warmup_seconds = 0.0
min_iterations = 5
min_seconds = {seconds}
"""


@pytest.fixture
def env(tmp_path, monkeypatch, shared_cache):
    monkeypatch.setenv("VITBENCH_CACHE", str(shared_cache))
    monkeypatch.setenv("VITBENCH_COMMIT", "abc123def456")
    return tmp_path


def _plan(tmp_path, seconds=0.05, extra=""):
    p = tmp_path / "plan.toml"
    p.write_text(PLAN.format(seconds=seconds) + extra)
    return p


def _cli(*args):
    args = [str(a) for a in args]
    if args[0] == "run" and "--out" not in args:
        args += ["--out", str(Path(args[args.index("--store") + 1]).parent / "out")]
    res = CliRunner().invoke(main, args)
    return res.exit_code, res.output


def test_run_stores_every_cell_and_a_rerun_skips_them(env):
    db = env / "r.db"
    code, out = _cli("run", _plan(env), "--store", db, "--quiet", "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["done"] == 2 and summary["failed"] == 0 and summary["finished"]
    st = open_store(db)
    cells = st.cells([summary["run_id"]])
    assert {c["export_label"] for c in cells} == {"onnx", "pt2"} and all(
        c["status"] == "done" for c in cells
    )
    samples = st.samples([c["id"] for c in cells])
    assert all(len(s) >= 5 for s in samples.values())
    names = {m["name"] for m in st.metrics([c["id"] for c in cells])}
    assert {
        "latency_p90_ms",
        "latency_p90_ci_high_ms",
        "load_cold_ms",
        "peak_memory_mb",
        "parity_cosine",
    } <= names
    # the same plan and commit again: nothing to do
    code, out = _cli("run", _plan(env), "--store", db, "--quiet", "--json")
    again = json.loads(out)
    assert (
        code == 0
        and again["run_id"] == summary["run_id"]
        and again["skipped"] == 2
        and again["done"] == 0
    )
    # --new measures again in a run of its own
    code, out = _cli("run", _plan(env), "--store", db, "--quiet", "--json", "--new")
    assert json.loads(out)["run_id"] != summary["run_id"] and json.loads(out)["done"] == 2


def test_failures_do_not_stop_other_cells(env):
    extra = '\n[[targets]]\nname = "host"\ndevices = ["no-such-machine"]\nruntime = "ort"\n'
    plan = load_plan(_plan(env, extra=extra))
    st = open_store(env / "r.db")
    summary = Dispatcher(plan, st, quiet=True).run()
    assert summary.done == 2 and summary.failed == 2
    failed = [c for c in st.cells([summary.run_id]) if c["status"] == "failed"]
    assert {c["failure_kind"] for c in failed} == {"infrastructure"}
    assert all("no-such-machine" in c["failure_reason"] for c in failed)


def test_export_that_cannot_be_made_fails_its_cells_only(env, monkeypatch):
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    extra = '\n[[exports]]\nformat = "executorch"\ndelegate = "qnn"\nprecision = "int8"\n'
    plan = load_plan(_plan(env, extra=extra))
    st = open_store(env / "r.db")
    summary = Dispatcher(plan, st, quiet=True).run()
    assert summary.done == 2 and summary.failed == 1
    bad = next(c for c in st.cells([summary.run_id]) if c["status"] == "failed")
    assert "QNN_SDK_ROOT" in bad["failure_reason"] and bad["failure_kind"] == "infrastructure"


def test_retryable_failures_are_retried(env, register_plugin):
    register_plugin("vitbench.targets", "flaky", "tests.support.flaky_target:FlakyTarget")
    text = _plan(env).read_text().replace('name = "host"', 'name = "flaky"')
    (env / "flaky.toml").write_text(text)
    plan = load_plan(env / "flaky.toml")
    st = open_store(env / "r.db")
    waits = []
    summary = Dispatcher(plan, st, quiet=True, sleep=waits.append).run()
    assert summary.done == 2 and summary.failed == 0 and len(waits) == 2
    assert all(c["details"]["attempts"] == 2 for c in st.cells([summary.run_id]))


def test_shards_write_into_one_run(env):
    db = env / "r.db"
    outs = []
    for shard in ("1/2", "2/2"):
        code, out = _cli(
            "run", _plan(env), "--store", db, "--shard", shard, "--run-id", "nightly-1", "--json"
        )
        assert code == 0, out
        outs.append(json.loads(out[out.index("{") :]))
    assert outs[0]["done"] == 1 and outs[1]["done"] == 1
    assert not outs[0]["finished"] and outs[0]["waiting"] == 1 and outs[1]["finished"]
    # a shard done while another measures says so, not "incomplete"
    code, out = _cli("run", _plan(env), "--store", db, "--shard", "1/2", "--run-id", "nightly-2")
    assert code == 0 and "shard 1/2 done; run nightly-2 waits for 1 cell of other shards" in out
    run = open_store(db).run("nightly-1")
    assert run["status"] == "finished" and len(open_store(db).cells(["nightly-1"])) == 2


def test_resume_of_an_unknown_run_or_another_plan(env):
    db = env / "r.db"
    code, out = _cli("run", _plan(env), "--store", db, "--resume", "nope", "--quiet")
    assert code == 2 and "no run 'nope'" in out
    _cli("run", _plan(env), "--store", db, "--run-id", "r1", "--quiet")
    code, out = _cli("run", _plan(env, seconds=0.1), "--store", db, "--resume", "r1", "--quiet")
    assert code == 2 and "made from another plan" in out


def test_kill_9_then_resume_does_every_cell_exactly_once(env):
    db = env / "r.db"
    plan = _plan(env, seconds=2.0)
    extra_models = '\n[[models]]\nsource = "tiny"\nimg_size = 48\n'
    plan.write_text(plan.read_text() + extra_models)  # 4 cells of ~2 s each
    cmd = [
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        str(plan),
        "--store",
        str(db),
        "--quiet",
        "--out",
        str(env / "out"),
    ]
    proc = subprocess.Popen(
        cmd,
        env=os.environ | {"PYTHONPATH": os.getcwd()},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if db.exists():
            with sqlite3.connect(db) as conn:
                try:
                    done = conn.execute(
                        "SELECT COUNT(*) FROM cells WHERE status = 'done'"
                    ).fetchone()[0]
                except sqlite3.OperationalError:
                    done = 0
            if done >= 1:
                break
    assert proc.poll() is None and 1 <= done < 4, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    st = open_store(db)
    run_id = st.latest_run()["id"]
    before = {
        c["cell_key"]: (c["finished_at"], len(st.samples([c["id"]])[c["id"]]))
        for c in st.cells([run_id])
        if c["status"] == "done"
    }
    assert st.run(run_id)["finished_at"] is None
    code, out = _cli("run", plan, "--store", db, "--resume", run_id, "--quiet", "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert (
        summary["skipped"] == len(before)
        and summary["done"] == 4 - len(before)
        and summary["finished"]
    )
    cells = open_store(db).cells([run_id])
    assert (
        len(cells) == 4
        and len({c["cell_key"] for c in cells}) == 4
        and all(c["status"] == "done" for c in cells)
    )
    for c in cells:
        if c["cell_key"] in before:  # measured before the kill: untouched, samples all there
            assert (c["finished_at"], len(open_store(db).samples([c["id"]])[c["id"]])) == before[
                c["cell_key"]
            ]
            assert c["attempts"] == 1


def test_accuracy_through_the_target_beside_the_pytorch_reference(env):
    """[accuracy] through the host target for the built-in X-ray pair: the data set's metric
    and the operating point at each model's own threshold, retention of PyTorch on the same
    images (fp32 on the host keeps all of it) and, for the student, of its teacher; a model
    marked accuracy = false is measured for latency only. The md report fills both columns."""
    from reports.report import render_report

    text = (
        PLAN.format(seconds=0.05)
        .replace('[[exports]]\nformat = "pt2"\n', "")
        .replace(
            'source = "tiny"\nimg_size = 32',
            'source = "tiny"\nimg_size = 32\naccuracy = false\n\n[[models]]\n'
            'source = "xray-teacher"\n\n[[models]]\nsource = "xray-student"\n'
            'teacher = "xray-teacher"',
        )
    )
    text += '\n[accuracy]\ndata = "builtin:pneumonia"\nlimit = 60\n'  # real X-rays, packaged
    (env / "acc.toml").write_text(text)
    st = open_store(env / "r.db")
    summary = Dispatcher(load_plan(env / "acc.toml"), st, quiet=True).run()
    assert summary.done == 3, summary.failures
    by_model = {}
    for cell in st.cells([summary.run_id]):
        by_model[cell["model_name"]] = {r["name"]: r["value"] for r in st.metrics([cell["id"]])}
    assert "accuracy" not in by_model["tiny[img_size=32]"]
    for name in ("xray-teacher", "xray-student"):
        m = by_model[name]
        assert m["accuracy_n"] == 60
        # fp32 exports on the host give the PyTorch number, at the model's own threshold
        assert m["accuracy"] == pytest.approx(m["accuracy_reference"], abs=1e-6)
        assert m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"]
        assert 0 < m["decision_threshold"] < 1 and m["decision_threshold"] != 0.5
        for kind in ("sensitivity", "specificity", "ppv", "npv"):
            assert m[f"{kind}_ci_low"] <= m[kind] <= m[f"{kind}_ci_high"]
        for kind in ("accuracy", "accuracy_sensitivity", "accuracy_specificity"):
            assert m[f"{kind}_retention"] == pytest.approx(1.0, abs=1e-6)
            assert (
                m[f"{kind}_retention_ci_low"] <= 1.0 + 1e-9 <= m[f"{kind}_retention_ci_high"] + 2e-9
            )
    student, teacher = by_model["xray-student"], by_model["xray-teacher"]
    assert "compression_retention" not in teacher
    assert student["compression_reference"] == pytest.approx(teacher["accuracy_reference"])
    kept = student["compression_retention"]
    assert kept == pytest.approx(student["accuracy_reference"] / teacher["accuracy_reference"])
    assert (
        student["compression_retention_ci_low"] <= kept <= student["compression_retention_ci_high"]
    )
    assert student["compression_retention_ci_high"] > student["compression_retention_ci_low"]
    assert {"compression_sensitivity_retention", "compression_specificity_retention"} <= set(
        student
    )
    md = render_report(st, summary.run_id, "md")
    row = next(ln for ln in md.splitlines() if ln.startswith("| xray-student | onnx"))
    cols = [c.strip() for c in row.split(" | ")]
    on_target, of_teacher = cols[-3], cols[-2]
    assert on_target.startswith("100.0% [") and "sens 100.0%, spec 100.0%" in on_target
    assert (
        of_teacher.startswith(f"{kept:.1%} [")
        and f"of {teacher['accuracy_reference']:.3f}" in of_teacher
    )


def test_a_plan_on_ai_hub_devices_runs_through_the_real_client(env, monkeypatch):
    """`vitbench run` with the AI Hub target, against the loopback fake hub: the dispatcher's
    cells become hub jobs on two devices at once, and the gate reads their numbers."""
    from harness.gate import judge_run
    from tests.support.fake_aihub import FakeAIHub

    S24, S23 = (
        "Samsung Galaxy S24 (Family)",
        "Samsung Galaxy S23 (Family)",
    )  # devices the fake offers
    TOKEN = "vbtest-SECRET-token-dispatch"

    with FakeAIHub(token=TOKEN, job_seconds=0.2) as hub:
        ini = env / "client.ini"
        hub.write_client_ini(ini)
        (env / "home").mkdir()
        monkeypatch.setenv("HOME", str(env / "home"))
        monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
        monkeypatch.delenv("QAI_HUB_API_TOKEN", raising=False)
        text = (
            PLAN.format(seconds=0.05)
            .replace('[[exports]]\nformat = "pt2"\n', "")
            .replace(
                'name = "host"\ndevices = ["host"]',
                f'name = "aihub"\ndevices = ["{S24}", "{S23}"]\nconcurrency = 2\n'
                "options = { poll_interval_s = 0.05 }",
            )
        )
        (env / "hub.toml").write_text(text)
        st = open_store(env / "r.db")
        summary = Dispatcher(load_plan(env / "hub.toml"), st, quiet=True).run()
    assert summary.done == 2 and summary.failed == 0, summary.failures
    cells = st.cells([summary.run_id])
    assert {c["device_name"] for c in cells} == {S24, S23} and all(
        c["target"] == "aihub" for c in cells
    )
    samples = st.samples([c["id"] for c in cells])
    assert all(len(s) >= 5 for s in samples.values())
    names = {m["name"] for m in st.metrics([c["id"] for c in cells])}
    assert {"latency_p90_ms", "load_cold_ms", "peak_memory_mb", "parity_cosine"} <= names
    from harness.plan import BudgetSettings

    slowest = max(max(s) for s in samples.values())
    generous = BudgetSettings(latency_ms=slowest * 2, min_samples=5)
    assert judge_run(st, summary.run_id, generous).verdict == "pass"
    assert (
        judge_run(
            st,
            summary.run_id,
            BudgetSettings(latency_ms=min(min(s) for s in samples.values()) / 2, min_samples=5),
        ).verdict
        == "fail"
    )
