"""Android faults that used to hang or break a run: a hung adb command other than the runner,
a runner that prints now and then but never ends (every adb call has a total deadline)."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.measure import LoopSettings
from harness.target import ProfileSettings, TargetError
from targets.android.target import AndroidTarget
from tests.support.android_runners import install_runners
from tests.support.artifacts import exported
from tests.support.fake_adb import FakeAdbServer, mediatek_phone

HANG_S = 60.0  # how long the fake phone hangs: far past every deadline below


def _settings(timeout_s: float = 120.0) -> ProfileSettings:
    loop = LoopSettings(warmup_iterations=1, warmup_seconds=0, min_iterations=5, min_seconds=0)
    options = {"poll_s": 0.01, "max_wait_s": 5.0, "etdump": False}
    return ProfileSettings(loop=loop, timeout_s=timeout_s, options=options)


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
