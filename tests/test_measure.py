"""Statistics against known distributions, and the timing loop's rules."""

from __future__ import annotations

import numpy as np
import pytest

from harness.measure import (
    LoopSettings,
    bootstrap_interval,
    count_outliers,
    drift,
    leading_warmup,
    summarize,
    timed_loop,
)


def test_percentiles_of_a_known_sequence():
    s = summarize(np.arange(1, 101, dtype=float))  # 1..100
    assert s.n == 100 and s.min == 1 and s.max == 100
    assert (
        s.p50 == pytest.approx(50.5)
        and s.p90 == pytest.approx(90.1)
        and s.p99 == pytest.approx(99.01)
    )
    assert s.mean == pytest.approx(50.5)
    assert s.std == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert s.cv == pytest.approx(s.std / s.mean)


def test_percentiles_of_an_exponential_distribution_converge():
    rng = np.random.default_rng(1)
    s = summarize(rng.exponential(10.0, 200_000), n_boot=200)
    # Exponential(scale 10): median 10 ln 2, p90 10 ln 10, p99 10 ln 100.
    assert s.p50 == pytest.approx(10 * np.log(2), rel=0.02)
    assert s.p90 == pytest.approx(10 * np.log(10), rel=0.02)
    assert s.p99 == pytest.approx(10 * np.log(100), rel=0.03)


@pytest.mark.parametrize("q, true_value", [(50, 0.0), (90, 1.2815515655446004)])
def test_bootstrap_interval_covers_the_true_percentile_about_95_percent_of_the_time(q, true_value):
    rng = np.random.default_rng(7)
    trials, hits = 300, 0
    for t in range(trials):
        x = rng.standard_normal(300)
        lo, hi = bootstrap_interval(x, q, n_boot=400, seed=t)
        hits += lo <= true_value <= hi
    coverage = hits / trials
    # A nominal 95% percentile-bootstrap interval; binomial noise over 300 trials is ~1.3%.
    assert 0.88 <= coverage <= 0.99, coverage


def test_bootstrap_interval_narrows_with_more_samples():
    rng = np.random.default_rng(3)
    small = bootstrap_interval(rng.normal(10, 1, 50), 50)
    large = bootstrap_interval(rng.normal(10, 1, 5000), 50)
    assert (large[1] - large[0]) < (small[1] - small[0]) / 4


def test_bootstrap_is_reproducible():
    x = np.random.default_rng(0).normal(5, 1, 500)
    assert bootstrap_interval(x, 90, seed=4) == bootstrap_interval(x, 90, seed=4)


def test_drift_detects_a_slowing_sequence():
    rng = np.random.default_rng(2)
    n = 400
    throttled = np.linspace(10, 13, n) + rng.normal(0, 0.3, n)  # a phone heating up
    rel, significant = drift(throttled)
    # quarter medians sit at 1/8 and 7/8 of the ramp: 10.375 and 12.625 ms
    assert significant and rel == pytest.approx(12.625 / 10.375 - 1, abs=0.03)
    steady = 10 + rng.normal(0, 0.3, n)
    rel, significant = drift(steady)
    assert not significant and abs(rel) < 0.02


def test_summary_carries_drift_and_outliers():
    rng = np.random.default_rng(5)
    x = np.concatenate([10 + rng.normal(0, 0.1, 500), [50.0, 60.0, 70.0]])
    s = summarize(x)
    assert s.outliers == 3 and count_outliers(x[:500]) == 0
    assert s.p50_ci[0] <= s.p50 <= s.p50_ci[1] and s.p90_ci[0] <= s.p90 <= s.p90_ci[1]


def test_summary_refuses_bad_samples():
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])


class FakeClock:
    """Each call to the measured function advances time by `step` seconds."""

    def __init__(self, step: float):
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        return self.t

    def tick(self) -> None:
        self.t += self.step


def test_loop_needs_both_minimum_iterations_and_minimum_seconds():
    clock = FakeClock(0.001)  # 1 ms per call
    settings = LoopSettings(
        warmup_iterations=5, warmup_seconds=0.0, min_iterations=10, min_seconds=0.5
    )
    samples, info = timed_loop(clock.tick, settings, clock=clock)
    assert info["warmup_iterations"] == 5
    assert len(samples) == 500  # seconds bind: 0.5 s / 1 ms
    clock = FakeClock(0.2)  # a slow model: iterations bind
    samples, _ = timed_loop(clock.tick, LoopSettings(0, 0.0, 10, 0.5), clock=clock)
    assert len(samples) == 10 and all(s == pytest.approx(200.0) for s in samples)


def test_loop_warms_up_by_time_too_and_respects_the_maximum():
    clock = FakeClock(0.01)
    _, info = timed_loop(clock.tick, LoopSettings(2, 0.1, 1, 0.0), clock=clock)
    assert info["warmup_iterations"] in (10, 11)  # 0.1 s of 10 ms calls outlasts 2 iterations
    samples, _ = timed_loop(
        clock.tick, LoopSettings(0, 0.0, 5, 100.0, max_iterations=50), clock=clock
    )
    assert len(samples) == 50


def test_loop_streams_each_sample():
    seen = []
    clock = FakeClock(0.001)
    samples, _ = timed_loop(
        clock.tick, LoopSettings(0, 0.0, 7, 0.0), clock=clock, on_sample=seen.append
    )
    assert seen == samples and len(seen) == 7


def test_loop_settings_are_checked():
    with pytest.raises(ValueError):
        LoopSettings(min_iterations=0)
    with pytest.raises(ValueError):
        LoopSettings(min_iterations=10, max_iterations=5)


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_rank_test_matches_scipy(shift):
    from scipy.stats import mannwhitneyu

    from harness.measure import rank_test_p

    rng = np.random.default_rng(11)
    a = np.round(rng.normal(10, 1, 300), 1)  # rounded: ties, as timer resolution makes
    b = np.round(rng.normal(10 + shift, 1, 250), 1)
    assert rank_test_p(a, b) == pytest.approx(
        mannwhitneyu(a, b, alternative="two-sided").pvalue, rel=1e-6, abs=1e-12
    )
    assert rank_test_p(a[:10], b[:12]) == pytest.approx(
        mannwhitneyu(a[:10], b[:12], alternative="two-sided").pvalue
    )


def test_leading_warm_up_is_found_and_a_late_outlier_is_not_warm_up():
    rng = np.random.default_rng(3)
    steady = rng.normal(10.0, 0.2, 200)
    ramp = np.linspace(3.0, 1.0, 31)[:30]  # 3x falling to 1x over 30 iterations
    warm = np.concatenate([steady[:30] * ramp, steady[30:]])
    k = leading_warmup(warm)
    assert 24 <= k <= 30 and np.all(warm[k:] < 11.0)
    assert leading_warmup(steady) == 0
    outlier = steady.copy()
    outlier[3] = 40.0  # one slow sample that is not the first: an outlier of the run
    assert leading_warmup(outlier) == 0
    assert leading_warmup([50.0, 10, 10, 10]) == 0  # too few samples to tell
    assert leading_warmup(np.r_[np.full(60, 30.0), np.full(40, 10.0)]) == 50  # at most half
