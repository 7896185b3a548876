"""AI Hub cells measured the way the plan says (issue "Faults that still break a run", AI Hub
items): parity on the model that was profiled, the compute unit from the plan and CPU
fallback flagged and gated, one upload per artifact, fp16 tolerance on the NPU, the hub's
warm-up iterations. The real qai_hub client against the fake hub on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.plan import load_plan
from harness.store import open_store
from harness.target import Profile, ProfileSettings
from targets.aihub import AIHubTarget
from targets.aihub.connection import RetryPolicy
from targets.aihub.journal import JobJournal
from tests.support.artifacts import exported
from tests.support.fake_aihub import FakeAIHub
from tests.support.fake_aihub.records import parse_options

ROOT = Path(__file__).resolve().parents[1]
S24, S23, S21 = "Samsung Galaxy S24 (Family)", "Samsung Galaxy S23 (Family)", "Samsung Galaxy S21"
TOKEN = "vbtest-SECRET-token-runs"

PLAN = """
name = "hub-runs"

[[models]]
source = "{model}"

[[exports]]
format = "onnx"

[[targets]]
name = "aihub"
devices = [{devices}]
{target_extra}
options = {{ poll_interval_s = 0.05 {options} }}

[measure]
warmup_iterations = 1
warmup_seconds = 0.0
min_iterations = 40
min_seconds = 0.0
{measure_extra}
"""


@pytest.fixture
def hub(tmp_path, monkeypatch, shared_cache):
    monkeypatch.setenv("VITBENCH_CACHE", str(shared_cache))
    monkeypatch.setenv("VITBENCH_COMMIT", "a1b2c3d4e5f6")
    with FakeAIHub(token=TOKEN, job_seconds=0.1) as fake:
        fake.client_env(tmp_path, monkeypatch)
        yield fake


def _plan(folder: Path, model: Path, devices=(S24,), target_extra="", options="", measure=""):
    path = folder / "plan.toml"
    path.write_text(
        PLAN.format(
            model=model,
            devices=", ".join(f'"{d}"' for d in devices),
            target_extra=target_extra,
            options=options,
            measure_extra=measure,
        )
    )
    return path


def _run(folder: Path, plan: Path, *args) -> dict:
    res = CliRunner().invoke(
        main,
        ["run", str(plan), "--store", str(folder / "r.db"), "--out", str(folder / "out")]
        + ["--quiet", "--json", *args],
    )
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    return json.loads("\n".join(lines[lines.index("{") :]))


def _compiled_by(hub: FakeAIHub) -> dict[str, dict[str, str]]:
    """The compiled model id of each compile job -> its compile options."""
    return {j.target_model_id: parse_options(j.options) for j in hub.jobs_of("compile")}


# -- item 5: on-device parity runs the model that was profiled --------------------------------


def test_on_device_parity_runs_the_profiled_runtime_and_compute_unit(
    hub, tmp_path, small_checkpoint
):
    plan = _plan(
        tmp_path, small_checkpoint, target_extra='runtime = "qnn_dlc"\ncompute_unit = "npu"'
    )
    summary = _run(tmp_path, plan)
    assert summary["done"] == 1 and summary["failed"] == 0, summary
    compiled = _compiled_by(hub)
    # one compile for the cell: the parity job did not compile a tflite model of its own
    assert len(compiled) == 1
    (opts,) = compiled.values()
    assert opts["target_runtime"] == "qnn_dlc" and opts["compute_unit"] == "npu"
    profile = [j for j in hub.jobs_of("inference") if j.profiling]
    parity = [j for j in hub.jobs_of("inference") if not j.profiling]
    assert len(profile) == 3 and len(parity) == 1  # a profile job per round, parity once
    assert parity[0].model_id == profile[0].model_id in compiled
    assert parse_options(parity[0].options)["compute_unit"] == "npu"
    st = open_store(tmp_path / "r.db")
    (cell,) = st.cells([summary["run_id"]])
    assert cell["runtime"] == "qnn_dlc"
    assert cell["details"]["parity"]["status"] == "passed"
    assert cell["details"]["parity"]["where"].startswith("aihub:")


def test_a_cells_rounds_are_profile_jobs_submitted_at_once(hub, tmp_path, small_checkpoint):
    """A round on AI Hub is minutes of queueing: the cell's three profile jobs are on the hub
    together (each submitted before any of them finished), and each round keeps its job."""
    hub.job_seconds = 0.6
    summary = _run(tmp_path, _plan(tmp_path, small_checkpoint))
    assert summary["done"] == 1, summary
    profile = [j for j in hub.jobs_of("inference") if j.profiling]
    assert len(profile) == 3
    assert max(j.created for j in profile) < min(j.created + j.duration for j in profile)
    st = open_store(tmp_path / "r.db")
    (cell,) = st.cells([summary["run_id"]])
    rounds = cell["details"]["profile_details"]["rounds"]
    jobs = [r["details"]["jobs"]["profile"]["id"] for r in rounds]
    assert sorted(jobs) == sorted(j.id for j in profile)
    _, index = st.sample_rounds([cell["id"]])[cell["id"]]
    assert sorted(set(index)) == [0, 1, 2]


# -- item 6: the compute unit from the plan, CPU fallback flagged and gated --------------------


@pytest.mark.parametrize(
    "target_extra, options, measure, want",
    [
        ("", "", 'compute_unit = "gpu"', "gpu"),  # [measure]: every target's
        ("", ', compute_unit = "npu"', 'compute_unit = "gpu"', "npu"),  # the target's options
        ('compute_unit = "cpu"', ', compute_unit = "npu"', "", "cpu"),  # the target's entry
    ],
)
def test_the_compute_unit_from_the_plan_reaches_the_compile_and_profile_jobs(
    hub, tmp_path, small_checkpoint, target_extra, options, measure, want
):
    plan = _plan(tmp_path, small_checkpoint, target_extra=target_extra, options=options)
    plan.write_text(plan.read_text() + measure + "\n")
    assert load_plan(plan).measure.profile_settings(load_plan(plan).targets[0]).compute_unit == want
    summary = _run(tmp_path, plan)
    assert summary["done"] == 1, summary
    (compile_job,) = hub.jobs_of("compile")
    assert parse_options(compile_job.options)["compute_unit"] == want
    for job in hub.jobs_of("inference"):
        assert parse_options(job.options)["compute_unit"] == want


def test_cpu_fallback_is_flagged_in_the_reports_and_can_be_gated(hub, tmp_path, small_checkpoint):
    plan = _plan(tmp_path, small_checkpoint, devices=(S24, S21), measure='compute_unit = "npu"')
    summary = _run(tmp_path, plan)
    assert summary["done"] == 2, summary
    st = open_store(tmp_path / "r.db")
    cells = {c["device_name"]: c for c in st.cells([summary["run_id"]])}
    fallback = {
        name: {m["name"]: m["value"] for m in st.metrics([c["id"]])}.get("cpu_fallback")
        for name, c in cells.items()
    }
    # the S21 runs all but its Add layers on the CPU; the S24 only its Gather layers
    assert fallback[S21] > 0.5 and 0 < fallback[S24] < 0.2
    md = next((tmp_path / "out").glob("*.md")).read_text()
    html = next((tmp_path / "out").glob("*.html")).read_text()
    for text in (md, html):
        assert f"CPU fallback {fallback[S21]:.0%} (NPU asked)" in text
    gate = ["gate", summary["run_id"], "--store", str(tmp_path / "r.db")]
    loose = CliRunner().invoke(main, gate)
    assert "ran on the CPU" not in loose.output  # flagged, not gated, unless asked
    strict = CliRunner().invoke(main, [*gate, "--max-cpu-fallback", "0.5"])
    assert strict.exit_code == 1, strict.output
    (line,) = [ln for ln in strict.output.splitlines() if "ran on the CPU" in ln]
    assert S21 in line and f"{fallback[S21]:.0%} of the layers ran on the CPU" in line
    assert "although NPU was asked for (> 50% allowed)" in line
    assert not any(S24 in ln and "ran on the CPU" in ln for ln in strict.output.splitlines())


def test_a_cpu_fallback_budget_outside_0_to_1_is_one_line(tmp_path, small_checkpoint):
    plan = _plan(tmp_path, small_checkpoint)
    plan.write_text(plan.read_text() + "\n[budgets]\nmax_cpu_fallback = 1.5\n")
    res = CliRunner().invoke(main, ["plan", "check", str(plan)])
    assert res.exit_code == 2
    assert "max_cpu_fallback" in res.output and "a fraction in [0, 1]" in res.output
    assert res.output.count("\n") == 1


# -- item 8: upload once, fp16 tolerance on the NPU, the hub's warm-up -------------------------


def _target(folder: Path) -> AIHubTarget:
    retry = RetryPolicy(attempts=4, base_s=0.05, max_s=0.2)
    return AIHubTarget(cache_dir=folder / "cache", poll_interval_s=0.05, retry=retry)


def _quick(**kw) -> ProfileSettings:
    kw.setdefault("compute_unit", "npu")
    return replace(ProfileSettings.quick(**kw), timeout_s=60.0)


def test_concurrent_cells_of_one_artifact_upload_it_once(hub, tmp_path):
    """Two cells of one artifact at once, each with a target of its own (as shards or two
    runs side by side): the lock per artifact hash makes one upload, the other cell finds
    its model in the journal."""
    art = exported(tmp_path / "onnx", "onnx")
    hub.request_latency_s = 0.02  # an upload takes a while: both cells would start one
    results: dict[str, object] = {}

    def cell(device: str) -> None:
        target = _target(tmp_path)
        (dev,) = target.pick([device])
        results[device] = target.profile(art, dev, _quick())

    threads = [threading.Thread(target=cell, args=(d,)) for d in (S24, S23)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(isinstance(results.get(d), Profile) for d in (S24, S23)), results
    assert hub.count("POST", "/api/v1/models/") == 1


def test_the_job_journal_keeps_every_processs_jobs(tmp_path):
    """Four processes recording jobs in one journal at once lose none of them."""
    path = tmp_path / "journal.json"
    script = (
        "import sys; from targets.aihub.journal import JobJournal\n"
        "j = JobJournal(sys.argv[1])\n"
        "for i in range(40): j.put(f'{sys.argv[2]}-{i}', 'profile', f'j{i}')\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), f"p{k}"], cwd=ROOT)
        for k in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    journal = JobJournal(path)
    missing = [
        f"p{k}-{i}"
        for k in range(4)
        for i in range(40)
        if journal.get(f"p{k}-{i}", "profile") != f"j{i}"
    ]
    assert missing == []


def test_fp16_npu_outputs_are_judged_with_the_fp16_tolerance(hub, tmp_path):
    """The NPU computes an fp32 export in fp16: its outputs are a few 1e-3 off, outside the
    fp32 tolerance and inside fp16's. Only a CPU cell keeps the fp32 tolerance."""
    art = exported(tmp_path / "onnx", "onnx")
    hub.devices = [replace(d, fp16=True) for d in hub.devices]
    target = _target(tmp_path)
    (dev,) = target.pick([S24])
    (prof,) = target.profile_many(art, [dev], _quick(), parity=True)
    assert isinstance(prof, Profile), prof
    assert not any("parity" in w for w in prof.warnings), prof.warnings
    assert prof.metrics["parity_passed"] == 1.0 and prof.metrics["parity_max_abs"] > 1e-3
    result = target.parity(art, dev, _quick())
    assert result.status == "passed" and result.precision == "fp16"
    on_cpu = target.parity(art, dev, _quick(compute_unit="cpu"))
    assert on_cpu.precision == "fp32" and on_cpu.status == "passed"  # the CPU keeps fp32
    assert on_cpu.max_abs < 1e-4


def test_the_hubs_warm_up_iterations_are_kept_and_left_out_of_the_statistics(hub, tmp_path):
    art = exported(tmp_path / "onnx", "onnx")
    hub.devices = [replace(d, warmup_iterations=30) for d in hub.devices]
    target = _target(tmp_path)
    (dev,) = target.pick([S24])
    prof = target.profile(art, dev, _quick().with_loop(min_iterations=100))
    (job,) = [j for j in hub.jobs_of("inference") if j.profiling]
    reported = [t / 1000 for t in hub.profile_detail(job).all_execution_times]
    warmup = prof.details["warmup_samples_ms"]
    assert 20 <= len(warmup) <= 30 and prof.metrics["warmup_iterations"] == len(warmup)
    assert warmup + prof.samples_ms == pytest.approx(reported)  # nothing the hub sent is lost
    assert prof.stats.n == 100 - len(warmup)
    assert not any("drifted" in w for w in prof.warnings), prof.warnings
    assert np.median(warmup) > 1.3 * prof.stats.p50
    # a run without warm-up keeps every iteration
    hub.devices = [replace(d, warmup_iterations=0) for d in hub.devices]
    settings = _quick(session="again").with_loop(min_iterations=100)
    steady = _target(tmp_path).profile(art, dev, settings)
    assert steady.details["warmup_samples_ms"] == [] and steady.stats.n == 100
