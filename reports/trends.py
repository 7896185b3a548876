"""Did it get slower? Changes between runs, judged on raw samples.

Two runs (``compare_runs``) or a run against the history of its plan (``detect_changes``):

- Two sets of samples differ when a two-sided Mann-Whitney U test says so (``alpha``), the
  bootstrap interval of the ratio of medians excludes 1, *and* the ratio is of a practical size
  (``min_effect``; over a history, at least three times the run-to-run noise of the cell's
  medians, so a cell that is noisy night to night needs a bigger step to count). Significance
  alone flags harmless 1% shifts once there are a thousand samples; a fixed percentage alone
  flags noise.
- Over a history, change points in the per-run medians (log scale) come from binary
  segmentation with a penalty scaled by the robust run-to-run noise; each candidate is then
  confirmed by the sample test: the runs before it against its first run and against the runs
  of its new level (up to three each side). The newest run, which a segmentation cannot
  isolate, is compared with the runs since the last confirmed change.
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
from reports.stored_run import StoredRun
from reports.text import cell_label

ALPHA = 0.01
MIN_EFFECT = 0.05  # a change must move the median by at least 5% ...
NOISE_MULTIPLE = 3.0  # ... and by at least 3x the cell's run-to-run noise over a history
MIN_SAMPLES = 5
POOL_RUNS = 3  # runs pooled either side of a change point for the sample test


@dataclass(frozen=True)
class Comparison:
    """``after`` against ``before``: ratio of medians (after / before) with its bootstrap
    interval, the rank-test p-value and the verdict."""

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


def compare_samples(
    before: Sequence[float],
    after: Sequence[float],
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    full: bool = True,
) -> Comparison:
    """Whether ``after`` is slower, faster or no different from ``before`` (see module doc).
    With ``full=False`` the rank test runs only when the size allows a change, and the
    bootstrap only when the test does too (NaN otherwise): what a scan over many cells needs."""
    a = np.asarray(before, dtype=np.float64)
    b = np.asarray(after, dtype=np.float64)
    med_a = float(np.median(a)) if a.size else math.nan
    med_b = float(np.median(b)) if b.size else math.nan
    if a.size < MIN_SAMPLES or b.size < MIN_SAMPLES or not med_a > 0:
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
    p = rank_test_p(a, b) if big_enough or full else math.nan
    candidate = big_enough and p < alpha
    lo, hi = math.nan, math.nan
    if candidate or full:
        lo, hi = ratio_of_medians_interval(a, b, confidence, n_boot, seed)
    verdict = "no change"
    if candidate:
        if lo > 1:
            verdict = "slower"
        elif hi < 1:
            verdict = "faster"
    return Comparison(
        med_a, med_b, ratio, (lo, hi), p, int(a.size), int(b.size), min_effect, verdict
    )


# -- change points over a history -----------------------------------------------------------


def run_to_run_noise(values: Sequence[float]) -> float:
    """Robust standard deviation of night-to-night changes of a (log) series: the median
    absolute first difference, scaled to a normal sigma. A step moves one difference only, so
    it barely moves this estimate."""
    y = np.asarray(values, dtype=np.float64)
    if y.size < 3:
        return 0.0
    return float(np.median(np.abs(np.diff(y))) / (0.6745 * math.sqrt(2)))


def _segment_cost(csum: np.ndarray, csum2: np.ndarray, s: int, e: int) -> float:
    n = e - s
    total = csum[e] - csum[s]
    return float((csum2[e] - csum2[s]) - total * total / n)


def change_points(
    values: Sequence[float],
    min_size: int = 2,
    penalty: float | None = None,
    noise_floor: float = 0.005,
) -> list[int]:
    """Indices where the mean of ``values`` shifts (the first index of each new level), by
    binary segmentation on squared error. ``penalty`` defaults to 3 log(n) sigma^2 with sigma
    the robust run-to-run noise (at least ``noise_floor``)."""
    y = np.asarray(values, dtype=np.float64)
    n = y.size
    if n < 2 * min_size:
        return []
    if penalty is None:
        sigma = max(run_to_run_noise(y), noise_floor)
        penalty = 3.0 * math.log(n) * sigma * sigma
    csum = np.concatenate([[0.0], np.cumsum(y)])
    csum2 = np.concatenate([[0.0], np.cumsum(y * y)])
    found: list[int] = []
    stack = [(0, n)]
    while stack:
        s, e = stack.pop()
        if e - s < 2 * min_size:
            continue
        whole = _segment_cost(csum, csum2, s, e)
        best_k, best_gain = -1, 0.0
        for k in range(s + min_size, e - min_size + 1):
            gain = whole - _segment_cost(csum, csum2, s, k) - _segment_cost(csum, csum2, k, e)
            if gain > best_gain:
                best_k, best_gain = k, gain
        if best_k > 0 and best_gain > penalty:
            found.append(best_k)
            stack += [(s, best_k), (best_k, e)]
    return sorted(found)


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


def _pooled(samples: dict[int, list[float]], cell_ids: Sequence[int]) -> np.ndarray:
    parts = [samples.get(int(c), []) for c in cell_ids]
    return (
        np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]) if parts else np.empty(0)
    )


def detect_changes(
    store: Store,
    run_id: str,
    last_n: int = 30,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    noise_multiple: float = NOISE_MULTIPLE,
    current: StoredRun | None = None,
    samples: dict[int, list[float]] | None = None,
) -> History:
    """Trends and confirmed changes of every cell over the last ``last_n`` runs of the run's
    plan (the run included, later runs ignored). ``current`` is the run ``run_id`` already
    read and ``samples`` raw samples already read (by cell id): neither is read again."""
    current = current if current is not None else StoredRun.load(store, run_id)
    if current.run_id != run_id:
        raise ValueError(f"rows of run {current.run_id!r} passed for run {run_id!r}")
    run = current.run
    hist = history_frame(store, run["plan_name"], last_n, current=current)
    run_ids = list(dict.fromkeys(hist["run_id"])) if len(hist) else [run_id]
    if run_id not in run_ids:
        run_ids.append(run_id)
    found: list[tuple[Trend, list[int], list[int]]] = []  # trend, cell ids per run, candidate cuts
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
        found.append((trend, [int(c) for c in rows["cell_id"]], change_points(logs)))
    # one query for the raw samples of every run near a candidate and of the newest runs
    needed: set[int] = set()
    for _, cids, cuts in found:
        for k in cuts:
            needed.update(cids[max(0, k - POOL_RUNS) : k + POOL_RUNS])
        needed.update(cids[-POOL_RUNS - 1 :])
    known = samples or {}
    missing = sorted(c for c in needed if c not in known)
    samples = {**known, **store.samples(missing)} if missing else known
    for trend, cids, cuts in found:
        effect = max(min_effect, noise_multiple * trend.noise)
        confirmed: list[int] = []
        for i, k in enumerate(cuts):
            lo = max(confirmed[-1] if confirmed else 0, k - POOL_RUNS)
            hi = min(cuts[i + 1] if i + 1 < len(cuts) else len(cids), k + POOL_RUNS)
            before = _pooled(samples, cids[lo:k])
            # the first run of the new level must itself differ (a segment may start one run
            # early) ...
            first = compare_samples(
                before, _pooled(samples, cids[k : k + 1]), alpha, effect, full=False
            )
            # ... and so must the new level as a whole
            level = compare_samples(before, _pooled(samples, cids[k:hi]), alpha, effect, full=False)
            if first.changed and level.verdict == first.verdict:
                confirmed.append(k)
                trend.changes.append(
                    Change(
                        trend.cell_key,
                        trend.label,
                        trend.run_ids[k],
                        trend.run_indices[k],
                        "change point",
                        level,
                    )
                )
        last = len(cids) - 1
        if trend.run_ids[-1] == run_id and last >= 1 and last not in confirmed:
            lo = max(confirmed[-1] if confirmed else 0, last - POOL_RUNS)
            cmp = compare_samples(
                _pooled(samples, cids[lo:last]),
                _pooled(samples, cids[last:]),
                alpha,
                effect,
                full=False,
            )
            if cmp.changed:
                trend.changes.append(
                    Change(
                        trend.cell_key,
                        trend.label,
                        trend.run_ids[last],
                        trend.run_indices[last],
                        "latest run",
                        cmp,
                    )
                )
    return History(
        plan_name=run["plan_name"], run_id=run_id, run_ids=run_ids, trends=[t for t, _, _ in found]
    )


# -- two runs -------------------------------------------------------------------------------

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
    "verdict",
]


def compare_runs(
    store: Store, run_a: str, run_b: str, alpha: float = ALPHA, min_effect: float = MIN_EFFECT
) -> pd.DataFrame:
    """Per cell present in either run: medians, ratio B/A with its interval, p-value and
    verdict (slower / faster / no change; or why it was not compared)."""
    for rid in (run_a, run_b):
        store.run(rid)
    if run_a == run_b:
        raise StoreError(f"compare needs two different runs; both are {run_a!r}")
    cells = cells_frame(store, [run_a, run_b])
    a = {r.cell_key: r for r in cells[cells["run_id"] == run_a].itertuples()}
    b = {r.cell_key: r for r in cells[cells["run_id"] == run_b].itertuples()}
    done = [r.cell_id for r in (*a.values(), *b.values()) if r.status == "done"]
    samples = store.samples(done) if done else {}
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
            cmp = compare_samples(
                samples.get(ra.cell_id, []), samples.get(rb.cell_id, []), alpha, min_effect
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
                verdict=cmp.verdict,
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)
