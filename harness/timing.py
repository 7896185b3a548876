"""The timing loop, in the standard library only.

It runs in this process (benchmarks), in the host target's worker processes, and inside the
profiling agent on remote hosts (targets/agent/bundle.py packs this file into agent.pyz), so every
number vitbench reports comes from the same loop: warm up by count *and* by time, then
measure until at least N iterations *and* at least S seconds have passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# a cell is measured in this many rounds, each in a fresh process / session / job
# (harness/rounds.py): `vitbench run`, `vitbench profile` and the gate; --quick: 1
DEFAULT_ROUNDS = 3
# the least between-round spread (sd, relative) a two-level interval assumes: rounds measured
# back to back share the machine's state (bench/bench_repeat.py; bench_host: 2.3% run to run)
DEFAULT_NOISE_FLOOR = 0.02


@dataclass(frozen=True)
class LoopSettings:
    """How long to measure. Both minimums hold: at least ``min_iterations`` *and* at least
    ``min_seconds``; ``max_iterations`` and ``max_seconds`` bound a very fast or very slow
    model."""

    warmup_iterations: int = 10
    warmup_seconds: float = 1.0
    min_iterations: int = 100
    min_seconds: float = 10.0
    max_iterations: int = 100_000
    max_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.min_iterations < 1:
            raise ValueError("min_iterations must be at least 1")
        if self.max_iterations < self.min_iterations:
            raise ValueError("max_iterations must be at least min_iterations")
        if min(self.warmup_iterations, self.warmup_seconds, self.min_seconds) < 0:
            raise ValueError("warm-up and minimum durations cannot be negative")


def timed_loop(
    fn: Callable[[], Any],
    settings: LoopSettings,
    clock: Callable[[], float] = time.perf_counter,
    on_sample: Callable[[float], None] | None = None,
) -> tuple[list[float], dict[str, Any]]:
    """Warm up, then call ``fn`` until both minimums hold; returns the raw per-call latencies
    in ms and what the warm-up did. ``on_sample`` sees each sample as it is taken (a worker
    streams them out so that a crash keeps what was measured)."""
    start = clock()
    warm = 0
    while warm < settings.warmup_iterations or clock() - start < settings.warmup_seconds:
        fn()
        warm += 1
        if clock() - start > settings.max_seconds:
            break
    warmup_s = clock() - start

    samples: list[float] = []
    begin = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        ms = (t1 - t0) * 1e3
        samples.append(ms)
        if on_sample is not None:
            on_sample(ms)
        elapsed = t1 - begin
        if len(samples) >= settings.max_iterations or elapsed >= settings.max_seconds:
            break
        if len(samples) >= settings.min_iterations and elapsed >= settings.min_seconds:
            break
    return samples, {
        "warmup_iterations": warm,
        "warmup_seconds": warmup_s,
        "measure_seconds": clock() - begin,
    }
