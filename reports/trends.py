"""Did it get slower? Changes between runs and over a plan's history, each judged on the unit
that varies: the run (the night), not the raw sample.

A run's level moves as a whole from one run to the next (clocks, temperature, other load), so
hundreds of samples of one run are not hundreds of independent looks at the next one. Pooling
samples of different nights into one sample makes a rank test "confirm" most unchanged nights.

- Over a history (``detect_changes``): each cell's series of nights (the log of each night's
  median) goes through :func:`reports.nights.find_shifts`: change points confirmed by a t-test on
  the nights at a critical value that allows for the split having been searched for, the
  newest night against a prediction interval of its level, and a size threshold applied to the
  new level (the median of the nights after the change), ``min_effect`` and at least
  ``noise_multiple`` times the cell's night-to-night noise.
- Two runs (``compare_runs``, the pull-request check): the ratio of the two medians against
  the within-run sampling noise (bootstrap) *plus* the run-to-run noise of that cell, taken
  from the history of the base run's plan when there is one (``MIN_HISTORY_DF`` degrees of
  freedom or more) and otherwise from ``RUN_NOISE_FLOOR``. A change needs p < ``alpha``, a 95%
  interval of the ratio that excludes 1 and a size of at least ``min_effect``: significance
  alone flags harmless 1% shifts; a fixed percentage alone flags noise.
- ``compare_samples`` without ``between_noise`` compares two sets of samples of *one* session
  (Mann-Whitney and a bootstrap interval): right only where the samples share one level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.measure import rank_test_p
from harness.store import Store, StoreError
from reports.frame import cells_frame, history_frame
from reports.nights import (
    LEVEL_EFFECT,
    NOISE_MULTIPLE,
    Shift,
    change_points,
    find_shifts,
    run_to_run_noise,
    t_quantile,
    t_sf,
)
from reports.stored_run import StoredRun
from reports.text import cell_label

ALPHA = 0.01
MIN_EFFECT = 0.05  # two runs: a change must move the median by at least 5%
MIN_SAMPLES = 5
RUN_NOISE_FLOOR = 0.02  # run-to-run sd of a cell's level (log) assumed when no history says
MIN_HISTORY_DF = 5  # a history gives the run-to-run noise from six runs of one level on
HISTORY_RUNS = 30  # runs of the base run's plan read for the run-to-run noise

__all__ = [
    "ALPHA",
    "MIN_EFFECT",
    "Change",
    "Comparison",
    "History",
    "Trend",
    "change_points",
    "compare_runs",
    "compare_samples",
    "detect_changes",
    "ratio_of_medians_interval",
    "run_noise",
    "run_to_run_noise",
]


@dataclass(frozen=True)
class Comparison:
    """``after`` against ``before``: medians, their ratio (after / before) with its 95%
    interval, the test's p-value and the verdict. ``n_before``/``n_after`` count the units
    compared: raw samples for two runs, nights over a history."""

    median_before_ms: float
    median_after_ms: float
    ratio: float
    ratio_ci: tuple[float, float]
    p_value: float
    n_before: int
    n_after: int
    min_effect: float
    verdict: str  # "slower", "faster", "no change", "too few samples"

    @property
    def changed(self) -> bool:
        return self.verdict in ("slower", "faster")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio_ci"] = list(self.ratio_ci)
        return d

    @classmethod
    def of_shift(cls, shift: Shift) -> Comparison:
        """A change of level found over a history (medians of nights, counts of nights)."""
        return cls(
            shift.level_before,
            shift.level_after,
            shift.ratio,
            shift.ratio_ci,
            shift.p_value,
            shift.n_before,
            shift.n_after,
            shift.effect,
            shift.direction,
        )


def ratio_of_medians_interval(
    before: np.ndarray,
    after: np.ndarray,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of median(after) / median(before), each resampled on its
    own. Seeded: the same samples always give the same interval."""
    rng = np.random.default_rng(seed)

    def boot_medians(x: np.ndarray) -> np.ndarray:
        chunk = max(1, int(2e6 // x.size))
        out = []
        for start in range(0, n_boot, chunk):
            k = min(chunk, n_boot - start)
            out.append(np.median(x[rng.integers(0, x.size, size=(k, x.size))], axis=1))
        return np.concatenate(out)

    ratios = boot_medians(after) / boot_medians(before)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(ratios, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _between_runs_test(
    a: np.ndarray,
    b: np.ndarray,
    ratio: float,
    confidence: float,
    n_boot: int,
    seed: int,
    noise: float,
    df: float,
) -> tuple[float, tuple[float, float]]:
    """p-value and interval of the ratio of two runs' medians when each run's level also
    varies by ``noise`` (sd of the log level, ``df`` degrees of freedom): the within-run
    standard error (from the bootstrap interval) and the two runs' level noise in quadrature."""
    lo, hi = ratio_of_medians_interval(a, b, confidence, n_boot, seed)
    z = t_quantile(0.5 + confidence / 2, math.inf)
    within = (math.log(hi) - math.log(lo)) / (2 * z) if lo > 0 else math.inf
    se = math.sqrt(within * within + 2 * noise * noise)
    d = math.log(ratio)
    p = min(1.0, 2 * t_sf(abs(d) / se, df)) if se > 0 else 0.0
    q = t_quantile(0.5 + confidence / 2, df)
    return p, (math.exp(d - q * se), math.exp(d + q * se))


def compare_samples(
    before: Sequence[float],
    after: Sequence[float],
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    full: bool = True,
    *,
    between_noise: float = 0.0,
    between_df: float = math.inf,
) -> Comparison:
    """Whether ``after`` is slower, faster or no different from ``before``: p < ``alpha``, an
    interval of the ratio of medians that excludes 1, and a ratio at least ``min_effect`` from 1.

    With ``between_noise`` (the sd of a run's log level from one run to the next, estimated
    with ``between_df`` degrees of freedom; inf: taken as known) the samples are two runs:
    the test and the interval add both runs' level noise to the within-run noise, so many
    samples of each run are never taken as proof on their own. Without it they are two sets of
    one session: a Mann-Whitney test and a bootstrap interval. With ``full=False`` the tests
    run only when the size allows a change (NaN otherwise): what a scan over many cells
    needs."""
    a = np.asarray(before, dtype=np.float64)
    b = np.asarray(after, dtype=np.float64)
    med_a = float(np.median(a)) if a.size else math.nan
    med_b = float(np.median(b)) if b.size else math.nan
    if a.size < MIN_SAMPLES or b.size < MIN_SAMPLES or not med_a > 0 or not med_b > 0:
        return Comparison(
            med_a,
            med_b,
            med_b / med_a if med_a > 0 else math.nan,
            (math.nan, math.nan),
            math.nan,
            int(a.size),
            int(b.size),
            min_effect,
            "too few samples",
        )
    ratio = med_b / med_a
    big_enough = abs(ratio - 1) >= min_effect
    p, (lo, hi) = math.nan, (math.nan, math.nan)
    if between_noise > 0 and (big_enough or full):
        p, (lo, hi) = _between_runs_test(
            a, b, ratio, confidence, n_boot, seed, between_noise, between_df
        )
    elif between_noise <= 0:
        p = rank_test_p(a, b) if big_enough or full else math.nan
        if (big_enough and p < alpha) or full:
            lo, hi = ratio_of_medians_interval(a, b, confidence, n_boot, seed)
    verdict = "no change"
    if big_enough and p < alpha:
        if lo > 1:
            verdict = "slower"
        elif hi < 1:
            verdict = "faster"
    return Comparison(
        med_a, med_b, ratio, (lo, hi), p, int(a.size), int(b.size), min_effect, verdict
    )


@dataclass(frozen=True)
class Change:
    """A confirmed change of a cell's latency, first seen in ``run_id``."""

    cell_key: str
    label: str
    run_id: str
    run_index: int
    source: str  # "change point" (inside the history) or "latest run"
    comparison: Comparison

    @property
    def direction(self) -> str:
        return self.comparison.verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell_key": self.cell_key,
            "label": self.label,
            "run_id": self.run_id,
            "run_index": self.run_index,
            "source": self.source,
            "direction": self.direction,
            **self.comparison.to_dict(),
        }


@dataclass
class Trend:
    """One cell over the history of its plan: per-run p50/p90 and the confirmed changes."""

    cell_key: str
    label: str
    run_ids: list[str]
    run_indices: list[int]
    p50_ms: list[float]
    p90_ms: list[float]
    noise: float  # robust run-to-run sigma of log p50
    changes: list[Change] = field(default_factory=list)


@dataclass
class History:
    """Trends of every cell of a plan's last runs, up to and including ``run_id``."""

    plan_name: str
    run_id: str
    run_ids: list[str]
    trends: list[Trend]

    @property
    def changes(self) -> list[Change]:
        return [c for t in self.trends for c in t.changes]

    def latest_changes(self) -> list[Change]:
        """Changes first seen in the run itself: what a nightly job alerts on."""
        return [c for c in self.changes if c.run_id == self.run_id]

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan_name,
            "run_id": self.run_id,
            "runs": self.run_ids,
            "changes": [c.to_dict() for c in self.changes],
        }


def _trends(hist: pd.DataFrame) -> list[tuple[Trend, np.ndarray]]:
    """One trend per cell of a history frame (nights with a positive p50, oldest first) and the
    log of its p50s."""
    out = []
    for key, rows in hist.groupby("cell_key", sort=True):
        rows = rows.sort_values("run_index")
        p50 = rows["p50_ms"].to_numpy(dtype=np.float64)
        ok = np.isfinite(p50) & (p50 > 0)
        rows, p50 = rows[ok], p50[ok]
        if not len(rows):
            continue
        logs = np.log(p50)
        trend = Trend(
            cell_key=str(key),
            label=cell_label(rows.iloc[-1]),
            run_ids=list(rows["run_id"]),
            run_indices=[int(i) for i in rows["run_index"]],
            p50_ms=[float(v) for v in p50],
            p90_ms=[float(v) for v in rows["p90_ms"]],
            noise=run_to_run_noise(logs),
        )
        out.append((trend, logs))
    return out


def detect_changes(
    store: Store,
    run_id: str,
    last_n: int = 30,
    alpha: float = ALPHA,
    min_effect: float = LEVEL_EFFECT,
    noise_multiple: float = NOISE_MULTIPLE,
    current: StoredRun | None = None,
    samples: dict[int, list[float]] | None = None,
) -> History:
    """Trends and confirmed changes of every cell over the last ``last_n`` runs of the run's
    plan (the run included, later runs ignored), each run one night of the cell's series (its
    median; see :mod:`reports.nights`). ``alpha`` is the false-alarm budget of one cell over
    the window. ``current`` is the run ``run_id`` already read: it is not read again.
    ``samples`` (raw samples already read, by cell id) is accepted for callers that have them;
    the tests are on the nights, so no raw sample is read."""
    del samples  # the unit is the night: its median is in the metrics already read
    current = current if current is not None else StoredRun.load(store, run_id)
    if current.run_id != run_id:
        raise ValueError(f"rows of run {current.run_id!r} passed for run {run_id!r}")
    run = current.run
    hist = history_frame(store, run["plan_name"], last_n, current=current)
    run_ids = list(dict.fromkeys(hist["run_id"])) if len(hist) else [run_id]
    if run_id not in run_ids:
        run_ids.append(run_id)
    trends = []
    for trend, logs in _trends(hist):
        nights = find_shifts(
            logs, alpha, min_effect, noise_multiple, latest=trend.run_ids[-1] == run_id
        )
        for shift in sorted(nights.shifts, key=lambda s: s.index):
            trend.changes.append(
                Change(
                    trend.cell_key,
                    trend.label,
                    trend.run_ids[shift.index],
                    trend.run_indices[shift.index],
                    shift.source,
                    Comparison.of_shift(shift),
                )
            )
        trends.append(trend)
    return History(plan_name=run["plan_name"], run_id=run_id, run_ids=run_ids, trends=trends)


# -- two runs -------------------------------------------------------------------------------


def run_noise(
    log_levels: Sequence[float], floor: float = RUN_NOISE_FLOOR
) -> tuple[float, float, str]:
    """Run-to-run noise of a cell's level from its history (log of each run's median, oldest
    first): the pooled standard deviation within its levels (cut at the changes the history
    shows) and its degrees of freedom, with where it came from. Fewer than
    ``MIN_HISTORY_DF`` degrees of freedom: the larger of ``floor`` and what the history says,
    taken as known."""
    y = np.asarray(log_levels, dtype=np.float64)
    nights = find_shifts(y) if y.size >= 3 else None
    if nights is not None and nights.df >= MIN_HISTORY_DF:
        return nights.sigma, float(nights.df), "history"
    said = nights.sigma if nights is not None and nights.df > 0 else 0.0
    return max(floor, said), math.inf, "floor"


def rounds_noise(
    *cells: tuple[Sequence[float], Sequence[int]],
) -> tuple[float, float, str] | None:
    """Run-to-run noise from the rounds of the cells compared (each a fresh process): the
    pooled standard deviation of the log of each round's median within each cell, with its
    degrees of freedom (rounds - 1 per cell); None with fewer than two degrees of freedom."""
    ss, df = 0.0, 0
    for values, rounds in cells:
        x, r = np.asarray(values, dtype=np.float64), np.asarray(rounds)
        if x.size == 0 or r.size != x.size:
            continue
        medians = np.array([np.median(x[r == k]) for k in np.unique(r)])
        medians = medians[medians > 0]
        if medians.size < 2:
            continue
        logs = np.log(medians)
        ss += float(((logs - logs.mean()) ** 2).sum())
        df += medians.size - 1
    if df < 2:
        return None
    return math.sqrt(ss / df), float(df), "rounds"


COMPARE_COLUMNS = [
    "cell_key",
    "label",
    "status_a",
    "status_b",
    "median_a_ms",
    "median_b_ms",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "p_value",
    "n_a",
    "n_b",
    "run_noise",
    "noise_from",
    "verdict",
]


def _history_levels(store: Store, run_a: str, run_b: str, last_n: int) -> dict[str, np.ndarray]:
    """Log p50 per cell key over the last ``last_n`` runs of run A's plan up to A (A included,
    B left out), oldest first."""
    if last_n < 3:
        return {}
    try:
        hist = history_frame(store, store.run(run_a)["plan_name"], last_n, until_run=run_a)
    except StoreError:
        return {}
    hist = hist[(hist["run_id"] != run_b) & (hist["p50_ms"] > 0)]
    return {
        str(key): np.log(rows.sort_values("run_index")["p50_ms"].to_numpy(dtype=np.float64))
        for key, rows in hist.groupby("cell_key", sort=False)
    }


def compare_runs(
    store: Store,
    run_a: str,
    run_b: str,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    *,
    noise_floor: float = RUN_NOISE_FLOOR,
    history_runs: int = HISTORY_RUNS,
) -> pd.DataFrame:
    """Per cell present in either run: medians, ratio B/A with its 95% interval, p-value and
    verdict (slower / faster / no change; or why it was not compared). The run-to-run noise
    of each cell (``run_noise``, with ``noise_from``: "history", "rounds" or "floor") comes
    from up to ``history_runs`` runs of A's plan up to A (:func:`run_noise`), else from the
    two cells' rounds (:func:`rounds_noise`), else ``noise_floor``."""
    for rid in (run_a, run_b):
        store.run(rid)
    if run_a == run_b:
        raise StoreError(f"compare needs two different runs; both are {run_a!r}")
    cells = cells_frame(store, [run_a, run_b])
    a = {r.cell_key: r for r in cells[cells["run_id"] == run_a].itertuples()}
    b = {r.cell_key: r for r in cells[cells["run_id"] == run_b].itertuples()}
    done = [r.cell_id for r in (*a.values(), *b.values()) if r.status == "done"]
    samples = store.sample_rounds(done) if done else {}
    levels = _history_levels(store, run_a, run_b, history_runs)
    rows = []
    for key in sorted(set(a) | set(b), key=lambda k: cell_label((a.get(k) or b.get(k))._asdict())):
        ra, rb = a.get(key), b.get(key)
        ref = (rb or ra)._asdict()
        row: dict[str, Any] = {
            "cell_key": key,
            "label": cell_label(ref),
            "status_a": ra.status if ra else "absent",
            "status_b": rb.status if rb else "absent",
        }
        if ra is None or rb is None or ra.status != "done" or rb.status != "done":
            row["verdict"] = "not compared"
        else:
            sa, sb = samples.get(ra.cell_id, ([], [])), samples.get(rb.cell_id, ([], []))
            noise, df, source = run_noise(levels.get(key, np.empty(0)), noise_floor)
            if source == "floor":
                noise, df, source = rounds_noise(sa, sb) or (noise, df, source)
            cmp = compare_samples(
                sa[0],
                sb[0],
                alpha,
                min_effect,
                between_noise=noise,
                between_df=df,
            )
            row.update(
                median_a_ms=cmp.median_before_ms,
                median_b_ms=cmp.median_after_ms,
                ratio=cmp.ratio,
                ratio_ci_low=cmp.ratio_ci[0],
                ratio_ci_high=cmp.ratio_ci[1],
                p_value=cmp.p_value,
                n_a=cmp.n_before,
                n_b=cmp.n_after,
                run_noise=noise,
                noise_from=source,
                verdict=cmp.verdict,
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)
