"""Waiting on what a profiling agent streams, instead of sleeping: the tests run on busy
machines, where "3 s" may be before the first sample or long after."""

from __future__ import annotations

import threading

from targets.agent.client import AgentAnswer


def first_sample(monkeypatch) -> threading.Event:
    """An event set when any agent this process talks to streams its first sample."""
    seen = threading.Event()
    take = AgentAnswer.take

    def spy(self, ev):
        take(self, ev)
        if ev.get("event") == "sample":
            seen.set()

    monkeypatch.setattr(AgentAnswer, "take", spy)
    return seen
