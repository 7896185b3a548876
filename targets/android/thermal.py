"""Heat, which biases every number a phone gives: the bounded wait for a cool phone before a
measurement, and the judgement of when sustained rounds start to throttle."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from targets.android.device import PhoneState
from targets.android.options import AndroidOptions
from targets.android.phone import Phone


@dataclass(frozen=True)
class ThermalWait:
    """How the wait for a cool phone went: the state it ended with and every poll."""

    state: PhoneState
    waited_s: float
    cooled: bool
    polls: tuple[dict[str, Any], ...]
    max_battery_c: float
    enabled: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "waited_s": self.waited_s,
            "cooled": self.cooled,
            "polls": list(self.polls),
            "max_battery_c": self.max_battery_c,
            "enabled": self.enabled,
        }

    def warning(self) -> str:
        """What to say beside the numbers when the phone did not cool ("" when it did)."""
        if self.cooled:
            return ""
        return (
            f"phone still hot after waiting {self.waited_s:.0f} s "
            f"({self.state.describe()}): numbers may be throttled"
        )


def wait_cool(phone: Phone, opts: AndroidOptions) -> ThermalWait:
    """Poll the phone every ``opts.poll_s`` until its thermal status is NONE and the battery
    is below ``opts.max_battery_c``, or until ``opts.max_wait_s`` have passed, with a last
    poll then (no wait without ``wait_cool``)."""
    start = time.monotonic()
    deadline = start + max(opts.max_wait_s, 0.0)
    polls: list[dict[str, Any]] = []
    while True:
        state = phone.state()
        now = time.monotonic()
        t = now - start
        polls.append(
            {
                "t_s": round(t, 3),
                "thermal_status": state.thermal_status,
                "battery_c": state.battery_c,
            }
        )
        cooled = state.is_cool(opts.max_battery_c)
        if cooled or not opts.wait_cool or now >= deadline:
            return ThermalWait(
                state, round(t, 3), cooled, tuple(polls), opts.max_battery_c, opts.wait_cool
            )
        time.sleep(min(max(opts.poll_s, 0.0), deadline - now))


def sustained_round(
    before: Sequence[dict[str, Any]],
    start_ms: float,
    measured: list[float],
    state: PhoneState,
    throttle_ratio: float,
    baseline: PhoneState | None = None,
) -> dict[str, Any]:
    """The record of one sustained round after the rounds ``before`` it: throttled when the
    thermal status rose above the baseline's (the state before round 1; where that is
    unknown, the first round's), or the median rose ``throttle_ratio`` above round 1's."""
    p50 = float(np.median(measured))
    base_p50 = before[0]["p50_ms"] if before else p50
    statuses = [
        baseline.thermal_status if baseline else None,
        *(r["thermal_status"] for r in before),
        state.thermal_status,
    ]
    base_status = next((s for s in statuses if s is not None), None)
    why = []
    if (state.thermal_status or 0) > (base_status or 0):
        why.append(f"thermal {state.thermal_name}")
    if p50 > base_p50 * throttle_ratio:
        why.append(f"p50 {p50 / base_p50 - 1:+.0%} over round 1")
    return {
        "round": len(before) + 1,
        "start_s": round(start_ms / 1e3, 3),
        "executions": len(measured),
        "p50_ms": p50,
        "thermal_status": state.thermal_status,
        "battery_c": state.battery_c,
        "cpu_khz": {c.cpu: c.cur_khz for c in state.cpus},
        "throttled": bool(why),
        "why": ", ".join(why),
    }


def throttle_onset(rounds: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The first throttled round, if any."""
    return next((r for r in rounds if r["throttled"]), None)
