"""Timing loops and the statistics every target reports.

Rules (DESIGN.md): warm up, then run at least N iterations *and* at least S seconds; keep the
raw samples; report p50/p90/p99, mean, standard deviation, CV, a bootstrap interval for the
gated percentiles, drift between the first and last quarter of the run (how throttling shows)
and the number of outliers.

A cell is measured in *rounds* (each a fresh process, session, runner launch or profile job:
harness/rounds.py). With more than one round the intervals are a two-level bootstrap (resample
rounds, then samples within each round) with Student's t for the few rounds there are and a
floor under the between-round spread, so they hold the run-to-run noise a single process
cannot see; the between-round and within-round spreads are kept apart.

Every target turns its raw per-iteration times into a :class:`LatencyStats` with
:func:`summarize`, so numbers from a laptop, a phone and AI Hub mean the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Percentiles use the "linear" definition (numpy's default, type 7 in Hyndman & Fan).
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of raw per-iteration latencies in milliseconds."""

    n: int
    mean: float
    std: float
    cv: float
    min: float
    max: float
    p50: float
    p90: float
    p99: float
    p50_ci: tuple[float, float]
    p90_ci: tuple[float, float]
    confidence: float
    drift: float  # median of the last quarter / median of the first quarter, minus 1
    drift_significant: bool  # the two quarters differ by a rank test at the 1% level
    outliers: int  # samples beyond Q3 + 3 IQR or below Q1 - 3 IQR
    extra: dict[str, Any] = field(default_factory=dict)
    rounds: int = 1  # fresh processes / sessions the samples came from
    between_round_cv: float = 0.0  # sd of the rounds' medians / their mean
    within_round_cv: float = 0.0  # mean CV of the samples inside one round
    # share of the p90 interval's variance that comes from rounds differing (0 with one
    # round): above one half, more rounds narrow the interval, more samples do not
    round_share: float = 0.0

    def percentile(self, q: int) -> float:
        return {50: self.p50, 90: self.p90, 99: self.p99}[q]

    def interval(self, q: int) -> tuple[float, float]:
        if q == 50:
            return self.p50_ci
        if q == 90:
            return self.p90_ci
        raise KeyError(f"no interval is kept for p{q}; only p50 and p90")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["p50_ci"] = list(self.p50_ci)
        d["p90_ci"] = list(self.p90_ci)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyStats:
        d = {k: v for k, v in d.items() if k in _STATS_FIELDS}
        d["p50_ci"] = tuple(d["p50_ci"])
        d["p90_ci"] = tuple(d["p90_ci"])
        return cls(**d)


_STATS_FIELDS = {f for f in LatencyStats.__dataclass_fields__}


def bootstrap_interval(
    samples: Sequence[float] | np.ndarray,
    q: float,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval for the q-th percentile of ``samples``.

    Seeded, so the same samples always give the same interval (reports are reproducible).
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    # Resample in chunks to bound memory for long runs (n_boot x n floats).
    chunk = max(1, int(4e6 // x.size))
    stats = []
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        idx = rng.integers(0, x.size, size=(k, x.size))
        stats.append(np.percentile(x[idx], q, axis=1))
    boot = np.concatenate(stats)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def rank_test_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value.

    For 20 or more samples on each side: the normal approximation with tie correction (what
    scipy itself uses there, without importing scipy, which costs a second at start-up); for
    smaller samples, scipy's exact method."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        return 1.0
    if min(n1, n2) < 20:
        from scipy.stats import mannwhitneyu

        return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(both.size, dtype=np.float64)
    sorted_vals = both[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    n = n1 + n2
    tie = (counts**3 - counts).sum() / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie))
    if sigma == 0:
        return 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / sigma  # continuity correction, as scipy
    return float(min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2))))


def drift(samples: Sequence[float] | np.ndarray) -> tuple[float, bool]:
    """Relative change of the median from the first to the last quarter of the run and
    whether it is significant (Mann-Whitney, p < 0.01). A phone that throttles shows a large
    positive drift; a machine that warms its caches late, a negative one."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 8:
        return (0.0, False)
    k = x.size // 4
    first, last = x[:k], x[-k:]
    m0 = float(np.median(first))
    rel = float(np.median(last)) / m0 - 1 if m0 > 0 else 0.0
    return (rel, rank_test_p(first, last) < 0.01)


def leading_warmup(samples: Sequence[float] | np.ndarray, window: int = 5) -> int:
    """How many leading samples are warm-up: from a clearly slow first sample (over the
    second half's median by five robust deviations and at least 10%) until ``window``
    samples in a row are no longer slow (three deviations, at least 5%), so the noise of a
    steady run is never taken for warm-up. Services that report every iteration they ran
    (AI Hub) include the slow first ones; at most half the run is ever taken as warm-up."""
    x = np.asarray(samples, dtype=np.float64)
    n = x.size
    if n < 8:
        return 0
    steady = x[n // 2 :]
    m = float(np.median(steady))
    spread = 1.4826 * float(np.median(np.abs(steady - m)))
    if x[0] <= m + max(5 * spread, 0.10 * m):
        return 0  # no slow start; a slow sample later on is an outlier of the run, not warm-up
    slow = x > m + max(3 * spread, 0.05 * m)
    for i in range(n // 2 + 1):
        if not slow[i : i + window].any():
            return i
    return n // 2


def count_outliers(samples: Sequence[float] | np.ndarray, k: float = 3.0) -> int:
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 4:
        return 0
    q1, q3 = np.percentile(x, [25, 75])
    iqr = q3 - q1
    return int(((x > q3 + k * iqr) | (x < q1 - k * iqr)).sum())


def _padded(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.array([g.size for g in groups])
    data = np.zeros((len(groups), int(sizes.max())))
    for r, g in enumerate(groups):
        data[r, : g.size] = g
    return data, sizes


def _two_level_boot(
    groups: list[np.ndarray], q: float, n_boot: int, rng: np.random.Generator, rounds: bool
) -> np.ndarray:
    """Bootstrap percentiles: rounds drawn with replacement (``rounds``; else each round kept),
    then each drawn round's samples with replacement. Rounds weigh the same: each
    contributes as many draws as the smallest round has samples."""
    data, sizes = _padded(groups)
    k = len(groups)
    m = int(sizes.min())
    chunk = max(1, int(4e6 // (k * m)))
    out = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        if rounds:
            picked = rng.integers(0, k, size=(b, k))
        else:
            picked = np.broadcast_to(np.arange(k), (b, k))
        idx = (rng.random((b, k, m)) * sizes[picked][..., None]).astype(np.int64)
        vals = data[picked[..., None], idx].reshape(b, k * m)
        out.append(np.percentile(vals, q, axis=1))
    return np.concatenate(out)


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (scipy is imported only when rounds need it)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


def rounds_interval(
    groups: Sequence[Sequence[float] | np.ndarray],
    q: float,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    noise_floor: float = 0.0,
) -> tuple[tuple[float, float], float]:
    """The two-level interval for the q-th percentile of samples measured in rounds, and the
    share of its variance that comes from the rounds differing.

    A hierarchical bootstrap (resample rounds, then samples within each) gives the variance of
    the pooled percentile; resampling samples alone gives its within-round part W; the rest is
    what rounds differing adds, B / R. The between-round standard deviation is taken as at
    least ``noise_floor`` of the estimate: rounds measured one after another share the
    machine's state, and from one invocation to the next its level moves by more than they
    show. The interval is the estimate +- Student's t with R - 1 degrees of freedom times
    sqrt(W + B / R), since three rounds say little about the spread between rounds. One
    round: the plain bootstrap (:func:`bootstrap_interval`)."""
    gs = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    if len(gs) < 2:
        pooled = gs[0] if gs else np.empty(0)
        return bootstrap_interval(pooled, q, confidence, n_boot, seed), 0.0
    rng = np.random.default_rng(seed)
    est = float(np.percentile(np.concatenate(gs), q))
    both = _two_level_boot(gs, q, n_boot, rng, rounds=True)
    within = _two_level_boot(gs, q, max(200, n_boot // 4), rng, rounds=False)
    # Resampling rounds draws each round's own sampling noise a second time: of the two-level
    # variance V, (R - 1) / R (B + R W) / R is the rounds' means moving, where W is the
    # within-round variance of the estimate. So B / R = (V - W) R / (R - 1) - W; zero when
    # rounds agree.
    r, total, inside = len(gs), float(both.var()), float(within.var())
    between = max(0.0, (total - inside) * r / (r - 1) - inside, (noise_floor * est) ** 2 / r)
    half = t_quantile((1 + confidence) / 2, r - 1) * math.sqrt(inside + between)
    share = between / (between + inside) if between + inside > 0 else 0.0
    return (max(est - half, 0.0), est + half), share


def round_spreads(groups: Sequence[np.ndarray]) -> tuple[float, float]:
    """(between-round CV of the rounds' medians, mean within-round CV)."""
    gs = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    if len(gs) < 2:
        x = gs[0] if gs else np.empty(0)
        within = float(x.std(ddof=1) / x.mean()) if x.size > 1 and x.mean() > 0 else 0.0
        return 0.0, within
    medians = np.array([np.median(g) for g in gs])
    between = float(medians.std(ddof=1) / medians.mean()) if medians.mean() > 0 else 0.0
    cvs = [float(g.std(ddof=1) / g.mean()) for g in gs if g.size > 1 and g.mean() > 0]
    return between, float(np.mean(cvs)) if cvs else 0.0


def split_rounds(samples: np.ndarray, rounds: Sequence[int] | np.ndarray | None) -> list:
    """The samples of each round, in round order (one group when ``rounds`` is None)."""
    if rounds is None or len(rounds) == 0:
        return [samples]
    r = np.asarray(rounds)
    if r.size != samples.size:
        raise ValueError(f"{samples.size} samples but {r.size} round numbers")
    return [samples[r == k] for k in np.unique(r)]


def summarize(
    samples_ms: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    rounds: Sequence[int] | np.ndarray | None = None,
    noise_floor: float = 0.0,
) -> LatencyStats:
    """All latency statistics from raw samples in milliseconds; ``rounds`` gives each
    sample's round (samples of one round in their order), for the two-level intervals, whose
    between-round spread is at least ``noise_floor`` (:func:`rounds_interval`)."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples to summarise")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError("latency samples must be finite and non-negative")
    groups = split_rounds(x, rounds)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(x, PERCENTILES))
    # drift within a round (rounds start cool and fresh): the round that drifted most
    d, sig = max((drift(g) for g in groups), key=lambda t: (t[1], abs(t[0])))
    p50_ci, _ = rounds_interval(groups, 50, confidence, n_boot, seed, noise_floor)
    p90_ci, share = rounds_interval(groups, 90, confidence, n_boot, seed + 1, noise_floor)
    between, within = round_spreads(groups)
    return LatencyStats(
        n=int(x.size),
        mean=mean,
        std=std,
        cv=std / mean if mean > 0 else 0.0,
        min=float(x.min()),
        max=float(x.max()),
        p50=p50,
        p90=p90,
        p99=p99,
        p50_ci=p50_ci,
        p90_ci=p90_ci,
        confidence=confidence,
        drift=d,
        drift_significant=sig,
        outliers=sum(count_outliers(g) for g in groups),
        rounds=len(groups),
        between_round_cv=between,
        within_round_cv=within,
        round_share=share,
    )


# The timing loop is stdlib-only (harness/timing.py) because the profiling agent carries it to
# remote hosts; it is re-exported here for in-process use.
from harness.timing import LoopSettings, timed_loop  # noqa: E402

__all__ = [
    "PERCENTILES",
    "LatencyStats",
    "LoopSettings",
    "bootstrap_interval",
    "count_outliers",
    "drift",
    "leading_warmup",
    "rank_test_p",
    "rounds_interval",
    "summarize",
    "timed_loop",
]
