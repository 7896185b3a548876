"""The main job, twice: the first `vitbench run` of a plan exports and measures everything; a
re-run of the same plan on the same commit, with everything cached and done, must take under 5%
of the first run's time. Both runs are whole `vitbench run` processes (start-up included) on a
fresh store and a fresh artifact cache, measured in this one invocation.

    python bench/bench_run.py [PLAN]        # default: the built-in plan
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def vitbench_run(args: list[str], env: dict[str, str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", *args, "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"vitbench run failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return wall, json.loads(out.stdout)


def main() -> None:
    plan = sys.argv[1:2]
    with tempfile.TemporaryDirectory(prefix="vitbench-bench-run-") as tmp:
        # One commit for both runs: the run is identified by plan + commit, and a commit made
        # while the first run measures must not turn the re-run into a new run.
        from harness.environment import git_commit

        env = dict(
            os.environ,
            VITBENCH_CACHE=f"{tmp}/cache",
            PYTHONPATH=str(ROOT),
            VITBENCH_COMMIT=git_commit(),
        )
        args = [*plan, "--store", f"{tmp}/results.db", "--out", f"{tmp}/out"]
        first, s1 = vitbench_run(args, env)
        second, s2 = vitbench_run(args, env)
    print(f"first run : {first:7.1f} s  ({s1['done']} cells done, {s1['failed']} failed)")
    print(
        f"re-run    : {second:7.1f} s  ({s2['skipped']} cells already done, {s2['done']} measured)"
    )
    ratio = second / first
    print(
        f"ratio re-run / first = {ratio:.3f} (target < 0.05) {'OK' if ratio < 0.05 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
