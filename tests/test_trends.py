"""Change detection on the right unit: nights (not raw samples) over a history, and the
run-to-run noise in a comparison of two runs. Seeded synthetic histories; the rates are
measured in bench/bench_trends.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.store import open_store
from reports.nights import find_shifts, max_t_critical, run_to_run_noise
from reports.trends import compare_runs, compare_samples, detect_changes, run_noise
from tests.support.report_data import write_history

NIGHT_SD = 0.02
CV = 0.03


def night_samples(rng, levels, n=100, cv=CV):
    sigma = math.sqrt(math.log(1 + cv * cv))
    return [lv * rng.lognormal(0.0, sigma, n) for lv in levels]


def night_levels(rng, nights=30, step=0.0, at=None, base=50.0, sd=NIGHT_SD):
    at = nights if at is None else at
    factor = np.where(np.arange(nights) >= at, 1 + step, 1.0)
    return base * factor * rng.lognormal(0.0, sd, nights)


def log_medians(samples):
    return np.log([np.median(x) for x in samples])


def test_null_histories_give_no_change():
    rng = np.random.default_rng(11)
    for _ in range(5):
        nights = find_shifts(log_medians(night_samples(rng, night_levels(rng))))
        assert nights.shifts == []
        assert 0.01 < nights.sigma < 0.03 and nights.df == 29  # one level, 30 nights


def test_a_step_in_the_middle_is_found_at_its_night():
    rng = np.random.default_rng(12)
    y = log_medians(night_samples(rng, night_levels(rng, step=0.10, at=17)))
    (shift,) = find_shifts(y).shifts
    assert (shift.index, shift.source, shift.direction) == (17, "change point", "slower")
    assert (shift.n_before, shift.n_after) == (17, 13)  # nights, not samples
    assert shift.ratio_ci[0] < 1.10 < shift.ratio_ci[1] and shift.ratio_ci[0] > 1.05
    down = log_medians(night_samples(rng, night_levels(rng, step=-0.10, at=9)))
    assert [(s.index, s.direction) for s in find_shifts(down).shifts] == [(9, "faster")]


def test_a_step_on_the_newest_night_is_found():
    rng = np.random.default_rng(13)
    y = log_medians(night_samples(rng, night_levels(rng, step=0.10, at=29)))
    (shift,) = find_shifts(y).shifts
    assert (shift.index, shift.source, shift.direction) == (29, "latest run", "slower")
    assert find_shifts(y, latest=False).shifts == []  # only the newest-night test sees it
    assert find_shifts(y[:-1]).shifts == []  # and the night before, nothing yet


def test_a_change_is_judged_on_its_new_level_not_on_its_first_night():
    """The new level is +10%, its first night only +5.5%: under the old rule the first night
    alone had to clear the effect threshold (5%, and three times the night-to-night noise,
    about 6% here), so the change was lost."""
    rng = np.random.default_rng(14)
    y = log_medians(night_samples(rng, night_levels(rng, step=0.10, at=15)))
    y[15] = float(np.median(y[:15])) + math.log(1.055)
    first_night = math.exp(y[15] - np.median(y[:15])) - 1
    assert first_night < max(0.05, 3 * run_to_run_noise(y))  # what the old rule judged
    (shift,) = find_shifts(y).shifts
    assert (shift.index, shift.direction) == (15, "slower")
    assert shift.ratio == pytest.approx(math.exp(np.median(y[15:]) - np.median(y[:15])))
    assert shift.ratio > 1.08  # the level that moved


def test_null_nights_are_not_confirmed_where_pooled_samples_would_have_been():
    """Three nights' samples pooled against the next three (the old confirmation): the rank
    test and the bootstrap interval take the night-to-night wobble for a change. The same
    nights as nights: no change, with no size threshold to help either."""
    rng = np.random.default_rng(15)
    samples = night_samples(rng, night_levels(rng), n=300)
    pooled = [
        compare_samples(
            np.concatenate(samples[k - 3 : k]), np.concatenate(samples[k : k + 3]), min_effect=0
        )
        for k in range(3, 28)
    ]
    fooled = [c for c in pooled if c.changed]
    assert len(fooled) >= len(pooled) / 3  # the trap is real
    assert all(c.p_value < 0.01 and not c.ratio_ci[0] < 1 < c.ratio_ci[1] for c in fooled)
    assert find_shifts(log_medians(samples), min_effect=0, noise_multiple=0).shifts == []


def test_the_max_t_critical_value_holds_its_false_alarm_rate():
    assert max_t_critical(30, 0.01) == max_t_critical(30, 0.01)  # seeded and cached
    assert max_t_critical(30, 0.001) > max_t_critical(30, 0.01) > 3.0
    assert max_t_critical(3, 0.01) == math.inf  # no split leaves two nights either side
    rng = np.random.default_rng(16)  # not the calibration's seed
    x = rng.standard_normal((20_000, 20))
    top = np.zeros(len(x))
    for k in range(2, 19):
        a, b = x[:, :k], x[:, k:]
        ss = ((a - a.mean(1, keepdims=True)) ** 2).sum(1) + (
            (b - b.mean(1, keepdims=True)) ** 2
        ).sum(1)
        t = np.abs(a.mean(1) - b.mean(1)) / np.sqrt(ss / 18 * (1 / k + 1 / (20 - k)))
        top = np.maximum(top, t)
    assert 0.006 < (top > max_t_critical(20, 0.01)).mean() < 0.014


def test_between_run_noise_widens_the_comparison_of_two_runs():
    rng = np.random.default_rng(17)
    a, b = rng.lognormal(np.log(50), 0.02, 2000), rng.lognormal(np.log(53), 0.02, 2000)
    within = compare_samples(a, b)  # one session: 6% is far outside the sampling noise
    assert within.verdict == "slower" and within.ratio_ci[0] > 1.05
    runs = compare_samples(a, b, between_noise=0.03, between_df=20)
    assert runs.verdict == "no change" and runs.ratio_ci[0] < 1 < runs.ratio_ci[1]
    assert runs.p_value > 0.05
    big = compare_samples(a, b * 1.2, between_noise=0.03, between_df=20)
    assert big.verdict == "slower"


def test_run_noise_comes_from_the_history_or_the_floor():
    rng = np.random.default_rng(18)
    y = np.log(night_levels(rng, nights=20, sd=0.01))
    sigma, df, source = run_noise(y)
    assert source == "history" and df == 19 and 0.005 < sigma < 0.02
    step = y.copy()
    step[10:] += math.log(1.3)  # a change in the history is not noise
    assert run_noise(step)[0] == pytest.approx(sigma, rel=0.35) and run_noise(step)[1] == 18
    assert run_noise(y[:4]) == (0.02, math.inf, "floor")  # too short to say
    assert run_noise(y[:4], floor=0.01)[0] == pytest.approx(max(0.01, find_shifts(y[:4]).sigma))
    assert run_noise([]) == (0.02, math.inf, "floor")


def test_compare_runs_takes_the_noise_of_the_cell_from_its_history(tmp_path):
    """Tight runs (2000 samples at 2% CV) of a cell whose level wobbles 3% night to night: B is
    7% over A, far outside the within-run intervals and within the cell's usual wobble."""
    rng = np.random.default_rng(19)
    levels = night_levels(rng, nights=14, sd=0.03)
    levels[-1] = levels[-2] * 1.07
    samples = night_samples(rng, levels, n=2000, cv=0.02)
    store = open_store(tmp_path / "r.db")
    ids = write_history(store, samples)
    assert compare_samples(samples[-2], samples[-1]).verdict == "slower"  # samples alone
    row = compare_runs(store, ids[-2], ids[-1]).iloc[0]
    assert (row["verdict"], row["noise_from"]) == ("no change", "history")
    assert 0.015 < row["run_noise"] < 0.05 and row["ratio"] == pytest.approx(1.07, abs=0.005)
    # with no history the floor stands in for it, and still keeps the pair unchanged
    first = compare_runs(store, ids[0], ids[1], history_runs=0).iloc[0]
    assert (first["noise_from"], first["run_noise"]) == ("floor", 0.02)
    assert first["verdict"] == "no change"
    # a real slowdown is still one
    slow = open_store(tmp_path / "slow.db")
    ids = write_history(slow, samples[:-1] + [samples[-2] * 1.3])
    assert compare_runs(slow, ids[-2], ids[-1])["verdict"].iloc[0] == "slower"


def test_detect_changes_on_a_store_reports_the_night_and_its_run(tmp_path):
    rng = np.random.default_rng(20)
    samples = night_samples(rng, night_levels(rng, nights=16, step=0.10, at=9))
    store = open_store(tmp_path / "r.db")
    ids = write_history(store, samples)
    history = detect_changes(store, ids[-1])
    assert [(c.run_id, c.run_index, c.source, c.direction) for c in history.changes] == [
        (ids[9], 9, "change point", "slower")
    ]
    cmp = history.changes[0].comparison
    assert (cmp.n_before, cmp.n_after) == (9, 7) and cmp.min_effect == pytest.approx(0.03)
    assert detect_changes(store, ids[8]).changes == []
    newest = detect_changes(store, ids[9])
    assert [(c.run_id, c.source) for c in newest.changes] == [(ids[9], "latest run")]
