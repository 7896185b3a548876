"""Changes of level in one cell's series of nights: the statistics behind ``detect_changes``.

The unit is the night. Each night gives one value, the log of its median latency; raw samples
of different nights are never pooled into one sample, because a night's level moves as a whole
(the machine, its clocks, its temperature), so hundreds of samples per night say little about
the next night. Within-night sampling noise is part of each night's value and so of the
night-to-night spread measured here.

- Candidates: binary segmentation of the series (squared error, penalty ``3 log(n) sigma^2``
  with sigma the robust night-to-night noise, the MAD of first differences), segments of at
  least two nights.
- Confirmation: each candidate is tested against its neighbours (the segments either side) by
  a two-sample t-test on the nights (winsorised, pooled standard deviation). Since the split
  was chosen where the series differs most, the t-statistic must clear the critical value of
  the *largest* t over every split of a null series of that length (Monte Carlo, seeded and
  cached), not the nominal one; a share of ``alpha`` is spent here. Candidates that fail are
  dropped one at a time, weakest first, and their neighbours tested again on the merged
  segments.
- Size: the new level (the median of the nights after the split) must differ from the old one
  (the median of the nights before) by ``effect`` or more; a first night that happens to be
  low does not hide a level that moved.
- The newest night, which no segmentation can isolate, is tested against the level it should
  belong to (the nights since the last confirmed change) by a prediction interval: Student's
  t with the standard deviation pooled within every level before it. One-sided shares of
  ``alpha``: the larger for slower (a nightly job alerts on a slowdown the night it lands),
  the smaller for faster (a speed-up is otherwise reported once a second night confirms it).

``alpha`` is thus the false-alarm budget of one cell over one history: the shares (0.05 for
change points, 0.6 and 0.02 for the newest night slower and faster) add up to less than it,
and ``bench/bench_trends.py`` measures the rate. A single +10% night is about 4.7 standard
deviations of a 2% night-to-night wobble: finding 95% of those at a 1% false-alarm rate
leaves little room, which is why the slower side of the newest night gets most of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ALPHA = 0.01
MIN_SIZE = 2  # nights in a segment of the change-point search
NOISE_FLOOR = 0.005  # no night-to-night noise is taken as smaller than 0.5%
# shares of ``alpha``, the false-alarm budget of one history
SHARE_CHANGE_POINTS = 0.05
SHARE_LATEST_SLOWER = 0.6
SHARE_LATEST_FASTER = 0.02
CRITICAL_SIMULATIONS = 40_000
LEVEL_EFFECT = 0.03  # the new level must differ by at least 3% ...
NOISE_MULTIPLE = 1.0  # ... and by at least 1x the night-to-night noise


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
    min_size: int = MIN_SIZE,
    penalty: float | None = None,
    noise_floor: float = NOISE_FLOOR,
) -> list[int]:
    """Indices where the mean of ``values`` shifts (the first index of each new level), by
    binary segmentation on squared error. ``penalty`` defaults to 3 log(n) sigma^2 with sigma
    the robust run-to-run noise (at least ``noise_floor``). These are candidates: see
    :func:`find_shifts` for the ones that count."""
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


# -- distributions -----------------------------------------------------------------------------


def t_sf(t: float, df: float) -> float:
    """Upper tail of Student's t with ``df`` degrees of freedom (normal when df is inf)."""
    if math.isinf(df):
        return 0.5 * math.erfc(t / math.sqrt(2))
    from scipy.special import stdtr

    return float(stdtr(df, -t))


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (normal when df is inf)."""
    from scipy.special import ndtri, stdtrit

    return float(ndtri(q)) if math.isinf(df) else float(stdtrit(df, q))


@lru_cache(maxsize=512)
def max_t_critical(length: int, alpha: float, min_size: int = MIN_SIZE) -> float:
    """The ``1 - alpha`` quantile of the largest two-sample |t| over every split of a series of
    ``length`` independent normal values (segments of at least ``min_size``): the critical
    value for a split chosen where the series differs most. Monte Carlo, seeded: the same
    arguments always give the same value."""
    if length < 2 * min_size or length < 3:
        return math.inf
    rng = np.random.default_rng(7919 + length)
    k = np.arange(min_size, length - min_size + 1)
    nl, nr = k.astype(np.float64), (length - k).astype(np.float64)
    scale = np.sqrt(1 / nl + 1 / nr)
    best = np.empty(CRITICAL_SIMULATIONS)
    chunk = max(1, 4_000_000 // (length * k.size))
    for start in range(0, CRITICAL_SIMULATIONS, chunk):
        x = rng.standard_normal((min(chunk, CRITICAL_SIMULATIONS - start), length))
        c1 = np.cumsum(x, axis=1)
        total, total2 = c1[:, -1:], (x * x).sum(axis=1, keepdims=True)
        sl = c1[:, k - 1]
        sr = total - sl
        ss = np.maximum(total2 - sl * sl / nl - sr * sr / nr, 1e-300)
        t = np.abs(sl / nl - sr / nr) / (np.sqrt(ss / (length - 2)) * scale)
        best[start : start + x.shape[0]] = t.max(axis=1)
    return float(np.quantile(best, 1 - alpha))


# -- night-level statistics ----------------------------------------------------------------------


def winsorized(y: np.ndarray) -> np.ndarray:
    """``y`` with values beyond three robust deviations of its median pulled in to that bound
    (five values or more; fewer are kept as they are): one odd night moves a level little."""
    if y.size < 5:
        return y
    med = float(np.median(y))
    spread = 1.4826 * float(np.median(np.abs(y - med)))
    if spread <= 0:
        return y
    return np.clip(y, med - 3 * spread, med + 3 * spread)


def pooled_noise(y: np.ndarray, cuts: Sequence[int]) -> tuple[float, int]:
    """Pooled within-segment standard deviation of ``y`` cut at ``cuts`` (each segment
    winsorised about its own mean) and its degrees of freedom."""
    bounds = [0, *cuts, y.size]
    ss, df = 0.0, 0
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        seg = winsorized(y[s:e])
        if seg.size:
            ss += float(((seg - seg.mean()) ** 2).sum())
            df += seg.size - 1
    return (math.sqrt(ss / df) if df > 0 else math.nan), df


@dataclass(frozen=True)
class Shift:
    """A confirmed change of level: night ``index`` is the first at the new level.

    ``ratio`` is the median of the nights after over the median of the nights before (for the
    newest night: that night over the median of its level); ``ratio_ci`` its 95% interval from
    the t-test on the nights; ``p_value`` the test's two-sided nominal p (a change point was
    chosen where the series differs most: it passed a stricter critical value than this p
    suggests); ``n_before``/``n_after`` the nights compared."""

    index: int
    source: str  # "change point" or "latest run"
    level_before: float  # median of the nights before (exp of the log values)
    level_after: float
    ratio: float
    ratio_ci: tuple[float, float]
    p_value: float
    n_before: int
    n_after: int
    effect: float
    direction: str  # "slower" or "faster"


@dataclass(frozen=True)
class Nights:
    """What :func:`find_shifts` found in one series: the robust night-to-night noise (MAD of
    first differences), the pooled within-level standard deviation with its degrees of
    freedom (levels cut at the shifts), and the shifts."""

    noise: float
    sigma: float
    df: int
    shifts: list[Shift]


def _two_levels(before: np.ndarray, after: np.ndarray) -> tuple[float, float, int]:
    """Difference of the (winsorised) means, after - before, its standard error (pooled
    standard deviation, at least the noise floor) and the degrees of freedom."""
    b, a = winsorized(before), winsorized(after)
    df = b.size + a.size - 2
    ss = float(((b - b.mean()) ** 2).sum() + ((a - a.mean()) ** 2).sum())
    s = max(math.sqrt(ss / df), NOISE_FLOOR) if df > 0 else math.inf
    return float(a.mean() - b.mean()), s * math.sqrt(1 / b.size + 1 / a.size), df


def _confirm(
    y: np.ndarray, lo: int, k: int, hi: int, alpha: float, effect: float
) -> tuple[float, Shift | None]:
    """How far the split at ``k`` of ``y[lo:hi]`` clears its critical value (|t| / critical)
    and the shift when it clears it with the effect and direction agreeing."""
    before, after = y[lo:k], y[k:hi]
    diff, se, df = _two_levels(before, after)
    if not df > 0:
        return 0.0, None
    t = diff / se
    critical = max_t_critical(hi - lo, SHARE_CHANGE_POINTS * alpha)
    size = math.exp(float(np.median(after)) - float(np.median(before))) - 1
    p = min(1.0, 2 * t_sf(abs(t), df))
    ok = abs(t) >= critical and p < alpha and abs(size) >= effect and size * t > 0
    if not ok:
        return abs(t) / critical, None
    q = t_quantile(0.975, df)
    shift = Shift(
        k,
        "change point",
        math.exp(float(np.median(before))),
        math.exp(float(np.median(after))),
        1 + size,
        (math.exp(diff - q * se), math.exp(diff + q * se)),
        p,
        int(before.size),
        int(after.size),
        effect,
        "slower" if t > 0 else "faster",
    )
    return abs(t) / critical, shift


def _confirmed_cuts(y: np.ndarray, alpha: float, effect: float) -> list[Shift]:
    """Candidates of the search, the weakest failing one dropped until all are confirmed."""
    cuts = change_points(y)
    while cuts:
        results = []
        for i, k in enumerate(cuts):
            lo = cuts[i - 1] if i else 0
            hi = cuts[i + 1] if i + 1 < len(cuts) else y.size
            results.append(_confirm(y, lo, k, hi, alpha, effect))
        failing = [i for i, (_, shift) in enumerate(results) if shift is None]
        if not failing:
            return [shift for _, shift in results if shift is not None]
        cuts.pop(min(failing, key=lambda i: results[i][0]))
    return []


def _latest(y: np.ndarray, cuts: list[int], alpha: float, effect: float) -> Shift | None:
    """The newest night against its level (the nights since the last cut before it)."""
    last = y.size - 1
    earlier = [c for c in cuts if c < last]
    sigma, df = pooled_noise(y[:last], earlier)
    start = earlier[-1] if earlier else 0
    level = y[start:last]
    if df < 2 or not level.size:
        return None
    sigma = max(sigma, NOISE_FLOOR)
    se = sigma * math.sqrt(1 + 1 / level.size)
    diff = float(y[last] - winsorized(level).mean())
    t = diff / se
    size = math.exp(float(y[last] - np.median(level))) - 1
    slower = t >= t_quantile(1 - SHARE_LATEST_SLOWER * alpha, df) and size >= effect
    faster = -t >= t_quantile(1 - SHARE_LATEST_FASTER * alpha, df) and -size >= effect
    if not (slower or faster):
        return None
    q = t_quantile(0.975, df)
    return Shift(
        last,
        "latest run",
        math.exp(float(np.median(level))),
        math.exp(float(y[last])),
        1 + size,
        (math.exp(diff - q * se), math.exp(diff + q * se)),
        min(1.0, 2 * t_sf(abs(t), df)),
        int(level.size),
        1,
        effect,
        "slower" if slower else "faster",
    )


def find_shifts(
    log_values: Sequence[float],
    alpha: float = ALPHA,
    min_effect: float = LEVEL_EFFECT,
    noise_multiple: float = NOISE_MULTIPLE,
    latest: bool = True,
) -> Nights:
    """Confirmed changes of level in a series of nights (log of each night's median, oldest
    first): change points inside the series and, with ``latest``, the newest night on its own
    (see the module doc). A change must be at least ``max(min_effect, noise_multiple x noise)``
    with noise the robust night-to-night standard deviation."""
    y = np.asarray(log_values, dtype=np.float64)
    noise = run_to_run_noise(y)
    effect = max(min_effect, noise_multiple * noise)
    shifts = _confirmed_cuts(y, alpha, effect) if y.size >= 2 * MIN_SIZE else []
    cuts = [s.index for s in shifts]
    if latest and y.size >= 3:
        newest = _latest(y, cuts, alpha, effect)
        if newest is not None and newest.index not in cuts:
            shifts.append(newest)
    # a newest night that changed is a level of one night: it adds nothing to the spread
    sigma, df = pooled_noise(y, sorted({s.index for s in shifts}))
    return Nights(noise, max(sigma, NOISE_FLOOR) if df > 0 else math.nan, df, shifts)
