"""Rounds: a cell measured in fresh processes, its intervals two-level, its samples kept by
round, the gate and compare using them, stores from before rounds still read."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from harness.gate import judge_latency, judge_run
from harness.measure import rounds_interval, summarize
from harness.rounds import measure_rounds, merge_rounds, per_round, round_settings
from harness.store import CellOutcome, CellRecord, open_store
from harness.target import Device, Profile, ProfileSettings, Target, TargetError
from harness.timing import LoopSettings
from reports.trends import compare_runs

DEV = Device(target="fake", name="d1")


def rounds_of(levels, n=200, cv=0.03, seed=0):
    """Samples of rounds whose medians sit at ``levels`` (ms), each with ``cv`` inside."""
    rng = np.random.default_rng(seed)
    groups = [rng.normal(level, level * cv, n) for level in levels]
    return np.concatenate(groups), np.repeat(np.arange(len(levels)), n)


def test_one_round_is_the_plain_bootstrap():
    x, _ = rounds_of([10.0])
    one = summarize(x)
    same = summarize(x, rounds=np.zeros(x.size, dtype=int))
    assert one.p90_ci == same.p90_ci and one.rounds == same.rounds == 1
    assert one.round_share == 0.0 and one.between_round_cv == 0.0


def test_rounds_that_differ_widen_the_interval_and_dominate_it():
    x, r = rounds_of([10.0, 10.4, 9.7])
    pooled, two = summarize(x), summarize(x, rounds=r)
    width = lambda s: s.p90_ci[1] - s.p90_ci[0]  # noqa: E731
    assert two.rounds == 3 and width(two) > 4 * width(pooled)
    assert two.round_share > 0.5  # the rounds' spread is most of the interval
    assert two.between_round_cv == pytest.approx(np.std([10.0, 10.4, 9.7], ddof=1) / 10.03, 0.2)
    assert two.within_round_cv == pytest.approx(0.03, rel=0.15)
    # rounds from one distribution: what the rounds add is mostly nothing (three rounds are
    # noisy, so over many seeded cells, not one)
    shares = []
    for seed in range(40):
        y, ry = rounds_of([10.0, 10.0, 10.0], n=40, cv=0.1, seed=seed)
        shares.append(summarize(y, rounds=ry, n_boot=300).round_share)
    assert np.median(shares) < 0.1


def test_rounds_that_agree_still_get_the_noise_floor():
    """Rounds measured back to back can agree more closely than invocations do: the
    between-round spread is taken as at least the floor, with Student's t for three rounds."""
    x, r = rounds_of([10.0, 10.0, 10.0], n=400, cv=0.001)
    bare = summarize(x, rounds=r)
    floored = summarize(x, rounds=r, noise_floor=0.02)
    half = (floored.p50_ci[1] - floored.p50_ci[0]) / 2
    assert half == pytest.approx(4.303 * 0.02 * 10.0 / np.sqrt(3), rel=0.02)
    assert (bare.p50_ci[1] - bare.p50_ci[0]) / 2 < half / 5
    assert floored.round_share > 0.9  # the assumed between-round noise is all of it


def test_the_two_level_interval_covers_between_round_noise():
    """Seeded processes whose level moves 2% from one process to the next (3% CV inside):
    the two-level interval of 3 rounds holds the true p50 about 95% of the time, one
    process's interval far less often."""
    rng = np.random.default_rng(7)
    hit_two = hit_one = 0
    trials = 200
    for t in range(trials):
        levels = 10.0 * np.exp(rng.normal(0, 0.02, 3))
        x, r = rounds_of(levels, n=60, seed=t)
        (lo, hi), _ = rounds_interval([x[r == k] for k in range(3)], 50, n_boot=300)
        hit_two += lo <= 10.0 <= hi
        single = x[r == 0]
        s = summarize(single, n_boot=300)
        hit_one += s.p50_ci[0] <= 10.0 <= s.p50_ci[1]
    assert hit_two / trials >= 0.9 and hit_one / trials < 0.6


def test_each_round_runs_its_share_of_the_minimums():
    loop = LoopSettings(warmup_iterations=5, min_iterations=50, min_seconds=5.0)
    one = per_round(loop, 3)
    assert (one.min_iterations, one.min_seconds, one.warmup_iterations) == (17, 5.0 / 3, 5)
    assert per_round(loop, 1) is loop
    assert per_round(LoopSettings(min_iterations=12, min_seconds=1.0), 3).min_iterations == 10
    assert per_round(LoopSettings(min_iterations=5, min_seconds=1.0), 3).min_iterations == 5
    s = round_settings(ProfileSettings(rounds=3, session="run/cell"), 1)
    assert s.rounds == 1 and s.session == "run/cell#round-2"


class RoundsTarget(Target):
    """Each profile call is one round: its samples sit at the next level; ``fail_at`` raises
    a retryable error (with samples) once on that call."""

    name = "fake"

    def __init__(self, levels, fail_at=None):
        self.levels, self.fail_at, self.calls, self.sessions = list(levels), fail_at, 0, []

    def profile(self, artifact, device, settings):
        self.calls += 1
        self.sessions.append(settings.session)
        if self.calls == self.fail_at:
            raise TargetError("phone went away", samples_ms=[99.0, 98.0])
        level = self.levels.pop(0)
        samples = list(level + np.linspace(-0.1, 0.1, settings.loop.min_iterations))
        return Profile.from_samples(
            "fake",
            device,
            "sha",
            "rt",
            samples,
            metrics={"load_cold_ms": level * 10, "peak_memory_mb": level},
            details={"job": self.calls},
        )


def test_a_failed_round_keeps_what_was_measured_and_a_retry_goes_on_from_it():
    target = RoundsTarget([10.0, 11.0, 12.0], fail_at=2)
    settings = ProfileSettings(loop=LoopSettings(min_iterations=10), rounds=3, session="s")
    done: list = []
    with pytest.raises(TargetError) as err:
        measure_rounds(target, None, DEV, settings, done)
    assert len(done) == 1 and len(err.value.samples_ms) == 12  # round 1 and the failed one
    prof = measure_rounds(target, None, DEV, settings, done)
    assert target.calls == 4 and target.sessions[-1] == "s#round-3"
    assert prof.sample_rounds == [0] * 10 + [1] * 10 + [2] * 10 and prof.rounds == 3
    assert prof.metrics == {"load_cold_ms": 110.0, "peak_memory_mb": 12.0}  # median; worst
    assert [r["details"]["job"] for r in prof.details["rounds"]] == [1, 3, 4]
    assert prof.settings["rounds"] == 3
    rows = {n: v for n, v, _ in prof.metric_rows()}
    assert rows["rounds"] == 3 and rows["latency_between_round_cv"] > 0.05
    assert merge_rounds([done[0]]) is done[0]


def _cell(store, run, key, levels, plan=None):
    x, r = rounds_of(levels, n=60, seed=len(key) + len(run))
    prof = merge_rounds(
        [
            Profile.from_samples("fake", DEV, "sha", "rt", list(x[r == k]))
            for k in range(len(levels))
        ]
    )
    store.write_cell(
        run,
        CellRecord(key, "m", "h", "onnx", {"format": "onnx"}, "fake", "d1"),
        CellOutcome(
            status="done",
            samples_ms=prof.samples_ms,
            sample_rounds=prof.sample_rounds,
            metrics=prof.metric_rows(),
        ),
    )
    return prof


def test_the_gate_uses_the_two_level_interval_and_asks_for_rounds(tmp_path):
    st = open_store(str(tmp_path / "r.db"))
    st.create_run("r1", "p", "h", "c", {}, {}, {}, 1)
    prof = _cell(st, "r1", "k1", [10.0, 10.6, 9.6])
    budget = prof.stats.p90 * 1.02  # inside the two-level interval, outside one round's
    (verdict,) = judge_run(st, "r1", _budgets(budget)).cells
    assert verdict.verdict == "inconclusive" and "3 rounds" in verdict.reasons[0]
    assert verdict.needed_rounds and verdict.needed_samples is None
    assert f"about {verdict.needed_rounds} more rounds" in verdict.reasons[0]
    values, rounds = st.sample_rounds([verdict.cell_id])[verdict.cell_id]
    assert rounds == prof.sample_rounds and values == prof.samples_ms
    metrics = {n: v for n, v, _ in prof.metric_rows()}
    single = summarize(prof.samples_ms)  # the same samples as one process: decided wrongly
    assert single.p90_ci[1] < budget and judge_latency(metrics, budget, 90, 30)[0] != "pass"


def _budgets(ms):
    from harness.plan import BudgetSettings

    return BudgetSettings(latency_ms=ms, accuracy_retention=None, parity=False)


def test_compare_takes_the_noise_from_the_rounds(tmp_path):
    st = open_store(str(tmp_path / "r.db"))
    for run in ("a", "b"):
        st.create_run(run, "p", "h", "c", {}, {}, {}, 1)
    _cell(st, "a", "k1", [10.0, 10.5, 9.6])
    _cell(st, "b", "k1", [10.3, 9.8, 10.4])
    (row,) = compare_runs(st, "a", "b").to_dict(orient="records")
    assert row["noise_from"] == "rounds" and row["run_noise"] > 0.02
    assert row["verdict"] == "no change"


def test_a_store_from_before_rounds_reads_as_one_round_and_migrates(tmp_path):
    path = tmp_path / "old.db"
    st = open_store(str(path))
    st.create_run("r1", "p", "h", "c", {}, {}, {}, 1)
    st.write_cell(
        "r1",
        CellRecord("k1", "m", "h", "onnx", {"format": "onnx"}, "fake", "d1"),
        CellOutcome(
            status="done",
            samples_ms=[10.0, 11.0, 12.0] * 20,
            metrics=Profile.from_samples(
                "fake", DEV, "s", "rt", [10.0, 11.0, 12.0] * 20
            ).metric_rows()[:15],  # the rows a schema-1 vitbench wrote: no rounds
        ),
    )
    st.close()
    con = sqlite3.connect(path)  # back to schema 1 as an older vitbench left it
    con.execute("ALTER TABLE samples DROP COLUMN round")
    con.execute("UPDATE vitbench_schema SET version = 1")
    con.commit()
    con.close()

    reader = open_store(str(path), readonly=True)
    assert reader.version == 1
    (cell,) = reader.cells(["r1"])
    values, rounds = reader.sample_rounds([cell["id"]])[cell["id"]]
    assert len(values) == 60 and set(rounds) == {0}
    (v,) = judge_run(reader, "r1", _budgets(100.0)).cells
    assert v.verdict == "pass"
    from reports.report import render_report

    assert "1 round: – /" in render_report(reader, "r1", "md")
    assert "<html" in render_report(reader, "r1", "html")
    reader.close()

    writer = open_store(str(path))  # a writer moves it forward; the samples stay
    assert writer.version == 2
    assert writer.sample_rounds([cell["id"]])[cell["id"]] == (values, rounds)
