"""Rounds: a cell measured R times, each time afresh, its samples kept by round.

One process sees one layout of memory, one CPU placement, one clock state; a second process
of the same commit sees others, and its median moves by more than a single process's
interval admits. So every target measures a cell in ``settings.rounds`` rounds, each a
:meth:`Target.profile` call: a fresh worker process on the host and on remote hosts, a fresh
runner launch (after the phone's cool-down wait) on a phone, a separate profile job on AI
Hub (whose rounds are all submitted at once: ``Target.rounds_at_once``, as a round there is
minutes of queueing, not of measuring). The rounds' samples and numbers merge into one
:class:`Profile` whose intervals are the two-level bootstrap of harness.measure.

The plan's minimums are for the cell: each round runs its share of them
(:func:`per_round`), never fewer than :data:`MIN_ROUND_ITERATIONS` iterations, so R = 3
costs R loads and warm-ups more, not R times the measuring.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from typing import TYPE_CHECKING

from harness.measure import summarize
from harness.target import Profile, ProfileSettings, TargetError
from harness.timing import DEFAULT_NOISE_FLOOR, LoopSettings

if TYPE_CHECKING:  # pragma: no cover
    from harness.artifact import Artifact
    from harness.target import Device, Target

MIN_ROUND_ITERATIONS = 10
# metrics whose worst round is the cell's (memory a round peaked at is memory the app needs)
WORST_OF_ROUNDS = ("peak_memory_mb", "planned_memory_mb")


def per_round(loop: LoopSettings, rounds: int) -> LoopSettings:
    """One round's loop when ``loop`` holds the cell's minimums: each round its share of the
    iterations (at least :data:`MIN_ROUND_ITERATIONS`, or all of them if fewer) and of the
    seconds; warm-up is per round (each round starts cold)."""
    if rounds <= 1:
        return loop
    iterations = max(math.ceil(loop.min_iterations / rounds), MIN_ROUND_ITERATIONS)
    iterations = min(iterations, loop.min_iterations)
    return replace(
        loop,
        min_iterations=iterations,
        min_seconds=loop.min_seconds / rounds,
        max_iterations=max(iterations, math.ceil(loop.max_iterations / rounds)),
        max_seconds=max(loop.max_seconds / rounds, 1.0),
    )


def in_rounds(settings: ProfileSettings, rounds: int) -> ProfileSettings:
    """``settings`` (whose loop holds the cell's minimums) measured in ``rounds`` rounds."""
    return replace(settings, loop=per_round(settings.loop, rounds), rounds=rounds)


def round_settings(settings: ProfileSettings, index: int) -> ProfileSettings:
    """The settings of round ``index`` (0-based): one round, its own session so a target that
    keeps remote jobs by session (AI Hub) submits a job per round."""
    if settings.rounds <= 1:
        return settings
    session = f"{settings.session}#round-{index + 1}" if settings.session else f"round-{index + 1}"
    return replace(settings, rounds=1, session=session)


def merge_rounds(rounds: list[Profile], noise_floor: float = DEFAULT_NOISE_FLOOR) -> Profile:
    """One profile from the rounds of one cell: samples in round order with their round,
    two-level statistics, each metric the median over rounds (memory peaks: the largest),
    warnings once each, the rounds' own numbers kept in ``details["rounds"]``."""
    if len(rounds) == 1:
        return rounds[0]
    first = rounds[0]
    samples: list[float] = []
    index: list[int] = []
    for i, p in enumerate(rounds):
        samples += p.samples_ms
        index += [i] * len(p.samples_ms)
    metrics: dict[str, float] = {}
    for name in dict.fromkeys(k for p in rounds for k in p.metrics):
        values = [p.metrics[name] for p in rounds if name in p.metrics]
        metrics[name] = max(values) if name in WORST_OF_ROUNDS else statistics.median(values)
    stats = summarize(samples, rounds=index, noise_floor=noise_floor)
    warnings = list(dict.fromkeys(w for p in rounds for w in p.warnings))
    if stats.drift_significant and abs(stats.drift) > 0.05:
        note = f"latency drifted {stats.drift:+.0%} from the first to the last quarter of a round"
        warnings = [w for w in warnings if not w.startswith("latency drifted")] + [note]
    per = [
        {
            "round": i + 1,
            "iterations": len(p.samples_ms),
            "p50_ms": p.stats.p50,
            "p90_ms": p.stats.p90,
            "metrics": p.metrics,
            "environment": p.environment,  # a phone's thermal state and wait before each round
            "details": p.details,
        }
        for i, p in enumerate(rounds)
    ]
    return replace(
        first,
        samples_ms=samples,
        sample_rounds=index,
        stats=stats,
        metrics=metrics,
        units={k: v for p in rounds for k, v in p.units.items()},
        warnings=warnings,
        settings={**first.settings, "rounds": len(rounds)},
        details={**first.details, "rounds": per},
    )


def measure_rounds(
    target: Target,
    artifact: Artifact,
    device: Device,
    settings: ProfileSettings,
    done: list[Profile] | None = None,
) -> Profile:
    """``settings.rounds`` profiles of ``artifact`` on ``device``, merged. ``done`` holds the
    rounds already measured (a retry after a failed round goes on from there) and gains each
    new one. A round that fails raises its :class:`TargetError` with the samples of every
    round so far."""
    done = [] if done is None else done
    if target.rounds_at_once and settings.rounds > 1:
        # the target runs every round at once (and picks up the rounds a retry already has)
        return target.profile(artifact, device, settings)
    while len(done) < max(1, settings.rounds):
        try:
            done.append(target.profile(artifact, device, round_settings(settings, len(done))))
        except TargetError as exc:
            exc.samples_ms = [s for p in done for s in p.samples_ms] + exc.samples_ms
            raise
    return merge_rounds(done, settings.noise_floor)


def profile_many_rounds(
    target: Target,
    artifact: Artifact,
    devices: list[Device],
    settings: ProfileSettings,
    **first_round: object,
) -> list[Profile | TargetError]:
    """:func:`measure_rounds` for several devices measured at once (:meth:`Target.
    profile_many`, which AI Hub runs concurrently): round by round, every device that has not
    failed in the same round. ``first_round``: keyword arguments for the first round only
    (AI Hub's ``parity``, checked once)."""
    if target.rounds_at_once and settings.rounds > 1:
        return target.profile_many(artifact, devices, settings, **first_round)
    done: list[list[Profile]] = [[] for _ in devices]
    failed: dict[int, TargetError] = {}
    for i in range(max(1, settings.rounds)):
        live = [k for k in range(len(devices)) if k not in failed]
        if not live:
            break
        kw = first_round if i == 0 else {}
        results = target.profile_many(
            artifact, [devices[k] for k in live], round_settings(settings, i), **kw
        )
        for k, r in zip(live, results, strict=True):
            if isinstance(r, TargetError):
                r.samples_ms = [s for p in done[k] for s in p.samples_ms] + r.samples_ms
                failed[k] = r
            else:
                done[k].append(r)
    return [
        failed[k] if k in failed else merge_rounds(done[k], settings.noise_floor)
        for k in range(len(devices))
    ]
