"""The Android target end to end: vitbench's adb client against a fake adb server on loopback
that runs stand-in runners in per-phone sandbox folders (tests/support/fake_adb.py)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import UserError
from harness.measure import LoopSettings
from harness.parity import REFERENCE_COUNT
from harness.target import ProfileSettings, TargetError
from targets.android.adb import AdbClient, AdbServerUnreachable, DeviceNotFound
from targets.android.runners import RunnerError
from targets.android.target import AndroidTarget
from tests.support.android_runners import elf_file, install_runners
from tests.support.artifacts import (
    exported,
    relabel,
    replace_model,
    without_reference,
    wrong_reference,
)
from tests.support.fake_adb import FakeAdbServer, mediatek_phone, snapdragon_phone
from tests.support.loopback import free_port


@pytest.fixture
def etdump_env(monkeypatch):
    from targets.android.etdump import flatc_and_schema

    flatc, schema = flatc_and_schema()
    monkeypatch.setenv("VITBENCH_FLATC", flatc)
    monkeypatch.setenv("VITBENCH_ETDUMP_SCHEMA", str(schema))


@pytest.fixture
def lab(tmp_path, etdump_env, request):
    phone_kw = getattr(request, "param", {})
    with FakeAdbServer() as srv:
        snap = srv.add(
            snapdragon_phone(tmp_path / "phones", rooted=True, **phone_kw.get("snap", {}))
        )
        mtk = srv.add(mediatek_phone(tmp_path / "phones", **phone_kw.get("mtk", {})))
        runners = install_runners(tmp_path / "runners")
        target = AndroidTarget(
            srv.address,
            runners={
                "executorch": str(runners["executor_runner"]),
                "onnxruntime": str(runners["onnxruntime_perf_test"]),
            },
        )
        yield SimpleNamespace(
            srv=srv, snap=snap, mtk=mtk, runners=runners, target=target, tmp=tmp_path
        )


def pte(folder: Path, **manifest):
    """The exporter's ExecuTorch program for the small ViT (XNNPACK), relabelled by
    ``manifest`` (``delegate="qnn"``) where it stands in for one this machine cannot build."""
    art = exported(folder, "executorch")
    return relabel(art, **manifest) if manifest else art


def settings(warmup=2, n=15, min_seconds=0.0, **options) -> ProfileSettings:
    loop = LoopSettings(
        warmup_iterations=warmup, warmup_seconds=0, min_iterations=n, min_seconds=min_seconds
    )
    return ProfileSettings(loop=loop, options={"poll_s": 0.01, "max_wait_s": 5.0} | options)


def left_on_phone(phone) -> list[str]:
    root = phone.root / "data/local/tmp/vitbench"
    return (
        sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        if root.exists()
        else []
    )


# -- the client and the listing ---------------------------------------------------------------


def test_client_speaks_the_host_protocol(lab):
    client = AdbClient(lab.srv.address)
    assert client.version() == 41
    entries = {e.serial: e for e in client.devices()}
    assert set(entries) == {"R5CX10SNAP", "10AD5F0MTK"}
    assert (
        entries["R5CX10SNAP"].state == "device"
        and entries["R5CX10SNAP"].details["model"] == "SM-S928B"
    )
    res = client.shell("R5CX10SNAP", "echo out; echo err >&2; exit 3")
    assert (res.stdout, res.stderr, res.exit_code) == ("out\n", "err\n", 3)
    local = lab.tmp / "blob.bin"
    local.write_bytes(bytes(range(256)) * 600)  # > one 64 KiB DATA packet
    assert client.push("R5CX10SNAP", local, "/data/local/tmp/blob.bin") == local.stat().st_size
    st = client.stat("R5CX10SNAP", "/data/local/tmp/blob.bin")
    assert st.exists and st.size == local.stat().st_size
    back = lab.tmp / "back.bin"
    client.pull("R5CX10SNAP", "/data/local/tmp/blob.bin", back)
    assert back.read_bytes() == local.read_bytes()
    assert not client.stat("R5CX10SNAP", "/data/local/tmp/none").exists
    with pytest.raises(DeviceNotFound, match="not attached"):
        client.shell("NOPE", "true")


@pytest.mark.parametrize("lab", [{"mtk": {"shell_v2": False}}], indirect=True)
def test_phone_without_shell_v2_gets_the_raw_shell(lab):
    client = AdbClient(lab.srv.address)
    assert "shell_v2" not in client.features("10AD5F0MTK") and "shell_v2" in client.features(
        "R5CX10SNAP"
    )
    res = client.shell("10AD5F0MTK", "echo out; echo err >&2; exit 3")
    assert res.exit_code == 3 and "out" in res.stdout and "err" in res.stdout
    prof = lab.target.profile(pte(lab.tmp / "pte"), lab.target.device("10AD5F0MTK"), settings(n=4))
    assert len(prof.samples_ms) == 4 and prof.metrics["peak_memory_mb"] > 0
    assert (
        "10AD5F0MTK:shell" in lab.srv.requests and "10AD5F0MTK:shell,v2,raw" not in lab.srv.requests
    )


def test_devices_identify_both_phones(lab):
    devices = {d.attributes["serial"]: d for d in lab.target.devices()}
    snap, mtk = devices["R5CX10SNAP"], devices["10AD5F0MTK"]
    assert (
        snap.chipset == "qualcomm-snapdragon-8gen3"
        and snap.attributes["chipset_name"] == "Snapdragon 8 Gen 3"
    )
    assert mtk.chipset == "mediatek-dimensity-9300" and mtk.attributes["soc_model"] == "MT6989"
    assert snap.os == "Android 14" and snap.name == "Galaxy S24 Ultra (R5CX10SNAP)"
    assert snap.attributes["abi"] == "arm64-v8a" and snap.attributes["ram_mb"] == 12_000_000 // 1024
    assert snap.attributes["rooted"] is True and mtk.attributes["rooted"] is False


def test_select_phones_for_a_plan(lab):
    picked, unmatched = lab.target.select(
        ["chipset:mediatek-dimensity-9300", "SM8650", "Pixel 9", "r5cx10snap"]
    )
    assert [d.attributes["serial"] for d in picked] == [
        "10AD5F0MTK",
        "R5CX10SNAP",
    ] and unmatched == ["Pixel 9"]
    assert len(lab.target.select([])[0]) == 2
    assert [d.attributes["serial"] for d in lab.target.select(["Dimensity 9300"])[0]] == [
        "10AD5F0MTK"
    ]


def test_artifacts_a_phone_cannot_run(lab):
    qnn = pte(lab.tmp / "qnn", delegate="qnn")
    with pytest.raises(
        TargetError,
        match="delegated to qnn, which runs on Snapdragon phones; 10AD5F0MTK has Dimensity 9300",
    ) as info:
        lab.target.profile(qnn, lab.target.device("10AD5F0MTK"), settings(n=3))
    assert info.value.kind == "model"
    coreml = pte(lab.tmp / "coreml", delegate="coreml")
    assert not lab.target.accepts(coreml) and "Apple" in lab.target.refusal(coreml)
    assert lab.target.accepts(qnn) and lab.target.accepts(exported(lab.tmp / "onnx", "onnx"))


# -- profile ----------------------------------------------------------------------------------


def test_profile_executorch_on_snapdragon(lab):
    art = pte(lab.tmp / "pte", delegate="qnn")
    dev = lab.target.device("R5CX10SNAP")
    prof = lab.target.profile(art, dev, settings(min_seconds=0.5))
    # the first run (2 + 15 executions of ~12 ms) is under 0.5 s, so a longer second run is used
    assert prof.stats.n == len(prof.samples_ms) > 15 and sum(prof.samples_ms) >= 500
    assert 12.0 <= prof.stats.p50 < 13.0
    assert prof.metrics["load_cold_ms"] == pytest.approx(35.0) and prof.metrics[
        "load_warm_ms"
    ] == pytest.approx(28.0)
    assert prof.metrics["first_inference_ms"] > 1.5 * prof.stats.p50  # cold first execution
    assert (
        prof.metrics["peak_memory_mb"] >= 24
    )  # the stand-in's real VmHWM (24 MB ballast + python)
    # ETDump: 75% of each execution in the QNN delegate
    assert prof.compute_unit == "npu"
    assert prof.metrics["compute_share_npu"] == pytest.approx(0.75, abs=0.01)
    assert len(prof.details["etdump"]["execute_ms"]) == prof.details["runs"][-1]["executions"]
    env = prof.environment
    assert (
        env["state_before"]["thermal_name"] == "NONE" and env["state_before"]["battery_c"] == 30.5
    )
    assert env["state_before"]["cpus"][7]["max_khz"] == 3302400 and env["screen"] == "Awake"
    assert prof.runtime == "executorch" and prof.target == "android"
    assert left_on_phone(lab.snap) == []  # artifact, runner, wrapper, ETDump removed


def test_profile_onnx_on_mediatek_with_nnapi(lab):
    art = exported(lab.tmp / "onnx", "onnx")
    s = settings(n=12)
    s = ProfileSettings(loop=s.loop, compute_unit="npu", options=s.options)
    prof = lab.target.profile(art, lab.target.device("10AD5F0MTK"), s)
    assert len(prof.samples_ms) == 12 and prof.runtime == "ort" and prof.compute_unit == "npu"
    assert 15 * 0.6 <= prof.stats.p50 < 15 * 0.6 * 1.1  # NNAPI speed in the stand-in's physics
    assert (
        prof.metrics["load_cold_ms"] == pytest.approx(42.0)
        and prof.metrics["first_inference_ms"] == 15
    )
    assert prof.details["runs"][0]["runner_summary"]["p50_ms"] > 0
    run_cmd = next(c for c in lab.mtk.commands if "run.sh" in c)
    assert "-e nnapi" in run_cmd and "-r 14" in run_cmd
    assert left_on_phone(lab.mtk) == []


def test_threads_and_big_core_pinning(lab):
    art = pte(lab.tmp / "pte")
    for serial, phone, mask in (("R5CX10SNAP", lab.snap, "fc"), ("10AD5F0MTK", lab.mtk, "f0")):
        s = settings(n=5, pin_big_cores=True)
        s = ProfileSettings(loop=s.loop, threads=2, options=s.options)
        prof = lab.target.profile(art, lab.target.device(serial), s)
        assert phone.taskset_masks() == [mask]
        assert prof.environment["pinned_cpus"] == [
            int(c) for c in range(8) if int(mask, 16) >> c & 1
        ]
        assert "--cpu_threads=2" in next(c for c in phone.commands if "run.sh" in c)


def test_push_once_per_content_hash_and_close_removes(lab):
    art = pte(lab.tmp / "pte")
    dev = lab.target.device("10AD5F0MTK")
    for _ in range(2):
        lab.target.profile(art, dev, settings(n=3, keep_on_device=True))
    models = [p for p in lab.mtk.sends if p.endswith("model.pte")]
    runners = [p for p in lab.mtk.sends if p.endswith("executor_runner")]
    assert len(models) == 1 and len(runners) == 1
    assert sorted(p.split("/")[-1] for p in left_on_phone(lab.mtk)) == [
        "executor_runner",
        "model.pte",
    ]
    # a new target (another session) finds them by sha256 and does not push again
    other = AndroidTarget(lab.srv.address, runners=lab.target.runners)
    other.profile(art, dev, settings(n=3, keep_on_device=True))
    assert len([p for p in lab.mtk.sends if p.endswith("model.pte")]) == 1
    other.close()
    lab.target.close()
    assert left_on_phone(lab.mtk) == []


@pytest.mark.parametrize(
    "lab",
    [{"snap": {"thermal": [3, 2, 1, 0], "battery_tenths": [430, 410, 380, 350]}}],
    indirect=True,
)
def test_hot_phone_is_waited_for_until_it_cools(lab):
    art = pte(lab.tmp / "pte")
    prof = lab.target.profile(art, lab.target.device("R5CX10SNAP"), settings(n=3))
    wait = prof.environment["thermal_wait"]
    assert [p["thermal_status"] for p in wait["polls"]] == [3, 2, 1, 0]
    assert [p["battery_c"] for p in wait["polls"]] == [43.0, 41.0, 38.0, 35.0]
    assert wait["cooled"] is True and prof.environment["state_before"]["thermal_status"] == 0
    assert not any("hot" in w for w in prof.warnings)


@pytest.mark.parametrize("lab", [{"snap": {"thermal": [0, 0, 2, 1, 0]}}], indirect=True)
def test_rounds_are_fresh_runner_launches_each_after_the_cool_down(lab):
    from harness.rounds import measure_rounds

    art = pte(lab.tmp / "pte")
    dev = lab.target.device("R5CX10SNAP")
    prof = measure_rounds(lab.target, art, dev, replace(settings(n=4), rounds=3))
    rounds = prof.details["rounds"]
    assert prof.stats.rounds == 3 and prof.sample_rounds.count(2) == rounds[2]["iterations"]
    # each round waited for the phone: the second found it hot and waited until it cooled
    polls = [
        [p["thermal_status"] for p in r["environment"]["thermal_wait"]["polls"]] for r in rounds
    ]
    assert polls[0] == [0] and polls[1][0] > 0 and polls[1][-1] == 0 and polls[2] == [0]
    assert all(r["details"]["runs"] for r in rounds)  # each its own runner launch
    assert left_on_phone(lab.snap) == []


@pytest.mark.parametrize("lab", [{"snap": {"thermal": [2]}}], indirect=True)
def test_wait_is_bounded_and_a_still_hot_phone_is_reported(lab):
    art = pte(lab.tmp / "pte")
    prof = lab.target.profile(
        art, lab.target.device("R5CX10SNAP"), settings(n=3, max_wait_s=0.6, poll_s=0.02)
    )
    wait = prof.environment["thermal_wait"]
    assert wait["cooled"] is False and len(wait["polls"]) >= 2 and wait["waited_s"] < 0.6 + 2.0
    assert any("still hot" in w and "MODERATE" in w for w in prof.warnings)


@pytest.mark.parametrize(
    "lab",
    [
        {
            "snap": {
                "thermal": [0, 0, 0, 0, 1, 2],
                "physics": {"base_ms": 12.0, "load_ms": 35.0, "slow_from_run": 2, "slowdown": 1.4},
            }
        }
    ],
    indirect=True,
)
def test_sustained_mode_reports_when_throttling_starts(lab):
    art = pte(lab.tmp / "pte")
    prof = lab.target.profile(
        art, lab.target.device("R5CX10SNAP"), settings(warmup=0, n=20, sustained_s=1.0)
    )
    rounds = prof.details["sustained"]
    assert len(rounds) >= 4 and [r["throttled"] for r in rounds[:2]] == [False, False]
    onset = next(r for r in rounds if r["throttled"])
    assert onset["round"] == 3 and "p50 +40%" in onset["why"]
    assert prof.metrics["throttle_onset_s"] == pytest.approx(onset["start_s"])
    assert any("throttling from round 3" in w for w in prof.warnings)
    assert len(prof.samples_ms) == 20 * len(rounds)
    assert prof.stats.drift > 0.2  # the statistics see it too


@pytest.mark.parametrize("lab", [{"snap": {"drop_on": ("run.sh", 8)}}], indirect=True)
def test_phone_that_disconnects_fails_its_own_cell_and_the_other_goes_on(lab):
    art = pte(lab.tmp / "pte")
    snap_dev, mtk_dev = lab.target.device("R5CX10SNAP"), lab.target.device("10AD5F0MTK")
    with pytest.raises(TargetError) as info:
        lab.target.profile(art, snap_dev, settings(warmup=2, n=30))
    err = info.value
    assert err.kind == "infrastructure" and err.retryable and "R5CX10SNAP disconnected" in str(err)
    assert 1 <= len(err.samples_ms) < 30  # the executions streamed before the drop are kept
    assert [d.attributes["serial"] for d in lab.target.devices()] == ["10AD5F0MTK"]
    assert len(lab.target.profile(art, mtk_dev, settings(n=5)).samples_ms) == 5
    # plugged back in: a re-run of the failed cell works
    lab.snap.present, lab.snap.drop_on = True, None
    assert len(lab.target.profile(art, snap_dev, settings(n=5)).samples_ms) == 5
    assert left_on_phone(lab.snap) == []  # the re-run also clears what the dropped one left


def test_runner_that_hangs_is_stopped_at_the_timeout(lab, tmp_path):
    lab.mtk.physics = {"base_ms": 15.0, "hang_s": 60}
    lab.mtk.setup()
    s = settings(n=3)
    s = ProfileSettings(loop=s.loop, timeout_s=2.0, options=s.options)
    t0 = time.monotonic()
    with pytest.raises(TargetError, match="did not finish within 2 s") as info:
        lab.target.profile(pte(tmp_path / "pte"), lab.target.device("10AD5F0MTK"), s)
    assert info.value.kind == "measurement" and time.monotonic() - t0 < 30
    assert left_on_phone(lab.mtk) == []

    def alive() -> list[str]:  # processes whose command line names the phone's files
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(lab.mtk.root / "data") in text:
                found.append(text)
        return found

    for _ in range(
        100
    ):  # the runner was killed on the phone (by its pid file); its wrapper then ends
        if not alive():
            break
        time.sleep(0.05)
    assert alive() == []


def test_runner_that_crashes_fails_as_model_and_keeps_samples(lab):
    art = replace_model(pte(lab.tmp / "crash"), b"CRASH and burn")
    with pytest.raises(TargetError) as info:
        lab.target.profile(art, lab.target.device("R5CX10SNAP"), settings(warmup=0, n=10))
    err = info.value
    assert err.kind == "model" and not err.retryable
    assert "crashed with SIGABRT" in str(err) and "after 2 executions" in str(err)
    assert len(err.samples_ms) == 2
    assert left_on_phone(lab.snap) == []


def test_artifact_the_runner_cannot_parse(lab):
    art = replace_model(pte(lab.tmp / "junk"), b"not a program")
    with pytest.raises(
        TargetError, match="exited with code 1 .*Failed to parse model file"
    ) as info:
        lab.target.profile(art, lab.target.device("10AD5F0MTK"), settings(n=3))
    assert info.value.kind == "model"


def test_old_runner_without_per_iteration_lines(lab, tmp_path):
    lab.mtk.physics = {"base_ms": 15.0, "old_runner": True}
    lab.mtk.setup()
    art = pte(tmp_path / "pte")
    prof = lab.target.profile(art, lab.target.device("10AD5F0MTK"), settings(n=4))
    assert len(prof.samples_ms) == 1 and any("per-process means" in w for w in prof.warnings)
    assert "--cpu_threads" not in next(c for c in lab.mtk.commands if "run.sh" in c)
    # with an ETDump the per-execution times come from its Method::execute events
    lab.snap.physics = {"base_ms": 12.0, "old_runner": True, "etdump": True}
    lab.snap.setup()
    prof = lab.target.profile(art, lab.target.device("R5CX10SNAP"), settings(warmup=1, n=6))
    assert len(prof.samples_ms) == 6 and not any("per-process" in w for w in prof.warnings)


def test_android_pal_logs_are_read_from_logcat(lab, tmp_path):
    lab.mtk.physics = {"base_ms": 15.0, "pal": "android"}
    lab.mtk.setup()
    prof = lab.target.profile(pte(tmp_path / "pte"), lab.target.device("10AD5F0MTK"), settings(n=4))
    assert len(prof.samples_ms) == 4 and prof.metrics["load_cold_ms"] == pytest.approx(30.0)


# -- infer and parity -------------------------------------------------------------------------


def test_infer_and_parity_on_the_phone(lab):
    good = pte(lab.tmp / "good")
    dev = lab.target.device("R5CX10SNAP")
    result = lab.target.parity(good, dev)
    assert result.passed and result.max_abs < 1e-5 and result.n == REFERENCE_COUNT
    wrong = wrong_reference(pte(lab.tmp / "wrong"))
    assert not lab.target.parity(wrong, dev).passed
    # asked for with the profile, parity lands in its metrics and a failure in its warnings
    prof = lab.target.profile(wrong, dev, settings(n=3, parity=True))
    assert prof.metrics["parity_top1"] < 1.0 and prof.metrics["parity_cosine"] < 0.99999
    assert any(w.startswith("parity (fp32): ") for w in prof.warnings)
    bare = without_reference(pte(lab.tmp / "bare"))
    prof = lab.target.profile(bare, dev, settings(n=3, parity=True))  # no reference: numbers kept
    assert len(prof.samples_ms) == 3 and any(
        "parity not checked" in w and "reference" in w for w in prof.warnings
    )
    assert left_on_phone(lab.snap) == []


def test_onnx_infer_needs_an_output_writing_runner(lab):
    art = exported(lab.tmp / "onnx", "onnx")
    with pytest.raises(RunnerError, match="onnxruntime_perf_test cannot write outputs"):
        lab.target.infer(art, lab.target.device("R5CX10SNAP"), [])


# -- bad input --------------------------------------------------------------------------------


def test_no_adb_server_says_how_to_check():
    target = AndroidTarget(f"127.0.0.1:{free_port()}")
    with pytest.raises(
        AdbServerUnreachable, match=r"no adb server at 127\.0\.0\.1:\d+ .*adb devices"
    ):
        target.devices()
    assert "no adb server" in target.unavailable_reason()


@pytest.mark.parametrize("lab", [{"mtk": {"state": "unauthorized"}}], indirect=True)
def test_unauthorized_phone_is_listed_but_not_used(lab):
    assert [d.attributes["serial"] for d in lab.target.devices()] == ["R5CX10SNAP"]
    rows = {r["serial"]: r for r in lab.target.attached()}
    assert rows["10AD5F0MTK"]["state"] == "unauthorized" and "model" not in rows["10AD5F0MTK"]
    with pytest.raises(
        UserError, match="10AD5F0MTK is unauthorized: unlock it and accept the USB debugging prompt"
    ):
        lab.target.device("10AD5F0MTK")


def test_bad_runners_and_serials(lab):
    art = pte(lab.tmp / "pte")
    onnx = exported(lab.tmp / "onnx", "onnx")
    dev = lab.target.device("R5CX10SNAP")
    bare = AndroidTarget(lab.srv.address)
    with pytest.raises(
        RunnerError, match="no runner for executorch artifacts: build executor_runner"
    ):
        bare.profile(art, dev, settings())
    with pytest.raises(RunnerError, match="does not exist"):
        bare.profile(art, dev, settings(runner=str(lab.tmp / "missing")))
    (lab.tmp / "x86").mkdir()
    x86 = elf_file(lab.tmp / "x86" / "executor_runner", 62)
    with pytest.raises(RunnerError, match="built for x86-64, the phone is arm64-v8a"):
        bare.profile(art, dev, settings(runner=str(x86)))
    with pytest.raises(RunnerError, match="cannot run a onnx artifact"):
        bare.profile(onnx, dev, settings(runner=str(lab.runners["executor_runner"])))
    with pytest.raises(RunnerError, match="not an executable for Android"):
        junk = lab.tmp / "junk_runner"
        junk.write_bytes(b"MZ\0\0")
        bare.profile(art, dev, settings(runner=str(junk)))
    with pytest.raises(
        UserError, match="no phone 'NOPE' .*attached: R5CX10SNAP, 10AD5F0MTK.*adb devices"
    ):
        lab.target.device("NOPE")
    assert left_on_phone(lab.snap) == []


# -- CLI --------------------------------------------------------------------------------------


def test_cli_devices_and_profile(lab, monkeypatch):
    monkeypatch.setenv("VITBENCH_ADB_SERVER", lab.srv.address)
    cli = CliRunner()
    res = cli.invoke(main, ["android", "devices", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["serial"]: r for r in json.loads(res.output)}
    assert rows["10AD5F0MTK"]["chipset_name"] == "Dimensity 9300"
    res = cli.invoke(main, ["android", "devices"])
    assert "Snapdragon 8 Gen 3" in res.output and "R5CX10SNAP" in res.output
    art = pte(lab.tmp / "pte")
    profile = ["android", "profile", str(art.path)]
    runner = ["--runner", str(lab.runners["executor_runner"])]
    res = cli.invoke(
        main,
        [*profile, "--serial", "10AD5F0MTK", *runner, "--iterations", "6", "--threads", "2"]
        + ["--poll-s", "0.01", "--parity", "--json"],
    )
    assert res.exit_code == 0, res.output
    prof = json.loads(res.output)
    # three rounds (runner launches) of the 6 iterations asked for: fewer than 10 a round
    assert len(prof["samples_ms"]) == 18 and prof["stats"]["rounds"] == 3
    assert prof["device"]["chipset"] == "mediatek-dimensity-9300"
    assert prof["metrics"]["parity_cosine"] > 0.99999 and prof["settings"]["threads"] == 2
    res = cli.invoke(
        main, [*profile, "--serial", "R5CX10SNAP", "--iterations", "3", "--poll-s", "0.01"]
    )
    assert (
        res.exit_code == 2
        and res.output.count("\n") == 1
        and "no runner for executorch" in res.output
    )


def test_cli_errors_are_one_line(lab, monkeypatch, tmp_path):
    monkeypatch.setenv("VITBENCH_ADB_SERVER", f"127.0.0.1:{free_port()}")
    res = CliRunner().invoke(main, ["android", "devices"])
    assert (
        res.exit_code == 1
        and res.output.startswith("vitbench: error: no adb server")
        and res.output.count("\n") == 1
    )
    with FakeAdbServer() as empty:
        monkeypatch.setenv("VITBENCH_ADB_SERVER", empty.address)
        res = CliRunner().invoke(main, ["android", "devices"])
        assert (
            res.exit_code == 1
            and "no phones attached" in res.output
            and "adb devices" in res.output
        )
    monkeypatch.setenv("VITBENCH_ADB_SERVER", lab.srv.address)
    art = pte(tmp_path / "pte")
    res = CliRunner().invoke(
        main,
        [
            "android",
            "profile",
            str(art.path),
            "--serial",
            "GONE",
            "--runner",
            str(lab.runners["executor_runner"]),
        ],
    )
    assert res.exit_code == 1 and "no phone 'GONE'" in res.output and res.output.count("\n") == 1
