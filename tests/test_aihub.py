"""The AI Hub target end to end: the real qai_hub client against a fake AI Hub on loopback
(tests/support/fake_aihub.py) that speaks the hub's HTTP + protobuf API."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from qai_hub import public_api_pb2 as pb

from harness.artifact import Artifact, ArtifactError
from harness.errors import UserError
from harness.parity import load_reference, seeded_inputs
from harness.target import STANDARD_METRICS, Profile, ProfileSettings, TargetError
from targets.aihub import AIHubTarget
from targets.aihub.connection import HubAuthError, RetryPolicy
from targets.aihub.devices import DeviceSelectionError
from targets.aihub.jobs import classify_failure
from tests.support.artifacts import exported
from tests.support.fake_aihub import FakeAIHub

ROOT = Path(__file__).resolve().parents[1]
S24, S23, S21 = "Samsung Galaxy S24 (Family)", "Samsung Galaxy S23 (Family)", "Samsung Galaxy S21"
QCS = "QCS8550 (Proxy)"
TOKEN = "vbtest-SECRET-token-7f3a9c"


@pytest.fixture(scope="session")
def onnx_artifact(tmp_path_factory) -> Artifact:
    return exported(tmp_path_factory.mktemp("onnx") / "vit-small", "onnx")


@pytest.fixture
def hub():
    with FakeAIHub(token=TOKEN, job_seconds=0.2) as fake:
        yield fake


@pytest.fixture
def hub_env(hub, tmp_path, monkeypatch) -> Path:
    """A client.ini for the fake in a throwaway HOME, found through QAIHUB_CLIENT_INI."""
    monkeypatch.setenv("VITBENCH_CACHE", str(tmp_path / "cache"))
    return hub.client_env(tmp_path, monkeypatch)


def make_target(tmp_path: Path, **kw) -> AIHubTarget:
    kw.setdefault("retry", RetryPolicy(attempts=4, base_s=0.05, max_s=0.2))
    return AIHubTarget(cache_dir=tmp_path / "cache", poll_interval_s=0.05, **kw)


@pytest.fixture
def target(hub_env, tmp_path) -> AIHubTarget:
    return make_target(tmp_path)


def quick(timeout_s: float = 30.0, **kw) -> ProfileSettings:
    kw.setdefault("compute_unit", "npu")
    return replace(ProfileSettings.quick(**kw), timeout_s=timeout_s)


def jobs_on(hub: FakeAIHub, kind: str, device: str) -> list:
    return [j for j in hub.jobs_of(kind) if j.device.name == device]


# -- devices ------------------------------------------------------------------------------------


def test_devices_have_chipset_os_and_runtimes(target):
    devices = {(d.name, d.os): d for d in target.devices()}
    s24 = devices[(S24, "Android 15")]
    assert s24.chipset == "qualcomm-snapdragon-8gen3"
    assert {"tflite", "qnn_dlc", "qnn_context_binary", "onnx"} <= set(s24.attributes["runtimes"])
    xelite = devices[("Snapdragon X Elite CRD", "Windows 11")]
    assert (
        "tflite" not in xelite.attributes["runtimes"] and "qnn_dlc" in xelite.attributes["runtimes"]
    )


def test_select_by_name_chipset_and_os_range(target):
    (newest,) = target.pick([S24])
    assert newest.attributes["os_version"] == "15"
    (older,) = target.pick([f"{S24}@14"])
    assert older.attributes["os_version"] == "14"
    (by_chip,) = target.pick(["chipset:qualcomm-snapdragon-8gen3@[14,15)"])
    assert (by_chip.name, by_chip.attributes["os_version"]) == (S24, "14")
    assert [d.name for d in target.pick(["chipset:qualcomm-snapdragon-888", S23])] == [S21, S23]


def test_unknown_device_or_chipset_lists_close_matches(target):
    with pytest.raises(DeviceSelectionError, match=r"did you mean .*Samsung Galaxy S24 \(Family\)"):
        target.pick(["Samsung Galaxy S24"])
    with pytest.raises(DeviceSelectionError, match="chipset:qualcomm-snapdragon-8gen3"):
        target.pick(["chipset:qualcomm-snapdragon-8gen4"])
    with pytest.raises(DeviceSelectionError, match="it has OS 14, 15"):
        target.pick([f"{S24}@[16,)"])
    with pytest.raises(DeviceSelectionError, match="not of the form"):
        target.pick([f"{S24}@[14"])


# -- profile on many devices -------------------------------------------------------------------


def test_profile_on_several_devices(target, hub, onnx_artifact):
    devices = target.pick([S24, S23, S21])
    results = target.profile_many(onnx_artifact, devices, quick(), parity=True)
    assert all(isinstance(r, Profile) for r in results), results
    assert hub.count("POST", "/api/v1/models/") == 1  # uploaded once for all devices
    assert len(hub.jobs_of("compile")) == 3
    profile_jobs = [j for j in hub.jobs_of("inference") if j.profiling]
    assert len(profile_jobs) == 3
    for prof in results:
        job = hub.jobs[prof.details["jobs"]["profile"]["id"]]
        assert job.device.name == prof.device.name and job.profiling
        reported = hub.profile_detail(job)
        # microseconds from the hub -> the same statistics as every other target, in ms
        # every iteration the hub ran is kept: warm-up (if any, at most half) beside the rest
        kept = prof.details["warmup_samples_ms"] + prof.samples_ms
        assert kept == pytest.approx([t / 1000 for t in reported.all_execution_times])
        assert prof.stats.n == len(prof.samples_ms) >= 10 and prof.stats.p50 == pytest.approx(
            np.percentile(prof.samples_ms, 50)
        )
        assert prof.metrics["load_cold_ms"] == pytest.approx(reported.cold_load_time / 1000)
        assert prof.metrics["load_warm_ms"] == pytest.approx(reported.warm_load_time / 1000)
        assert prof.metrics["peak_memory_mb"] == pytest.approx(
            reported.execution_memory.peak.upper / 2**20
        )
        counts = {
            u: sum(
                1
                for layer in reported.layer_details
                if layer.compute_unit == getattr(pb, f"COMPUTE_UNIT_{u.upper()}")
            )
            for u in ("npu", "gpu", "cpu")
        }
        assert prof.details["layers"] == counts
        assert prof.metrics["compute_share_npu"] == pytest.approx(
            counts["npu"] / sum(counts.values())
        )
        assert set(prof.metrics) - set(STANDARD_METRICS) <= set(prof.units) | {
            "parity_max_abs",
            "parity_cosine",
            "parity_top1",
        }
        assert prof.metrics["parity_cosine"] > 0.9999 and prof.metrics["parity_top1"] == 1.0
        assert "--max_profiler_iterations 20" in job.options and "--compute_unit npu" in job.options
        # the compiled model is kept as an artifact with its own manifest
        compiled = Artifact.load(prof.details["compiled_artifact"]).verify()
        aihub = compiled.manifest["aihub"]
        assert aihub["compile_job_id"] == prof.details["jobs"]["compile"]["id"]
        assert aihub["compile_job_url"].endswith(f"/jobs/{aihub['compile_job_id']}/")
        assert (aihub["runtime"], aihub["qairt_version"]) == ("tflite", hub.qairt_version)
        assert compiled.manifest["source_sha256"] == onnx_artifact.sha256
    by_name = {p.device.name: p for p in results}
    assert by_name[S24].compute_unit == "npu" and by_name[S24].stats.p50 < by_name[S21].stats.p50
    assert by_name[S21].compute_unit == "cpu"
    assert any("CPU fallback" in w for w in by_name[S21].warnings)
    assert not any("CPU fallback" in w for w in by_name[S24].warnings)
    # profiling sends no data: the hub runs its own random inputs; only parity's seeded ones left
    seeded, _ = load_reference(onnx_artifact.folder)
    assert len(hub.uploaded_inputs) == 3
    for entries in hub.uploaded_inputs:
        assert all(np.array_equal(a, b) for a, b in zip(entries["pixels"], seeded, strict=True))


def test_upload_is_reused_and_runtime_is_passed(target, hub, onnx_artifact):
    (dev,) = target.pick([S24])
    target.profile(onnx_artifact, dev, quick())
    again = make_target(Path(target.cache_dir).parent)
    prof = again.profile(onnx_artifact, dev, quick(runtime="qnn_dlc"))
    assert hub.count("POST", "/api/v1/models/") == 1
    assert [j.options.split()[1] for j in hub.jobs_of("compile")] == ["tflite", "qnn_dlc"]
    assert prof.runtime == "qnn_dlc" and Path(prof.details["compiled_artifact"]).suffix == ".dlc"


def test_pt2_artifact_is_uploaded_as_an_exported_program(target, hub, tmp_path):
    pt2 = exported(tmp_path / "pt2", "pt2")
    prof = target.profile(pt2, target.pick([S24])[0], quick(runtime="qnn_dlc"))
    (model,) = [m for m in hub.models.values() if "source" not in m]
    assert (
        model["type"] == pb.MODEL_TYPE_TORCH_EXPORTED_PROGRAM
        and model["data"] == pt2.path.read_bytes()
    )
    assert prof.details["layers"]["npu"] > 0 and prof.stats.n == 20


def test_upload_failing_midway_is_retried(target, hub, onnx_artifact):
    hub.fail_upload_parts = 1
    target.profile(onnx_artifact, target.pick([S24])[0], quick())
    (model,) = [m for m in hub.models.values() if "source" not in m]
    assert model["data"] == onnx_artifact.path.read_bytes()  # whole, parts in order
    assert (
        hub.count(
            "PUT", "/blob/model/" + next(k for k, m in hub.models.items() if m is model) + "/0", 500
        )
        == 1
    )


def test_runtime_a_device_lacks_fails_that_device_only(target, hub, onnx_artifact):
    devices = target.pick([S24, "Snapdragon X Elite CRD"])
    ok, no = target.profile_many(onnx_artifact, devices, quick())
    assert isinstance(ok, Profile)
    assert isinstance(no, TargetError) and "does not run tflite" in str(no)
    assert len(hub.jobs_of("compile")) == 1


# -- failures, rate limits, timeouts, resume ----------------------------------------------------


def test_failed_jobs_are_classified_and_do_not_stop_the_others(target, hub, onnx_artifact):
    hub.fail_jobs[("compile", S23)] = (
        pb.JOB_FAILURE_TYPE_MODEL_INVALID,
        "Failed to compile: operator Einsum is not supported by QNN",
    )
    hub.fail_jobs[("profile", S21)] = (
        pb.JOB_FAILURE_TYPE_CLOUD_RESOURCE_MISSING,
        "Device disconnected while profiling.\nPlease try again.",
    )
    ok, model_fail, infra_fail = target.profile_many(
        onnx_artifact, target.pick([S24, S23, S21]), quick()
    )
    assert isinstance(ok, Profile)
    assert (
        isinstance(model_fail, TargetError)
        and model_fail.kind == "model"
        and not model_fail.retryable
    )
    assert "operator Einsum is not supported" in str(model_fail) and "/jobs/j" in str(model_fail)
    assert isinstance(infra_fail, TargetError) and infra_fail.kind == "infrastructure"
    assert "Device disconnected while profiling. Please try again." in str(infra_fail)
    assert "\n" not in str(infra_fail)

    # a re-run resubmits what failed on the hub's side, not what the model cannot do
    hub.fail_jobs.clear()
    rerun = make_target(Path(target.cache_dir).parent)
    _, model_again, infra_again = rerun.profile_many(
        onnx_artifact, target.pick([S24, S23, S21]), quick()
    )
    assert isinstance(model_again, TargetError) and len(jobs_on(hub, "compile", S23)) == 1
    assert isinstance(infra_again, Profile) and len(jobs_on(hub, "inference", S21)) == 2
    assert any("failed on AI Hub's side" in w for w in infra_again.warnings)


def test_a_failed_parity_job_keeps_the_profile(target, hub, onnx_artifact):
    hub.fail_jobs[("inference", S24)] = (
        pb.JOB_FAILURE_TYPE_RUNTIME_CRASH,
        "Segmentation fault in the runtime",
    )
    (prof,) = target.profile_many(onnx_artifact, target.pick([S24]), quick(), parity=True)
    assert isinstance(prof, Profile) and prof.stats.n == 20 and "parity_cosine" not in prof.metrics
    assert any(
        w.startswith("parity not checked") and "Segmentation fault" in w for w in prof.warnings
    )
    with pytest.raises(TargetError, match="Segmentation fault"):
        target.infer(onnx_artifact, target.pick([S24])[0], load_reference(onnx_artifact.folder)[0])


def test_classify_failure_uses_type_then_text():
    assert classify_failure("JOB_FAILURE_TYPE_RUNTIME_DEVICE_OOM", "") == "model"
    assert classify_failure("JOB_FAILURE_TYPE_INTERNAL_LOGIC", "") == "infrastructure"
    assert (
        classify_failure("JOB_FAILURE_TYPE_UNSPECIFIED", "Device unavailable, try again")
        == "infrastructure"
    )
    assert classify_failure("JOB_FAILURE_TYPE_UNSPECIFIED", "Unsupported op GridSample") == "model"


def test_rate_limited_submit_is_retried_without_duplicate_jobs(target, hub, onnx_artifact):
    hub.rate_limit_job_posts = 2
    results = target.profile_many(onnx_artifact, target.pick([S24, S23]), quick())
    assert all(isinstance(r, Profile) for r in results)
    assert hub.count("POST", "/api/v1/jobs/", 429) == 2
    assert len(hub.jobs_of("compile")) == 2 and len(hub.jobs_of("inference")) == 2


@pytest.mark.slow
def test_rate_limit_beyond_the_clients_own_retries(target, hub, onnx_artifact):
    # the client tries 7 times, then vitbench backs off and tries again
    hub.rate_limit_job_posts = 8
    messages = []
    t = make_target(Path(target.cache_dir).parent, progress=lambda who, m: messages.append(m))
    prof = t.profile(onnx_artifact, t.pick([S24])[0], quick())
    assert isinstance(prof, Profile) and hub.count("POST", "/api/v1/jobs/", 429) == 8
    assert any("rate-limiting" in m and "retry 1" in m for m in messages)


def test_slow_job_times_out_and_a_rerun_picks_it_up(target, hub, onnx_artifact):
    hub.job_seconds_by_device[QCS] = 2.0
    fast, slow = target.profile_many(onnx_artifact, target.pick([S24, QCS]), quick(timeout_s=0.5))
    assert isinstance(fast, Profile)
    assert isinstance(slow, TargetError) and slow.kind == "infrastructure"
    assert (
        "still" in str(slow)
        and "after 0.5 s" in str(slow)
        and "run the same command again" in str(slow)
    )
    assert len(jobs_on(hub, "compile", QCS)) == 1

    rerun = make_target(Path(target.cache_dir).parent)
    prof = rerun.profile(onnx_artifact, target.pick([QCS])[0], quick(timeout_s=30))
    assert len(jobs_on(hub, "compile", QCS)) == 1  # picked up, not resubmitted
    assert prof.details["jobs"]["compile"]["resumed"] is True
    assert len(jobs_on(hub, "compile", S24)) == 1


def _cli(args: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _env(hub_env: Path, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.update(
        QAIHUB_CLIENT_INI=str(hub_env),
        HOME=str(tmp_path / "home"),
        VITBENCH_CACHE=str(tmp_path / "cache"),
    )
    return env


def test_resume_after_the_process_is_killed_between_submit_and_result(
    hub, hub_env, tmp_path, onnx_artifact
):
    hub.job_seconds = 3.0  # long enough that the kill surely lands before any result
    journal = tmp_path / "journal.json"
    args = ["aihub", "profile", str(onnx_artifact.path), "--device", S24, "--device", S23]
    args += ["--iterations", "20", "--state", str(journal), "--poll-interval", "0.05", "--json"]
    args += ["--rounds", "1"]  # one job per device: the resume of that job is the question
    env = _env(hub_env, tmp_path)
    first = _cli(args, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until both profile jobs are submitted and journaled
        entries = json.loads(journal.read_text()) if journal.exists() else {}
        if sum("profile" in v for v in entries.values()) == 2:
            break
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL
    submitted = {k: len(hub.jobs_of(k)) for k in ("compile", "inference")}
    assert submitted == {"compile": 2, "inference": 2}
    assert all(j.state(time.time()) != pb.JOB_STATE_DONE for j in hub.jobs_of("inference"))

    second = _cli(args, env)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    rows = json.loads(out)
    assert [r["status"] for r in rows] == ["done", "done"]
    assert {
        k: len(hub.jobs_of(k)) for k in ("compile", "inference")
    } == submitted  # nothing resubmitted
    assert hub.count("POST", "/api/v1/models/") == 1
    for r in rows:
        assert r["profile"]["details"]["jobs"]["profile"]["resumed"] is True
        assert r["profile"]["stats"]["n"] == 20


# -- bad input -----------------------------------------------------------------------------------


def test_executorch_artifact_is_refused_naming_the_formats(target, hub, tmp_path):
    pte = exported(tmp_path / "pte", "executorch")
    assert not target.accepts(pte)
    with pytest.raises(
        ArtifactError, match=r"takes ONNX \(\.onnx\) or a PyTorch ExportedProgram \(\.pt2\)"
    ):
        target.profile(pte, target.pick([S24])[0], quick())
    assert hub.count("POST", "/api/v1/models/") == 0


def test_no_token_says_how_to_configure(hub_env, tmp_path, monkeypatch):
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "missing.ini"))
    t = make_target(tmp_path)
    assert "qai-hub configure --api_token" in t.unavailable_reason()
    with pytest.raises(HubAuthError, match="no AI Hub token.*qai-hub configure --api_token"):
        t.devices()


def test_rejected_token_says_how_to_configure(hub, hub_env, tmp_path):
    hub.write_client_ini(hub_env, token="expired-token")
    with pytest.raises(HubAuthError, match="rejected the API token.*qai-hub configure"):
        make_target(tmp_path).devices()


def test_token_from_the_environment(hub, hub_env, tmp_path, monkeypatch):
    hub.write_client_ini(hub_env, token="")  # an ini with the URL but no token
    with pytest.raises(HubAuthError, match="no AI Hub token in"):
        make_target(tmp_path).devices()
    monkeypatch.setenv("QAI_HUB_API_TOKEN", TOKEN)
    assert make_target(tmp_path).pick([S24])


def test_compile_option_the_hub_rejects_shows_its_message(target, hub, onnx_artifact):
    hub.reject_options["quantize_full_type"] = (
        "--quantize_full_type requires calibration data for this model."
    )
    settings = quick(options={"compile_options": "--quantize_full_type int8"})
    (result,) = target.profile_many(onnx_artifact, target.pick([S24]), settings)
    assert isinstance(result, TargetError) and result.kind == "model"
    assert "--quantize_full_type requires calibration data for this model." in str(result)


def test_cli_errors_are_one_line_and_finished_results_are_kept(
    hub, hub_env, tmp_path, onnx_artifact
):
    env = _env(hub_env, tmp_path)
    hub.fail_jobs[("compile", S23)] = (
        pb.JOB_FAILURE_TYPE_MODEL_INVALID,
        "Unsupported operator Einsum",
    )
    args = ["aihub", "profile", str(onnx_artifact.path), "--device", S24, "--device", S23]
    args += ["--quiet", "--poll-interval", "0.05", "--state", str(tmp_path / "j.json")]
    p = _cli(args, env)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1
    assert S24 in out and "done" in out and "failed (model)" in out
    assert "Unsupported operator Einsum" in err and err.strip().splitlines()[-1].startswith(
        "vitbench: error: 1 of 2"
    )
    assert "Traceback" not in err

    p = _cli(["aihub", "profile", str(onnx_artifact.path), "--device", "Galaxy S99"], env)
    out, err = p.communicate(timeout=60)
    assert (
        p.returncode == 2
        and err.count("\n") == 1
        and "no AI Hub device matches 'Galaxy S99'" in err
    )

    pte = exported(tmp_path / "pte", "executorch")
    p = _cli(["aihub", "profile", str(pte.path), "--device", S24], env)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and err.count("\n") == 1 and ".pt2" in err


def test_cli_devices_json(hub_env, tmp_path):
    p = _cli(["aihub", "devices", "--json"], _env(hub_env, tmp_path))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    rows = json.loads(out)
    assert {
        "name": S24,
        "os": "Android 15",
        "chipset": "qualcomm-snapdragon-8gen3",
    }.items() <= rows[-1].items() or any(
        r["name"] == S24 and r["chipset"] == "qualcomm-snapdragon-8gen3" for r in rows
    )


def test_token_never_reaches_output_logs_journal_or_artifacts(
    hub, hub_env, tmp_path, onnx_artifact, caplog
):
    caplog.set_level(logging.DEBUG)
    hub.fail_jobs[("profile", S23)] = (pb.JOB_FAILURE_TYPE_INTERNAL_LOGIC, "internal error")
    t = make_target(
        tmp_path, progress=lambda who, m: logging.getLogger("test").info("%s %s", who, m)
    )
    results = t.profile_many(onnx_artifact, t.pick([S24, S23]), quick())
    env = _env(hub_env, tmp_path)
    args = ["aihub", "profile", str(onnx_artifact.path), "--device", S24, "--device", S23]
    p = _cli([*args, "--json", "--poll-interval", "0.05"], env)
    out, err = p.communicate(timeout=120)
    texts = [
        caplog.text,
        out,
        err,
        json.dumps([r.to_dict() if isinstance(r, Profile) else str(r) for r in results]),
    ]
    texts += [
        f.read_text(errors="replace")
        for f in (tmp_path / "cache").rglob("*")
        if f.is_file() and f.suffix in (".json", "")
    ]
    assert len(texts) > 5 and any("journal" in str(f) for f in (tmp_path / "cache").rglob("*.json"))
    for text in texts:
        assert TOKEN not in text


# -- infer: what may leave the machine ---------------------------------------------------------


def test_infer_sends_only_seeded_inputs_unless_allowed(target, hub, onnx_artifact):
    (dev,) = target.pick([S24])
    seeded, reference = load_reference(onnx_artifact.folder)
    outputs = target.infer(onnx_artifact, dev, seeded)
    assert len(outputs) == len(reference)
    for got, want in zip(outputs, reference, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert len(hub.uploaded_inputs) == 1

    patient = [np.full((1, 3, 32, 32), 0.25, dtype=np.float32)]
    with pytest.raises(UserError, match="--allow-data-upload"):
        target.infer(onnx_artifact, dev, patient)
    assert len(hub.uploaded_inputs) == 1 and hub.count("POST", "/api/v1/datasets/") == 1

    out = target.infer(onnx_artifact, dev, patient, allow_data_upload=True)
    assert len(out) == 1 and len(hub.uploaded_inputs) == 2
    assert np.array_equal(hub.uploaded_inputs[-1]["pixels"][0], patient[0])
    # seeded inputs from the default seed are synthetic too
    target.infer(onnx_artifact, dev, seeded_inputs((1, 3, 32, 32), 2, 0))
    assert len(hub.uploaded_inputs) == 3


def test_cli_infer_uploads_real_images_only_with_the_flag(hub, hub_env, tmp_path, onnx_artifact):
    env = _env(hub_env, tmp_path)
    images = tmp_path / "xrays.npy"
    np.save(images, np.linspace(0, 1, 2 * 3 * 32 * 32, dtype=np.float32).reshape(2, 3, 32, 32))
    base = ["aihub", "infer", str(onnx_artifact.path), "--device", S24, "--poll-interval", "0.05"]
    base += ["--state", str(tmp_path / "j.json")]
    p = _cli([*base, "--inputs", str(images)], env)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "--allow-data-upload" in err and err.count("\n") == 1
    assert hub.count("POST", "/api/v1/datasets/") == 0 and hub.count("POST", "/api/v1/models/") == 0

    upload = ["--inputs", str(images), "--allow-data-upload"]
    p = _cli([*base, *upload, "--out", str(tmp_path / "y.npy"), "--json"], env)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert np.load(tmp_path / "y.npy").shape == (2, 5) and len(json.loads(out)["top1"]) == 2
    assert np.array_equal(np.concatenate(hub.uploaded_inputs[-1]["pixels"]), np.load(images))

    p = _cli(base, env)  # the seeded inputs: a parity check on the device
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    # the NPU computes an fp32 export in fp16: judged with the fp16 tolerance
    assert "parity: max abs" in out and "within fp16 tolerance" in out
