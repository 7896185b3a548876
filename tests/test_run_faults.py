"""Faults that used to break a whole `vitbench run` (issue "Faults that still break a run"):
an exception inside one cell, a rejected AI Hub token, a phone that comes back on resume,
an ONNX export with a dynamic batch sent to AI Hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.plan import load_plan
from harness.store import open_store
from tests.support.android_runners import install_runners
from tests.support.fake_adb import FakeAdbServer, mediatek_phone, snapdragon_phone

HOST_PLAN = """
name = "faults"

[[models]]
{model}

[[exports]]
format = "onnx"

[[exports]]
format = "pt2"

[[targets]]
name = "{target}"
devices = [{devices}]
{target_extra}

[measure]
warmup_iterations = 1
warmup_seconds = 0.0
min_iterations = 5
min_seconds = 0.0
"""

S24 = "Samsung Galaxy S24 (Family)"
TOKEN = "vbtest-SECRET-token-faults"


@pytest.fixture
def env(tmp_path, monkeypatch, shared_cache):
    monkeypatch.setenv("VITBENCH_CACHE", str(shared_cache))
    monkeypatch.setenv("VITBENCH_COMMIT", "fa017fa017fa")
    return tmp_path


def _plan(
    folder: Path, target="host", devices='"host"', target_extra="", drop="", model=None
) -> Path:
    """A plan of the tiny preset (or the checkpoint folder ``model``) on ``target``."""
    source = f'source = "{model}"' if model else 'source = "tiny"\nimg_size = 32'
    text = HOST_PLAN.format(target=target, devices=devices, target_extra=target_extra, model=source)
    if drop:
        text = text.replace(drop, "")
    path = folder / f"{target}.toml"
    path.write_text(text)
    return path


def _hub_plan(folder: Path) -> Path:
    """The ONNX export of the small model on one AI Hub device of the fake hub."""
    return _plan(
        folder,
        target="aihub",
        devices=f'"{S24}"',
        target_extra="options = { poll_interval_s = 0.05 }",
        drop='[[exports]]\nformat = "pt2"\n',
    )


def _json(out: str) -> dict:
    """The --json summary. In this process a native runtime may print its lines into the
    captured output (ExecuTorch keeps the stderr of its first load); a process of its own
    shows none of them (test_the_main_jobs_stderr_is_vitbenchs_own)."""
    lines = out.splitlines()
    return json.loads("\n".join(lines[lines.index("{") :]))


def _run(*args) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["run", *map(str, args)])
    return res.exit_code, res.output


@pytest.fixture
def hub_env(env, monkeypatch):
    from tests.support.fake_aihub import FakeAIHub

    with FakeAIHub(token=TOKEN, job_seconds=0.1) as hub:
        hub.client_env(env, monkeypatch)
        yield hub


def test_an_exception_inside_a_cell_fails_that_cell_and_the_run_goes_on(env, register_plugin):
    """A target whose profile of pt2 artifacts raises a plain ValueError (a bug, not one of
    vitbench's errors): that cell fails with one line, the onnx cell is measured, the run
    finishes and writes its reports, the traceback is kept in the cell's details."""
    register_plugin("vitbench.targets", "buggy", "tests.support.flaky_target:BuggyTarget")
    plan = _plan(env, target="buggy", devices='"host"')
    code, out = _run(plan, "--store", env / "r.db", "--out", env / "out", "--quiet")
    assert code == 0, out
    assert "Traceback" not in out
    assert "1 done, 1 failed" in out and "finished" in out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("  failed:")]
    assert "internal error: ValueError: cannot reshape array of size 7" in line
    assert sorted(Path(env / "out").iterdir())  # the reports were written
    st = open_store(env / "r.db")
    run = st.latest_run()
    assert run["status"] == "finished"
    cells = {c["export_label"]: c for c in st.cells([run["id"]])}
    assert cells["onnx"]["status"] == "done"
    bad = cells["pt2"]
    assert bad["status"] == "failed" and bad["failure_kind"] == "infrastructure"
    assert "ValueError" in bad["details"]["traceback"] and "reshape" in bad["details"]["traceback"]


def test_an_exception_in_an_exporter_fails_its_cells_only(env, monkeypatch):
    from harness.exporters.pt2 import PT2Exporter

    def broken(self, model, spec, out_dir, **kw):
        raise KeyError("weights")

    monkeypatch.setattr(PT2Exporter, "export", broken)
    monkeypatch.setenv("VITBENCH_CACHE", str(env / "own-cache"))  # not the shared artifacts
    code, out = _run(_plan(env), "--store", env / "r.db", "--out", env / "out", "--quiet")
    assert code == 0 and "Traceback" not in out, out
    assert "1 done, 1 failed" in out and "export failed: internal error: KeyError" in out


def test_a_rejected_token_stops_the_run_before_any_cell(env, hub_env):
    hub_env.write_client_ini(env / "client.ini", token="expired-token")
    plan = _plan(env, target="aihub", devices=f'"{S24}"', drop='[[exports]]\nformat = "pt2"\n')
    code, out = _run(plan, "--store", env / "r.db", "--out", env / "out")
    assert code == 2, out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vitbench: error: AI Hub rejected the API token")
    assert "qai-hub configure" in lines[0] and "expired-token" not in out
    st = open_store(env / "r.db")
    assert st.runs() == []  # nothing started, nothing to resume
    assert hub_env.jobs == {}


def test_an_onnx_export_with_a_dynamic_batch_runs_on_ai_hub_at_batch_1(env, hub_env):
    """The artifact's input shape names its batch axis ("batch"); AI Hub needs fixed shapes."""
    plan = _hub_plan(env)
    plan.write_text(
        plan.read_text().replace(
            'format = "onnx"', 'format = "onnx"\noptions = { dynamic_batch = true }'
        )
    )
    code, out = _run(plan, "--store", env / "r.db", "--out", env / "out", "--quiet", "--json")
    assert code == 0, out
    summary = _json(out)
    assert summary["done"] == 1 and summary["failed"] == 0, summary["failures"]
    (compile_job,) = hub_env.jobs_of("compile")
    assert list(compile_job.input_specs.values()) == [[1, 3, 32, 32]]


def test_a_resumed_run_has_exactly_the_plans_cells(env, tmp_path, monkeypatch, small_checkpoint):
    """The MediaTek phone is unplugged in the first attempt: its cell fails as a placeholder
    keyed by the selector. On resume the phone is back under its own name; the run then has
    the plan's two cells, both done, and the gate counts none missing."""
    from harness.gate import judge_run

    runners = install_runners(tmp_path / "runners")
    monkeypatch.setenv("VITBENCH_ANDROID_EXECUTOR_RUNNER", str(runners["executor_runner"]))
    devices = '"Snapdragon 8 Gen 3", "Dimensity 9300"'
    extra = "options = { poll_s = 0.01, max_wait_s = 5.0, etdump = false }"
    plan = _plan(env, target="android", devices=devices, target_extra=extra, model=small_checkpoint)
    text = plan.read_text().replace('format = "onnx"', 'format = "executorch"')
    plan.write_text(text.replace('[[exports]]\nformat = "pt2"\n', ""))
    db = env / "r.db"
    with FakeAdbServer() as srv:
        monkeypatch.setenv("VITBENCH_ADB_SERVER", srv.address)
        srv.add(snapdragon_phone(tmp_path / "phones"))
        code, out = _run(plan, "--store", db, "--out", env / "out", "--quiet", "--json")
        first = _json(out)
        assert code == 0 and first["done"] == 1 and first["failed"] == 1, out
        srv.add(mediatek_phone(tmp_path / "phones"))
        code, out = _run(plan, "--store", db, "--out", env / "out", "--quiet", "--json")
        again = _json(out)
    assert code == 0 and again["run_id"] == first["run_id"], out
    assert again["total"] == 2 and again["done"] == 1 and again["failed"] == 0
    assert again["skipped"] == 1 and again["finished"]
    st = open_store(db)
    cells = st.cells([first["run_id"]])
    assert len(cells) == 2 and all(c["status"] == "done" for c in cells)
    assert {c["device_name"].split(" (")[-1] for c in cells} == {"R5CX10SNAP)", "10AD5F0MTK)"}
    assert st.run(first["run_id"])["total_cells"] == 2
    from harness.gate import budgets_from_plan

    result = judge_run(st, first["run_id"], budgets_from_plan(load_plan(plan).to_dict()))
    assert len(result.cells) == 2
    res = CliRunner().invoke(main, ["gate", first["run_id"], "--store", str(db), "--json"])
    assert json.loads(res.output)["missing_cells"] == 0


def test_the_main_jobs_stderr_is_vitbenchs_own(env, tmp_path):
    """`vitbench run` in a process of its own, exporting and running an ExecuTorch program
    (whose runtime prints cpuinfo lines) and an ONNX one (torch's exporter warns): stderr
    holds vitbench's lines only; the third-party lines are in the log file."""
    import os
    import subprocess
    import sys

    plan = _plan(env, drop='[[exports]]\nformat = "pt2"\n')
    plan.write_text(plan.read_text().replace('format = "onnx"', 'format = "executorch"', 1))
    log = tmp_path / "vitbench.log"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--log-file", str(log), "run", str(plan)]
        + ["--store", str(env / "r.db"), "--out", str(env / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "default"},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    noise = [
        ln
        for ln in proc.stderr.splitlines()
        if ln.strip()
        and not ln.lstrip("\r").startswith(("  export: ", "run ", "report: "))
        and "cell/s" not in ln
        and "cell]" not in ln
        and "|" not in ln
    ]
    assert noise == []
    assert "1 done, 0 failed" in proc.stdout
    text = log.read_text()
    assert "cpuinfo_utils.cpp" in text or "Warning" in text


def _profile_jobs(hub) -> list:
    return [j for j in hub.jobs_of("inference") if j.profiling]


def test_a_new_run_on_ai_hub_measures_again_and_a_resume_picks_up_its_own_jobs(env, hub_env):
    plan = _hub_plan(env)
    db, out = env / "r.db", env / "out"
    code, text = _run(plan, "--store", db, "--out", out, "--quiet", "--json")
    first = _json(text)
    assert code == 0 and first["done"] == 1, text
    # three rounds: three separate profile jobs, the samples stored with their round
    assert len(_profile_jobs(hub_env)) == 3
    st = open_store(db)
    (cell,) = st.cells([first["run_id"]])
    values, rounds = st.sample_rounds([cell["id"]])[cell["id"]]
    assert sorted(set(rounds)) == [0, 1, 2] and len(values) == len(rounds)
    # the same run again, its cell failed half-way: the resume finds its own profile jobs
    st.finish_cell(cell["id"], status="failed", failure_kind="infrastructure", failure_reason="x")
    code, text = _run(
        plan, "--store", db, "--out", out, "--quiet", "--json", "--resume", first["run_id"]
    )
    assert code == 0 and _json(text)["done"] == 1, text
    assert len(_profile_jobs(hub_env)) == 3
    # a new run (another commit, --new) submits new profile jobs
    code, text = _run(plan, "--store", db, "--out", out, "--quiet", "--json", "--new")
    second = _json(text)
    assert code == 0 and second["done"] == 1 and second["run_id"] != first["run_id"], text
    jobs = _profile_jobs(hub_env)
    assert len(jobs) == 6 and len({j.id for j in jobs}) == 6
    ids = {
        c["run_id"]: [
            r["details"]["jobs"]["profile"]["id"] for r in c["details"]["profile_details"]["rounds"]
        ]
        for c in st.cells([first["run_id"], second["run_id"]])
    }
    assert len(set(ids[first["run_id"]] + ids[second["run_id"]])) == 6


def test_aihub_profile_fresh_measures_a_known_artifact_again(env, hub_env):
    from tests.support.artifacts import exported

    art = exported(env / "onnx", "onnx")
    base = ["aihub", "profile", str(art.path), "--device", S24, "--iterations", "5"]
    base += ["--state", str(env / "journal.json"), "--poll-interval", "0.05", "--quiet"]
    # a job per round (3): found again on the second call, new ones with --fresh
    for args, want in ((base, 3), (base, 3), ([*base, "--fresh"], 6)):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        assert len(_profile_jobs(hub_env)) == want
    assert len(hub_env.jobs_of("compile")) == 1  # the compiled model is reused


def test_accuracy_on_ai_hub_needs_the_users_permission_and_keeps_the_profile(env, hub_env):
    """[accuracy] on AI Hub uploads the data set's images: without --allow-data-upload that
    part of the cell fails alone (the profile is kept, nothing is uploaded); with it the
    accuracy is measured and the permission is recorded in the run's plan."""
    import numpy as np

    rng = np.random.default_rng(0)
    npz = env / "tiny_medmnist.npz"
    arrays = {}
    for split, n in (("train", 4), ("val", 4), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    np.savez(npz, **arrays)
    plan = _hub_plan(env)
    text = plan.read_text().replace("img_size = 32", "img_size = 32\nnum_classes = 2")
    plan.write_text(text + f'\n[accuracy]\ndata = "{npz}"\nlimit = 8\n')
    db, out = env / "r.db", env / "out"
    code, text = _run(plan, "--store", db, "--out", out, "--quiet", "--json")
    first = _json(text)
    assert code == 0 and first["done"] == 1, text
    st = open_store(db)
    (cell,) = st.cells([first["run_id"]])
    assert "--allow-data-upload" in cell["details"]["accuracy_error"]
    names = {m["name"] for m in st.metrics([cell["id"]])}
    assert "latency_p90_ms" in names and "accuracy" not in names
    # what went to the hub is the seeded reference inputs of parity, no image of the data set
    from harness.parity import load_reference

    seeded, _ = load_reference(Path(cell["details"]["artifact"]["path"]).parent)
    for upload in hub_env.uploaded_inputs:
        (arrays,) = upload.values()
        assert len(arrays) == len(seeded)
        assert all(np.array_equal(a, b) for a, b in zip(arrays, seeded, strict=True))
    uploads_before = len(hub_env.uploaded_inputs)
    code, text = _run(plan, "--store", db, "--out", out, "--quiet", "--json", "--allow-data-upload")
    second = _json(text)
    assert code == 0 and second["done"] == 1 and second["run_id"] != first["run_id"], text
    (cell,) = st.cells([second["run_id"]])
    m = {r["name"]: r["value"] for r in st.metrics([cell["id"]])}
    assert m["accuracy_n"] == 8 and "accuracy_error" not in cell["details"]
    assert len(hub_env.uploaded_inputs) > uploads_before
    assert st.run(second["run_id"])["plan"]["accuracy"]["allow_data_upload"] is True


def test_parity_says_where_it_ran_and_missing_device_parity_fails_the_gate(
    env, tmp_path, monkeypatch
):
    """An ONNX cell on a phone: onnxruntime_perf_test writes no outputs, so parity on the
    device cannot run. Asked for ([parity] on_device, the default), that fails the gate with
    the reason; not asked for, the cell says "not checked on device" and shows no host
    numbers as if they were the phone's."""
    runners = install_runners(tmp_path / "runners")
    monkeypatch.setenv("VITBENCH_ANDROID_ORT_PERF_TEST", str(runners["onnxruntime_perf_test"]))
    extra = "options = { poll_s = 0.01, max_wait_s = 5.0 }"
    plan = _plan(env, target="android", devices='"Dimensity 9300"', target_extra=extra)
    text = plan.read_text().replace('[[exports]]\nformat = "pt2"\n', "")
    plan.write_text(text.replace("min_iterations = 5", "min_iterations = 30"))  # the gate's minimum
    db, out = env / "r.db", env / "out"
    with FakeAdbServer() as srv:
        monkeypatch.setenv("VITBENCH_ADB_SERVER", srv.address)
        srv.add(mediatek_phone(tmp_path / "phones"))
        code, text = _run(plan, "--store", db, "--out", out, "--quiet", "--json")
        asked = _json(text)
        plan.write_text(plan.read_text() + "\n[parity]\non_device = false\n")
        code2, text2 = _run(plan, "--store", db, "--out", out, "--quiet", "--json")
        not_asked = _json(text2)
    assert code == 0 and asked["done"] == 1 and code2 == 0 and not_asked["done"] == 1
    res = CliRunner().invoke(main, ["gate", asked["run_id"], "--store", str(db)])
    assert res.exit_code == 1, res.output
    assert "parity on the device was asked for and not measured" in res.output
    assert "cannot write outputs" in res.output
    st = open_store(db)
    (cell,) = st.cells([not_asked["run_id"]])
    assert cell["details"]["parity"]["status"] == "pending"
    assert "not checked on device" in cell["details"]["parity"]["reason"]
    assert "parity_cosine" not in {m["name"] for m in st.metrics([cell["id"]])}
    res = CliRunner().invoke(main, ["gate", not_asked["run_id"], "--store", str(db)])
    assert res.exit_code == 0, res.output
    report = (out / f"{not_asked['run_id']}.md").read_text()
    assert "not checked on device" in report


def test_a_plan_naming_an_unauthorized_phone_says_what_to_do(
    env, tmp_path, monkeypatch, small_checkpoint
):
    """The MediaTek phone is listed by adb but unauthorized: its cell fails with the phone's
    state and the advice (accept the prompt), not "not reachable"; the other is measured."""
    runners = install_runners(tmp_path / "runners")
    monkeypatch.setenv("VITBENCH_ANDROID_ORT_PERF_TEST", str(runners["onnxruntime_perf_test"]))
    extra = "options = { poll_s = 0.01, max_wait_s = 5.0 }"
    devices = '"R5CX10SNAP", "10AD5F0MTK"'
    plan = _plan(env, target="android", devices=devices, target_extra=extra, model=small_checkpoint)
    plan.write_text(plan.read_text().replace('[[exports]]\nformat = "pt2"\n', ""))
    with FakeAdbServer() as srv:
        monkeypatch.setenv("VITBENCH_ADB_SERVER", srv.address)
        srv.add(snapdragon_phone(tmp_path / "phones"))
        srv.add(mediatek_phone(tmp_path / "phones", state="unauthorized"))
        code, out = _run(plan, "--store", env / "r.db", "--out", env / "out", "--quiet", "--json")
    summary = _json(out)
    assert code == 0 and summary["done"] == 1 and summary["failed"] == 1, out
    st = open_store(env / "r.db")
    (failed,) = [c for c in st.cells([summary["run_id"]]) if c["status"] == "failed"]
    reason = failed["failure_reason"]
    assert "10AD5F0MTK is unauthorized" in reason and "accept the USB debugging prompt" in reason
    assert "not reachable" not in reason
