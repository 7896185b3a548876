"""The host target end to end: real worker processes running ONNX Runtime, ExecuTorch
(XNNPACK) and PyTorch on small artifacts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from harness.artifact import Artifact
from harness.cli import main
from harness.model import build_model
from harness.parity import check
from harness.target import ProfileSettings, TargetError
from targets.agent.client import local_agent_command, local_agent_env, run_agent
from targets.host import HostTarget
from tests.support.agent_events import first_sample
from tests.support.artifacts import exported
from tests.support.models import small_config

FAST = ["--iterations", "15", "--min-seconds", "0.2", "--warmup", "2", "--rounds", "1"]


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("host-artifacts")
    return {fmt: exported(root / fmt, fmt) for fmt in ("onnx", "executorch", "pt2")}


def _cli(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output


@pytest.mark.parametrize(
    "fmt, runtime", [("onnx", "ort"), ("executorch", "executorch"), ("pt2", "torch")]
)
def test_profile_reports_every_number(artifacts, fmt, runtime):
    code, out = _cli("profile", artifacts[fmt].folder, *FAST, "--json")
    assert code == 0, out
    prof = json.loads(out)
    assert prof["runtime"] == runtime and prof["target"] == "host"
    assert len(prof["samples_ms"]) >= 15 and prof["stats"]["n"] == len(prof["samples_ms"])
    stats = prof["stats"]
    for key in ("p50", "p90", "p99", "mean", "std", "cv", "p50_ci", "p90_ci", "drift", "outliers"):
        assert key in stats
    assert stats["p50_ci"][0] <= stats["p50"] <= stats["p50_ci"][1]
    m = prof["metrics"]
    for key in ("load_cold_ms", "load_warm_ms", "first_inference_ms", "peak_memory_mb"):
        assert m[key] > 0, key
    if fmt == "executorch":
        assert m["planned_memory_mb"] > 0
        assert "XnnpackBackend" in prof["details"]["facts"]["delegates"]
    env = prof["environment"]
    for key in (
        "cpu",
        "cores_usable",
        "threads",
        "load_average_before",
        "load_average_after",
        "runtime_version",
        "memory_method",
    ):
        assert key in env, key
    assert env["threads"] == os.cpu_count() or env["threads"] == len(os.sched_getaffinity(0))


def test_profile_table_and_threads(artifacts):
    code, out = _cli("profile", artifacts["onnx"].folder, *FAST, "--threads", "1")
    assert code == 0, out
    for label in (
        "p50",
        "p90 95% CI",
        "p99",
        "CV",
        "drift",
        "outliers",
        "load cold",
        "load warm",
        "first inference",
        "peak memory",
        "load average before",
        "threads",
    ):
        assert label in out, label
    assert "threads                                1" in out or "\nthreads" in out


def test_rounds_run_in_fresh_workers_and_keep_their_samples(artifacts):
    args = ["--iterations", "20", "--min-seconds", "0.1", "--warmup", "1", "--threads", "1"]
    code, out = _cli("profile", artifacts["onnx"].folder, *args, "--rounds", "2", "--json")
    assert code == 0, out
    prof = json.loads(out)
    rounds = prof["details"]["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and prof["stats"]["rounds"] == 2
    assert all(r["iterations"] >= 10 for r in rounds)  # each its share of 20, at least 10
    assert prof["sample_rounds"] == [0] * rounds[0]["iterations"] + [1] * rounds[1]["iterations"]
    pids = [r["details"]["worker_pid"] for r in rounds]
    assert len(set(pids)) == 2 and os.getpid() not in pids  # a fresh worker per round
    assert prof["metrics"]["load_cold_ms"] > 0  # each round loaded cold: their median
    code, out = _cli("profile", artifacts["onnx"].folder, *args, "--rounds", "2")
    assert code == 0 and "between-round CV" in out and "within-round CV" in out, out
    code, out = _cli("profile", artifacts["onnx"].folder, "--quick", "--json")
    assert code == 0 and json.loads(out)["stats"]["rounds"] == 1, out


def test_peak_memory_grows_with_the_model(tmp_path):
    small = exported(tmp_path / "s", "onnx")
    big = exported(
        tmp_path / "b",
        "onnx",
        cfg=small_config(
            embed_dim=256, head_dim=32, num_heads=(8, 8, 8), mlp_dims=(1024, 1024, 1024)
        ),
    )
    host, settings = (
        HostTarget(),
        ProfileSettings.quick().with_loop(min_seconds=0.1, min_iterations=5),
    )
    dev = host.devices()[0]
    a = host.profile(small, dev, settings).metrics["peak_memory_mb"]
    b = host.profile(big, dev, settings).metrics["peak_memory_mb"]
    weights_mb = (big.manifest["size"] - small.manifest["size"]) / 1e6
    assert b - a > 0.5 * weights_mb, (a, b, weights_mb)


def test_infer_matches_pytorch(artifacts):
    cfg = small_config()
    model = build_model(cfg)
    x = [
        np.random.default_rng(i).standard_normal((1, 3, 32, 32)).astype(np.float32)
        for i in range(3)
    ]
    with torch.no_grad():
        ref = [model(torch.from_numpy(a)).numpy() for a in x]
    host = HostTarget()
    for fmt in ("onnx", "executorch"):
        out = host.infer(artifacts[fmt], host.devices()[0], x)
        assert check(ref, out, "fp32").passed, (fmt, check(ref, out, "fp32"))


# -- bad input ---------------------------------------------------------------------------


def _one_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vitbench: error: "), out
    assert "Traceback" not in out
    return lines[0]


def test_artifact_the_host_cannot_run(tmp_path, artifacts):
    folder = tmp_path / "coreml"
    shutil.copytree(artifacts["onnx"].folder, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format"] = "coreml"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, out = _cli("profile", folder, *FAST)
    assert code == 2 and "Core ML predicts only on macOS" in _one_line(out) and "apple" in out
    manifest["format"], manifest["delegate"] = "executorch", "qnn"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, out = _cli("profile", folder, *FAST)
    assert code == 2 and "QNN needs a Snapdragon device" in _one_line(out) and "aihub" in out


def test_corrupt_artifact_is_detected_before_loading(tmp_path, artifacts):
    folder = tmp_path / "cut"
    shutil.copytree(artifacts["onnx"].folder, folder)
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 2])
    code, out = _cli("profile", folder, *FAST)
    assert code == 2 and "corrupt or truncated" in _one_line(out)
    (folder / "model.onnx").write_bytes(data[:-4] + b"\0\0\0\0")
    code, out = _cli("profile", folder, *FAST)
    assert code == 2 and "corrupt: sha256" in _one_line(out)


def test_missing_artifact_and_wrong_runtime(tmp_path, artifacts):
    code, out = _cli("profile", tmp_path / "none", *FAST)
    assert code == 2 and "does not exist" in _one_line(out)
    code, out = _cli("profile", artifacts["onnx"].folder, "--runtime", "torch", *FAST)
    assert code == 2 and "cannot run a onnx artifact" in _one_line(out)


def test_input_shape_that_does_not_fit(artifacts):
    host = HostTarget()
    from harness.errors import UserError

    with pytest.raises(
        UserError, match=r"shape \(1, 3, 64, 64\) but the artifact takes \(1, 3, 32, 32\)"
    ):
        host.infer(artifacts["onnx"], host.devices()[0], [np.zeros((1, 3, 64, 64), np.float32)])
    with pytest.raises(UserError, match="fixed batch of 1"):
        host.profile(artifacts["onnx"], host.devices()[0], ProfileSettings.quick(batch_size=4))


def _agent_children() -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if b"targets.agent" in cmd and ppid == os.getpid():
            pids.append(int(pid))
    return pids


def test_worker_killed_mid_run_keeps_its_samples(artifacts, monkeypatch):
    sampled = first_sample(monkeypatch)
    host = HostTarget()
    settings = ProfileSettings.quick().with_loop(min_seconds=120, max_seconds=120)
    box = {}

    def run():
        try:
            host.profile(artifacts["onnx"], host.devices()[0], settings)
        except TargetError as exc:
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while not _agent_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sampled.wait(120), "the worker took no sample in 120 s"
    for pid in _agent_children():
        os.kill(pid, signal.SIGKILL)
    t.join(60)
    err = box["error"]
    assert "killed by SIGKILL" in str(err) and err.kind == "infrastructure" and err.retryable
    assert len(err.samples_ms) > 0


def test_hung_worker_times_out_with_its_samples(artifacts):
    code, out = _cli("profile", artifacts["onnx"].folder, "--min-seconds", "120", "--timeout", "4")
    line = _one_line(out)
    assert code == 1 and "timed out after 4 s with" in line
    taken = int(line.split("with ")[1].split()[0])
    assert taken > 0


def test_agent_refuses_what_it_does_not_understand(artifacts):
    env = local_agent_env()
    with pytest.raises(TargetError, match="version mismatch: vitbench expects agent '0.9'"):
        run_agent(
            local_agent_command(), {"action": "describe", "agent_version": "0.9"}, 60, env=env
        )
    with pytest.raises(TargetError, match="unknown runtime 'tensorrt'"):
        run_agent(
            local_agent_command(),
            {"action": "profile", "runtime": "tensorrt", "artifact": {"path": "x", "inputs": []}},
            60,
            env=env,
        )
    with pytest.raises(TargetError, match="unknown action 'dance'"):
        run_agent(local_agent_command(), {"action": "dance"}, 60, env=env)
    ans = run_agent(local_agent_command(), {"action": "describe"}, 60, env=env)
    assert ans.result["runtimes"]["ort"] is True and ans.hello["agent_version"]


def test_runtime_plugins_that_cannot_be_used_are_reported(register_plugin, tmp_path, artifacts):
    from targets.agent.registry import installed_runtimes

    register_plugin("vitbench.runtimes", "decoder", "json:JSONDecoder")
    register_plugin("vitbench.runtimes", "gone", "vitbench_no_such_module:Runtime")
    register_plugin("vitbench.runtimes", "ort", "targets.agent.runtimes:OrtRuntime")
    register_plugin("vitbench.runtimes", "eager", "targets.agent.runtimes:TorchRuntime")
    found = installed_runtimes()
    assert found.names()[:4] == ["ort", "executorch", "torch", "coreml"]
    assert "not a subclass of targets.agent.runtimes.Runtime" in found.broken["decoder"]
    assert "vitbench_no_such_module" in found.broken["gone"]
    assert "already a built-in runtime" in found.broken["ort"]
    assert "is called 'torch', its entry point 'eager'" in found.broken["eager"]
    folder = tmp_path / "ts"
    shutil.copytree(artifacts["onnx"].folder, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format"] = "torchscript"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    why = HostTarget().refusal(Artifact.load(folder))
    assert "runs onnx, executorch (xnnpack/portable) and pt2 artifacts, not torchscript" in why
    assert "runtime plugins that failed to load: decoder: json:JSONDecoder" in why
    assert HostTarget().refusal(artifacts["onnx"]) == ""


def test_targets_lists_the_host(artifacts):
    code, out = _cli("targets", "--json")
    assert code == 0, out
    rows = {r["target"]: r for r in json.loads(out)}
    assert rows["host"]["available"] and rows["host"]["devices"][0]["name"] == "host"
    code, out = _cli("targets", "--target", "nope")
    assert code == 2 and "unknown target 'nope'" in _one_line(out)


def test_artifact_load_roundtrip(artifacts):
    a = artifacts["onnx"]
    assert (
        Artifact.load(a.path).sha256 == a.sha256 == Artifact.load(a.folder / "manifest.json").sha256
    )


def test_other_load_before_a_run_is_measured_and_warned_about(artifacts):
    import subprocess
    import sys

    from targets.agent.probes import cpu_busy_fraction

    quiet = cpu_busy_fraction(0.5)
    cores = len(os.sched_getaffinity(0))
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        deadline = time.monotonic() + 60
        busy = cpu_busy_fraction(0.5)
        while busy < 0.8 and time.monotonic() < deadline:  # the spinners take a moment
            busy = cpu_busy_fraction(0.5)
        prof = HostTarget().profile(
            artifacts["onnx"],
            HostTarget().devices()[0],
            ProfileSettings.quick().with_loop(min_seconds=0.1, min_iterations=5),
        )
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    # every core spinning; on a machine already busy before (``quiet`` near 1) the spinners
    # cannot add to it, so only the reading under them is checked
    assert busy >= 0.8, (busy, quiet)
    assert prof.environment["cpu_busy_before"] >= 0.5
    assert any("other processes kept" in w for w in prof.warnings)
