"""Android faults that used to hang, break a run or drop a number: a hung adb command other
than the runner, a runner that prints now and then but never ends (every adb call has a total
deadline), a phone whose toybox or /proc keeps VmHWM from the wrapper, a runner whose outputs
have the wrong size, adb's own server settings, phones listed but not usable, a 32-bit runner,
the thermal wait's bound and the sustained run's thermal baseline."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import UserError
from harness.measure import LoopSettings
from harness.target import ProfileSettings, TargetError
from targets.android.adb import AdbClient
from targets.android.phone import Phone
from targets.android.runners import Runner, RunnerError, check_runner_abi
from targets.android.target import AndroidTarget
from tests.support.android_runners import elf_file, install_runners
from tests.support.artifacts import exported
from tests.support.fake_adb import FakeAdbServer, mediatek_phone, snapdragon_phone
from tests.support.loopback import free_port

HANG_S = 60.0  # how long the fake phone hangs: far past every deadline below


def _settings(timeout_s: float = 120.0, **options) -> ProfileSettings:
    loop = LoopSettings(warmup_iterations=1, warmup_seconds=0, min_iterations=5, min_seconds=0)
    options = {"poll_s": 0.01, "max_wait_s": 5.0, "etdump": False} | options
    return ProfileSettings(loop=loop, timeout_s=timeout_s, options=options)


def _target(srv, runners) -> AndroidTarget:
    return AndroidTarget(
        srv.address,
        runners={
            "executorch": str(runners["executor_runner"]),
            "onnxruntime": str(runners["onnxruntime_perf_test"]),
        },
    )


def _error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("vitbench: error:")]


@pytest.fixture
def phone_lab(tmp_path):
    runners = install_runners(tmp_path / "runners")
    with FakeAdbServer() as srv:
        yield srv, runners, tmp_path


def test_a_hung_dumpsys_fails_within_the_commands_deadline(phone_lab):
    srv, runners, tmp = phone_lab
    phone = srv.add(mediatek_phone(tmp / "phones", hang_on=("dumpsys thermalservice", HANG_S)))
    target = AndroidTarget(
        srv.address, runners={"executorch": str(runners["executor_runner"])}, timeout=2.0
    )
    art = exported(tmp / "pte", "executorch")
    t0 = time.monotonic()
    with pytest.raises(TargetError) as info:
        target.profile(art, target.device(phone.serial), _settings())
    assert time.monotonic() - t0 < HANG_S  # cut off, not waited out
    err = info.value
    assert "`dumpsys` did not finish within 2 s" in str(err) and phone.serial in str(err)
    assert err.kind == "infrastructure"


def test_a_runner_that_prints_but_never_ends_is_cut_off(phone_lab):
    srv, runners, tmp = phone_lab
    phone = srv.add(mediatek_phone(tmp / "phones", physics={"base_ms": 5.0, "trickle_s": 0.2}))
    target = AndroidTarget(srv.address, runners={"executorch": str(runners["executor_runner"])})
    art = exported(tmp / "pte", "executorch")
    with pytest.raises(TargetError, match="did not finish within 3 s") as info:
        target.profile(art, target.device(phone.serial), _settings(timeout_s=3.0))
    assert info.value.kind == "measurement"


def test_android_profile_timeout_flag(phone_lab, monkeypatch):
    srv, runners, tmp = phone_lab
    phone = srv.add(mediatek_phone(tmp / "phones", physics={"base_ms": 5.0, "trickle_s": 0.2}))
    monkeypatch.setenv("VITBENCH_ADB_SERVER", srv.address)
    art = exported(tmp / "pte", "executorch")
    res = CliRunner().invoke(
        main,
        ["android", "profile", str(art.path), "--serial", phone.serial]
        + ["--runner", str(runners["executor_runner"]), "--iterations", "5", "--timeout", "3"]
        + ["--poll-s", "0.01", "--max-wait", "5"],
    )
    lines = [ln for ln in res.output.splitlines() if ln.startswith("vitbench: error:")]
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert "did not finish within 3 s" in lines[0]


# -- peak memory ------------------------------------------------------------------------------


def test_vmhwm_is_read_without_sed_or_bracket_classes(phone_lab):
    srv, runners, tmp = phone_lab
    phone = srv.add(mediatek_phone(tmp / "phones", missing=("sed",), grep_classes=False))
    client = AdbClient(srv.address)  # the fake's toybox is as sparse as it says
    assert client.shell(phone.serial, "echo a | sed s/a/b/").exit_code == 127
    assert client.shell(phone.serial, "echo a | grep -q '[[:alpha:]]'").exit_code == 2
    target = _target(srv, runners)
    prof = target.profile(
        exported(tmp / "pte", "executorch"), target.device(phone.serial), _settings()
    )
    assert prof.metrics["peak_memory_mb"] >= 24  # the stand-in's 24 MB ballast, from VmHWM
    assert prof.details["peak_memory_source"] == "VmHWM"
    assert not any("peak memory" in w for w in prof.warnings)


def test_peak_memory_falls_back_to_the_runner_and_says_so(phone_lab):
    srv, runners, tmp = phone_lab
    phone = srv.add(mediatek_phone(tmp / "phones", proc_readable=False))
    target = _target(srv, runners)
    dev = target.device(phone.serial)
    prof = target.profile(exported(tmp / "onnx", "onnx"), dev, _settings())
    reported = prof.details["runs"][0]["runner_summary"]["peak_working_set_mb"]
    assert reported > 24 and prof.metrics["peak_memory_mb"] == pytest.approx(reported)
    assert prof.details["peak_memory_source"] == "runner"
    assert any("peak memory from onnxruntime_perf_test" in w for w in prof.warnings)
    # executor_runner reports none: the number is missing, and the profile says so and why
    prof = target.profile(exported(tmp / "pte", "executorch"), dev, _settings())
    assert len(prof.samples_ms) == 5 and "peak_memory_mb" not in prof.metrics
    assert prof.details["peak_memory_source"] is None
    assert any(w.startswith("peak memory not measured") and "/proc/" in w for w in prof.warnings), (
        prof.warnings
    )


# -- parity -----------------------------------------------------------------------------------


def test_parity_with_a_wrong_size_output_fails_with_the_numbers_and_keeps_the_profile(
    phone_lab, monkeypatch
):
    srv, runners, tmp = phone_lab
    physics = {"base_ms": 5.0, "output_dtype": "float16"}  # 1x5 float32 logits written as fp16
    phone = srv.add(mediatek_phone(tmp / "phones", physics=physics))
    target = _target(srv, runners)
    art = exported(tmp / "pte", "executorch")
    prof = target.profile(art, target.device(phone.serial), _settings(parity=True))
    assert len(prof.samples_ms) == 5 and prof.stats.p50 > 0
    parity = prof.details["parity"]
    assert parity["status"] == "failed" and prof.metrics["parity_passed"] == 0.0
    assert "expected 20 bytes (1x5 float32), got 10 bytes" in parity["failures"][0]
    assert any("expected 20 bytes (1x5 float32), got 10 bytes" in w for w in prof.warnings)
    assert "parity_cosine" not in prof.metrics  # nothing was compared
    # the command keeps its samples too
    phone.physics = {"base_ms": 5.0, "output_bytes": 8}
    phone.setup()
    monkeypatch.setenv("VITBENCH_ADB_SERVER", srv.address)
    res = CliRunner().invoke(
        main,
        ["android", "profile", str(art.path), "--serial", phone.serial, "--parity", "--json"]
        + ["--runner", str(runners["executor_runner"]), "--iterations", "4", "--poll-s", "0.01"]
        + ["--rounds", "1"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert len(out["samples_ms"]) == 4 and out["details"]["parity"]["status"] == "failed"
    assert "expected 20 bytes (1x5 float32), got 8 bytes" in out["details"]["parity"]["failures"][0]


# -- the adb server and the phones it lists ---------------------------------------------------


def test_adb_server_socket_is_honoured(phone_lab, monkeypatch):
    srv, _, tmp = phone_lab
    srv.add(mediatek_phone(tmp / "phones"))
    port = srv.address.rsplit(":", 1)[1]
    monkeypatch.delenv("VITBENCH_ADB_SERVER", raising=False)
    monkeypatch.delenv("ANDROID_ADB_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(free_port()))  # the socket wins, as in adb
    for spec in (f"tcp:{port}", f"tcp:127.0.0.1:{port}", f"tcp:localhost:{port}"):
        monkeypatch.setenv("ADB_SERVER_SOCKET", spec)
        assert [e.serial for e in AdbClient().devices()] == ["10AD5F0MTK"], spec
    res = CliRunner().invoke(main, ["android", "devices", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)[0]["serial"] == "10AD5F0MTK", res.output
    monkeypatch.delenv("ADB_SERVER_SOCKET")  # then ANDROID_ADB_SERVER_ADDRESS and _PORT
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", port)
    monkeypatch.setenv("ANDROID_ADB_SERVER_ADDRESS", "127.0.0.1")
    assert AdbClient().address == f"127.0.0.1:{port}" and len(AdbClient().devices()) == 1


@pytest.mark.parametrize(
    "env, words",
    [
        ({"ADB_SERVER_SOCKET": "localabstract:adb"}, "ADB_SERVER_SOCKET"),
        ({"ADB_SERVER_SOCKET": "tcp:host:port"}, "ADB_SERVER_SOCKET"),
        ({"ANDROID_ADB_SERVER_PORT": "5o37"}, "ANDROID_ADB_SERVER_PORT"),
        ({"VITBENCH_ADB_SERVER": "127.0.0.1:99999"}, "127.0.0.1:99999"),
    ],
)
def test_a_malformed_adb_server_address_is_one_line(monkeypatch, env, words):
    for name in ("VITBENCH_ADB_SERVER", "ADB_SERVER_SOCKET", "ANDROID_ADB_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    res = CliRunner().invoke(main, ["android", "devices"])
    lines = _error_lines(res.output)
    assert res.exit_code != 0 and len(lines) == 1 and words in lines[0], res.output


def test_offline_and_unauthorized_phones_get_their_own_advice(phone_lab, monkeypatch):
    srv, _, tmp = phone_lab
    srv.add(snapdragon_phone(tmp / "phones"))
    srv.add(mediatek_phone(tmp / "phones", state="unauthorized"))
    srv.add(snapdragon_phone(tmp / "phones", serial="0FF1INE", state="offline"))
    target = AndroidTarget(srv.address)
    unauthorized = "accept the USB debugging prompt on the phone"
    with pytest.raises(UserError, match=f"10AD5F0MTK is unauthorized: .*{unauthorized}.*RSA key"):
        target.device("10AD5F0MTK")
    with pytest.raises(UserError, match="0FF1INE is offline: reconnect the cable.*adb reconnect"):
        target.device("0FF1INE")
    # a plan that names them: not measured, and the reason says what to do
    picked, unmatched = target.select(["R5CX10SNAP", "10AD5F0MTK", "0FF1INE"])
    assert [d.attributes["serial"] for d in picked] == ["R5CX10SNAP"]
    assert unmatched == ["10AD5F0MTK", "0FF1INE"]
    assert "RSA key" in target.unmatched_reason("10AD5F0MTK")
    assert "adb reconnect" in target.unmatched_reason("0FF1INE")
    assert target.unmatched_reason("Pixel 9") == ""
    # the listing
    monkeypatch.setenv("VITBENCH_ADB_SERVER", srv.address)
    rows = {
        r["serial"]: r
        for r in json.loads(CliRunner().invoke(main, ["android", "devices", "--json"]).output)
    }
    assert "RSA key" in rows["10AD5F0MTK"]["advice"] and "advice" not in rows["R5CX10SNAP"]
    assert "adb reconnect" in rows["0FF1INE"]["advice"]
    text = CliRunner().invoke(main, ["android", "devices"]).output
    assert "10AD5F0MTK is unauthorized: " in text and "0FF1INE is offline: " in text


# -- runners ----------------------------------------------------------------------------------


def test_a_32_bit_runner_on_an_arm64_phone_is_allowed_with_a_note(phone_lab):
    srv, _, tmp = phone_lab
    phone = srv.add(mediatek_phone(tmp / "phones"))
    only64 = snapdragon_phone(tmp / "phones")
    only64.props["ro.product.cpu.abilist"] = "arm64-v8a"  # no AArch32 (Pixel 7 and later)
    srv.add(only64)
    (tmp / "v7a").mkdir()
    arm32 = Runner("executorch", elf_file(tmp / "v7a" / "executor_runner", 40, bits=32))
    info = Phone(AdbClient(srv.address), phone.serial).info()
    assert info.abis == ("arm64-v8a", "armeabi-v7a", "armeabi")
    note = check_runner_abi(arm32, info.abi, info.abis)
    assert "32-bit arm (armeabi-v7a)" in note and "-DANDROID_ABI=arm64-v8a" in note
    only = Phone(AdbClient(srv.address), only64.serial).info()
    with pytest.raises(
        RunnerError, match=r"is arm64-v8a \(it runs only arm64-v8a\): rebuild it with -DANDROID_ABI"
    ):
        check_runner_abi(arm32, only.abi, only.abis)
    # the profile is not refused: the runner goes to the phone (this machine cannot run ARM
    # code, so it fails there, as a cell of its own)
    target = AndroidTarget(srv.address)
    with pytest.raises(TargetError) as err:
        target.profile(
            exported(tmp / "pte", "executorch"),
            target.device(phone.serial),
            _settings(runner=str(arm32.path)),
        )
    assert err.value.kind == "model" and "rebuild" not in str(err.value)


# -- heat -------------------------------------------------------------------------------------


def test_max_wait_waits_its_full_time(phone_lab):
    srv, runners, tmp = phone_lab
    phone = srv.add(mediatek_phone(tmp / "phones", thermal=[2]))  # never cools
    target = _target(srv, runners)
    t0 = time.monotonic()
    prof = target.profile(
        exported(tmp / "pte", "executorch"),
        target.device(phone.serial),
        _settings(max_wait_s=3.0, poll_s=1.5),
    )
    wait = prof.environment["thermal_wait"]
    assert wait["cooled"] is False and wait["waited_s"] >= 3.0
    assert wait["polls"][-1]["t_s"] >= 3.0 and time.monotonic() - t0 >= 3.0
    assert any("still hot after waiting 3 s" in w for w in prof.warnings)


def test_the_thermal_baseline_is_taken_before_round_1(phone_lab):
    srv, runners, tmp = phone_lab
    # NONE when the wait polls it, LIGHT after every round: round 1 already heated it
    phone = srv.add(mediatek_phone(tmp / "phones", thermal=[0, 1]))
    target = _target(srv, runners)
    prof = target.profile(
        exported(tmp / "pte", "executorch"),
        target.device(phone.serial),
        _settings(sustained_s=0.2),
    )
    rounds = prof.details["sustained"]
    assert prof.details["sustained_baseline"]["thermal_status"] == 0
    assert rounds[0]["throttled"] and "thermal LIGHT" in rounds[0]["why"]
    assert prof.metrics["throttle_onset_s"] == 0.0
    assert any("throttling from round 1" in w for w in prof.warnings)
