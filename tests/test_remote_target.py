"""The remote and apple targets end to end through a real OpenSSH server on loopback: copy the
agent and the artifact, run the agent (ONNX Runtime, ExecuTorch), read its JSON answer, clean
up; and every way it can go wrong (unreachable, refused key, no Python, no runtime, Core ML
on a non-Mac, agent killed or hung)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from harness.cli import main
from harness.model import build_model
from harness.parity import save_reference, seeded_inputs
from harness.target import Device, ProfileSettings, TargetError
from targets.agent.coreml import summarize_compute_plan
from targets.agent.probes import parse_pmset_therm
from targets.apple import AppleTarget
from targets.remote.config import HostConfigError, load_hosts
from targets.remote.target import RemoteTarget
from tests.support.agent_events import first_sample
from tests.support.artifacts import exported
from tests.support.models import small_config
from tests.support.ssh_server import start_sshd, stop_sshd

FAST = ["--iterations", "10", "--min-seconds", "0.2", "--warmup", "2", "--rounds", "1"]
QUICK = ProfileSettings.quick().with_loop(min_iterations=10, min_seconds=0.2, warmup_iterations=2)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    stop_sshd(server)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote-artifacts")
    arts = {fmt: exported(root / fmt, fmt) for fmt in ("onnx", "executorch")}
    model = build_model(small_config()).eval()
    inputs = seeded_inputs((1, 3, 32, 32), count=3, seed=7)
    with torch.no_grad():
        outputs = [model(torch.from_numpy(x)).numpy()[0] for x in inputs]
    save_reference(arts["executorch"].folder, outputs, (1, 3, 32, 32), 3, 7)
    return arts


@pytest.fixture(scope="session")
def coreml_artifact(tmp_path_factory):
    return exported(tmp_path_factory.mktemp("remote-coreml") / "coreml", "coreml")


@pytest.fixture
def hosts(tmp_path, sshd, monkeypatch):
    """Write a hosts file; returns (cache folder on the 'remote' host, write function)."""
    cache = tmp_path / "remote-cache"

    def write(**entries: dict) -> None:
        lines = []
        for name, entry in entries.items():
            entry = {
                "python": sys.executable,
                "cache_dir": str(cache),
                "ssh_config": str(sshd.client_config),
                "connect_timeout_s": 5,
                **entry,
            }
            lines.append(f"[hosts.{name}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in entry.items()]
        path = tmp_path / "hosts.toml"
        path.write_text("\n".join(lines) + "\n")
        monkeypatch.setenv("VITBENCH_HOSTS", str(path))

    return cache, write


def _cli(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output


def _one_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vitbench: error: "), out
    return lines[0]


def _device(target, name: str) -> Device:
    return next(d for d in target.devices() if d.name == name)


def _agents_under(folder) -> list[int]:
    """Agent processes (started by sshd) running from ``folder``."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if any(str(folder).encode() in part and part.endswith(b"agent.pyz") for part in cmd):
                pids.append(int(pid))
    return pids


# -- the whole path -------------------------------------------------------------------------


def test_onnx_over_ssh_end_to_end(hosts, artifacts):
    cache, write = hosts
    write(board={"target": "remote", "ssh": "vb-host"})
    code, out = _cli(
        "profile",
        artifacts["onnx"].folder,
        "--target",
        "remote",
        "--device",
        "board",
        *FAST,
        "--json",
    )
    assert code == 0, out
    prof = json.loads(out)
    assert (
        prof["target"] == "remote"
        and prof["runtime"] == "ort"
        and prof["device"]["name"] == "board"
    )
    assert len(prof["samples_ms"]) >= 10 and prof["stats"]["n"] == len(prof["samples_ms"])
    for key in ("load_cold_ms", "load_warm_ms", "first_inference_ms", "peak_memory_mb"):
        assert prof["metrics"][key] > 0, key
    env = prof["environment"]
    assert (
        env["host"] == "vb-host" and "thermal_state_before_wait" in env and env["runtime_version"]
    )
    dev = prof["device"]
    assert dev["attributes"]["reachable"] and "ort" in dev["attributes"]["runtimes"]
    assert (
        dev["os"].startswith("Linux ") and dev["attributes"]["memory_bytes"] > 0 and dev["chipset"]
    )
    assert cache.is_dir() and os.listdir(cache) == []  # agent, artifact and scratch removed


def test_rounds_over_ssh_are_separate_agents(hosts, artifacts):
    _, write = hosts
    write(board={"target": "remote", "ssh": "vb-host"})
    args = ["--iterations", "10", "--min-seconds", "0.1", "--warmup", "1", "--rounds", "2"]
    code, out = _cli(
        "profile", artifacts["onnx"].folder, "--target", "remote", "--device", "board", *args,
        "--json",
    )  # fmt: skip
    assert code == 0, out
    prof = json.loads(out)
    rounds = prof["details"]["rounds"]
    assert prof["stats"]["rounds"] == 2 and sorted(set(prof["sample_rounds"])) == [0, 1]
    assert len({r["details"]["worker_pid"] for r in rounds}) == 2  # an agent per round
    assert all(r["environment"]["host"] == "vb-host" for r in rounds)


def test_executorch_through_the_apple_target_copies_once(hosts, artifacts):
    cache, write = hosts
    write(mac={"target": "apple", "ssh": "vb-host", "keep_cache": True})
    apple = AppleTarget()
    dev = _device(apple, "mac")
    art = artifacts["executorch"]
    # two settings, one copy; thermal wait recorded (Linux has no thermal state: no wait)
    profs = list(apple.iter_profiles(art, dev, [QUICK, QUICK.with_loop(min_iterations=12)]))
    assert profs[0].stats.n >= 10 and profs[1].stats.n >= 12
    assert profs[0].compute_unit == "cpu" and set(profs[0].details["facts"]["delegates"]) == {
        "XnnpackBackend"
    }
    assert profs[0].environment["thermal_wait_s"] < 1
    kept = sorted(os.listdir(cache))
    assert [k.split("-")[0] for k in kept] == ["agent", "artifact"], kept
    inode = os.stat(cache / kept[1]).st_ino
    # infer on seeded inputs, compared with PyTorch: the kept artifact is not copied again,
    # the inputs and outputs are removed
    result = apple.parity(art, dev)
    assert result.passed and result.n == 3 and result.cosine > 0.99999 and result.top1 == 1.0
    assert sorted(os.listdir(cache)) == kept and os.stat(cache / kept[1]).st_ino == inode


def test_local_host_runs_without_ssh(tmp_path, monkeypatch, artifacts):
    (tmp_path / "hosts.toml").write_text('[hosts.here]\ntarget = "remote"\nssh = "local"\n')
    monkeypatch.setenv("VITBENCH_HOSTS", str(tmp_path / "hosts.toml"))
    remote = RemoteTarget()
    dev = _device(remote, "here")
    assert dev.attributes["reachable"] and dev.attributes["python"] == sys.executable
    out = remote.infer(artifacts["onnx"], dev, [np.zeros((1, 3, 32, 32), np.float32)])
    assert out[0].shape == (1, 5)


def test_shipped_agent_needs_only_the_standard_library(tmp_path):
    """The zipapp answers from a Python without site-packages: nothing it imports is left
    behind. Its bytes, and so its name on the host, do not change between builds."""
    import zipfile

    from targets.agent.bundle import build_bundle
    from targets.agent.protocol import AGENT_VERSION, PROTOCOL

    bundle = build_bundle()
    assert build_bundle().sha256 == bundle.sha256 and bundle.name.startswith(
        f"agent-{AGENT_VERSION}-"
    )
    path = tmp_path / "agent.pyz"
    path.write_bytes(bundle.data)
    request = {"action": "describe", "protocol": PROTOCOL, "agent_version": AGENT_VERSION}
    out = subprocess.run(
        [sys.executable, "-I", "-S", str(path)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
    )
    last = json.loads(out.stdout.splitlines()[-1])
    assert last["event"] == "result", out.stdout + out.stderr
    assert last["numpy"] is False and set(last["runtimes"]) == {
        "ort",
        "executorch",
        "torch",
        "coreml",
    }
    names = zipfile.ZipFile(path).namelist()
    assert "harness/timing.py" in names and "targets/agent/service.py" in names
    assert "targets/agent/client.py" not in names and "harness/target.py" not in names


# -- Core ML: what Linux can do --------------------------------------------------------------


def test_coreml_spec_read_on_the_host_and_prediction_refused(hosts, coreml_artifact):
    cache, write = hosts
    write(mac={"target": "apple", "ssh": "vb-host"})
    apple = AppleTarget()
    dev = _device(apple, "mac")
    spec = apple.inspect(coreml_artifact, dev)  # the .mlpackage folder travels as a tar stream
    assert spec["model_type"] == "mlProgram" and spec["inputs"][0]["name"] == "pixels"
    assert spec["inputs"][0]["shape"] == [1, 3, 32, 32] and spec["outputs"][0]["name"] == "logits"
    assert (
        spec["operations"]["softmax"] == 3 and spec["operations"]["conv"] == 1
    )  # 3 blocks, 1 patch conv
    code, out = _cli(
        "profile",
        coreml_artifact.folder,
        "--target",
        "apple",
        "--device",
        "mac",
        "--compute-unit",
        "CPU_AND_NE",
        *FAST,
    )
    assert code == 1 and "Core ML predicts only on macOS (this host runs Linux)" in _one_line(out)
    code, out = _cli(
        "profile",
        coreml_artifact.folder,
        "--target",
        "apple",
        "--device",
        "mac",
        "--compute-unit",
        "NPU_PLEASE",
        *FAST,
    )
    assert code == 2 and "unknown Core ML compute units 'NPU_PLEASE'" in _one_line(out)
    assert os.listdir(cache) == []


def test_compute_plan_summary_flags_neural_engine_fallback():
    rows = [
        ("const", "cpu", None),
        ("conv", "neural_engine", 0.5),
        ("linear", "neural_engine", 0.3),
        ("gelu", "cpu", 0.15),
        ("gelu", "cpu", 0.05),
    ]
    plan = summarize_compute_plan(rows, "ALL")
    assert plan["operations"] == {"neural_engine": 2, "gpu": 0, "cpu": 2}
    assert (
        plan["cost_share"]["neural_engine"] == pytest.approx(0.8)
        and plan["share_basis"] == "estimated cost"
    )
    assert plan["neural_engine_fallback"] and plan["off_neural_engine"] == {"gelu": 2}
    cpu_only = summarize_compute_plan([(t, "cpu", None) for t, _, _ in rows], "CPU_ONLY")
    assert not cpu_only["neural_engine_fallback"] and cpu_only["cost_share"]["cpu"] == 1.0
    assert cpu_only["share_basis"] == "operation count"


def test_pmset_thermal_text():
    nominal = (
        "Note: No thermal warning level has been recorded\n"
        "Note: No performance warning level has been recorded\n"
        "Note: No CPU power status has been recorded\n"
    )
    assert parse_pmset_therm(nominal) == "nominal"
    assert (
        parse_pmset_therm(
            "CPU_Scheduler_Limit \t= 100\nCPU_Available_CPUs \t= 8\nCPU_Speed_Limit \t= 100"
        )
        == "nominal"
    )
    assert parse_pmset_therm("CPU_Scheduler_Limit \t= 100\nCPU_Speed_Limit \t= 62") == "serious"
    assert parse_pmset_therm("") is None


# -- what goes wrong -------------------------------------------------------------------------


def test_unreachable_refused_and_unresolvable_hosts_say_which(hosts, artifacts):
    _, write = hosts
    write(
        closed={"target": "remote", "ssh": "vb-closed"},
        wrongkey={"target": "remote", "ssh": "vb-wrongkey"},
        nowhere={"target": "remote", "ssh": "vb-nowhere"},
        strangekey={"target": "remote", "ssh": "vb-strangekey"},
        board={"target": "remote", "ssh": "vb-host"},
    )
    code, out = _cli("targets", "--target", "remote", "--json")
    assert code == 0, out
    devices = {d["name"]: d["attributes"] for d in json.loads(out)[0]["devices"]}
    assert devices["board"]["reachable"] and not devices["closed"]["reachable"]
    assert (
        "cannot reach vb-closed" in devices["closed"]["reason"]
        and "Connection refused" in devices["closed"]["reason"]
    )
    assert "vb-wrongkey refused authentication" in devices["wrongkey"]["reason"]
    assert "host name does not resolve" in devices["nowhere"]["reason"]
    assert "vb-strangekey: host key unknown or changed" in devices["strangekey"]["reason"]
    code, out = _cli(
        "profile", artifacts["onnx"].folder, "--target", "remote", "--device", "wrongkey", *FAST
    )
    line = _one_line(out)
    assert (
        code == 1
        and "vb-wrongkey refused authentication" in line
        and "Permission denied (publickey)" in line
    )
    assert "authorized_keys" in line
    code, out = _cli(
        "profile", artifacts["onnx"].folder, "--target", "remote", "--device", "closed", *FAST
    )
    assert code == 1 and "cannot reach vb-closed" in _one_line(out)


def test_python_or_runtime_missing_on_the_host(hosts, artifacts, tmp_path):
    bare = tmp_path / "bare"  # a Python with nothing installed: no numpy, no runtimes
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    _, write = hosts
    write(
        nopython={"target": "remote", "ssh": "vb-host", "python": "/nonexistent/bin/python3"},
        bare={"target": "remote", "ssh": "vb-host", "python": str(bare / "bin" / "python")},
    )
    remote = RemoteTarget()
    devices = {d.name: d for d in remote.devices()}
    assert not devices["nopython"].attributes["reachable"]
    assert (
        "no Python at /nonexistent/bin/python3 on vb-host"
        in devices["nopython"].attributes["reason"]
    )
    assert devices["bare"].attributes["reachable"] and devices["bare"].attributes["runtimes"] == []
    code, out = _cli(
        "profile", artifacts["onnx"].folder, "--target", "remote", "--device", "nopython", *FAST
    )
    line = _one_line(out)
    assert (
        code == 1 and "no Python at /nonexistent/bin/python3" in line and "[hosts.nopython]" in line
    )
    code, out = _cli(
        "profile", artifacts["onnx"].folder, "--target", "remote", "--device", "bare", *FAST
    )
    line = _one_line(out)
    assert code == 1 and "onnxruntime is not installed for" in line
    assert f"install it there: {bare / 'bin' / 'python'} -m pip install onnxruntime" in line


def test_agent_killed_on_the_host_keeps_its_samples(hosts, artifacts, monkeypatch):
    sampled = first_sample(monkeypatch)
    cache, write = hosts
    write(board={"target": "remote", "ssh": "vb-host"})
    remote = RemoteTarget()
    dev = _device(remote, "board")
    box = {}

    def run():
        try:
            remote.profile(
                artifacts["onnx"], dev, QUICK.with_loop(min_seconds=120, max_seconds=120)
            )
        except TargetError as exc:
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while not _agents_under(cache) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sampled.wait(120), "the agent took no sample in 120 s"
    for pid in _agents_under(cache):
        os.kill(pid, signal.SIGKILL)
    t.join(60)
    err = box["error"]
    assert "agent on vb-host died" in str(err) and err.kind == "infrastructure"
    assert len(err.samples_ms) > 0
    assert os.listdir(cache) == []


def test_hung_agent_times_out_and_ends_on_the_host(hosts, artifacts):
    cache, write = hosts
    write(board={"target": "remote", "ssh": "vb-host"})
    code, out = _cli(
        "profile",
        artifacts["onnx"].folder,
        "--target",
        "remote",
        "--device",
        "board",
        "--min-seconds",
        "120",
        "--timeout",
        "5",
    )
    line = _one_line(out)
    assert code == 1 and "agent on vb-host timed out after 5 s with" in line
    assert int(line.split("with ")[1].split()[0]) > 0
    deadline = time.monotonic() + 15
    while _agents_under(cache) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _agents_under(cache)  # the remote agent did not outlive the run


def test_artifacts_a_target_does_not_take(hosts, artifacts, coreml_artifact):
    _, write = hosts
    write(board={"target": "remote", "ssh": "vb-host"}, mac={"target": "apple", "ssh": "vb-host"})
    code, out = _cli(
        "profile", artifacts["onnx"].folder, "--target", "apple", "--device", "mac", *FAST
    )
    line = _one_line(out)
    assert code == 2 and "the apple target runs coreml, executorch artifacts, not onnx" in line
    capable = line.split("targets that take it: ")[1].rstrip(")").split(", ")
    assert "host" in capable and "remote" in capable and "apple" not in capable
    code, out = _cli(
        "profile", coreml_artifact.folder, "--target", "remote", "--device", "board", *FAST
    )
    assert code == 2 and "not coreml; use the apple target" in _one_line(out)


def test_hosts_file_mistakes(tmp_path, monkeypatch):
    path = tmp_path / "hosts.toml"
    monkeypatch.setenv("VITBENCH_HOSTS", str(path))
    with pytest.raises(HostConfigError, match="does not exist"):
        load_hosts()
    path.write_text('[hosts.mac]\ntarget = "apple"\npyton = "python3"\n')
    with pytest.raises(HostConfigError, match=r"\[hosts.mac\] has unknown keys pyton"):
        load_hosts()
    path.write_text('[hosts.mac]\ntarget = "windows"\n')
    with pytest.raises(HostConfigError, match="target 'windows' is not one of apple, remote"):
        load_hosts()
    path.write_text('[hosts.mac]\ntarget = "apple"\nssh = "-oProxyCommand=x"\n')
    with pytest.raises(HostConfigError, match="may not start with '-'"):
        load_hosts()
    code, out = _cli("targets", "--target", "apple")
    assert code == 0 and "may not start with '-'" in out
