"""Do verdicts replicate? One artifact measured as independent `vitbench profile` invocations,
with one round and with three, side by side in one run.

Prints, for R = 1 and R = 3 (invocations interleaved, so the machine's drift hits both):
1. the share of p50s inside each of the other invocations' p50 intervals (all ordered pairs;
   target with R = 3: at least 90%), and how many p50s sit inside every other interval;
2. the gate's verdicts for a p90 budget at the pooled p90 x 1.03 and x 0.97: how many pass /
   fail / inconclusive, and the flip rate (pairs of invocations where one says pass and the
   other fail; target with R = 3: none), beside the rate of any two verdicts differing;
3. the wall time of one measurement (one `vitbench profile`, process start to exit) and its
   ratio R = 3 over R = 1;
4. with --plan: the built-in plan's total as it was before rounds (one round of 50 iterations
   and 5 s per cell) and as it is (three rounds of 12 and 1 s), from one warm artifact cache
   (target: at most 1.5x).

    python bench/bench_repeat.py [--model lite] [--runs 10] [--threads 1] [--plan]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from harness.artifact import ExportSpec  # noqa: E402
from harness.export import export_artifact  # noqa: E402
from harness.gate import judge_latency  # noqa: E402
from harness.model import load_model  # noqa: E402
from harness.target import Profile  # noqa: E402


def vitbench(*args: str, env: dict | None = None) -> tuple[str, float]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"vitbench {' '.join(args)} failed: {out.stderr.strip()[-400:]}")
    return out.stdout, wall


def profile(art: str, rounds: int, threads: int) -> tuple[Profile, float]:
    text, wall = vitbench(
        "profile", art, "--threads", str(threads), "--rounds", str(rounds), "--json"
    )
    return Profile.from_dict(json.loads(text)), wall


def metrics(p: Profile) -> dict[str, float]:
    return {name: value for name, value, _ in p.metric_rows()}


def inside_rates(profs: list[Profile]) -> tuple[float, int]:
    """(share of ordered pairs (i, j) with p50_i inside j's interval, p50s inside all)."""
    hits = total = every = 0
    for i, p in enumerate(profs):
        ins = [o.stats.p50_ci[0] <= p.stats.p50 <= o.stats.p50_ci[1] for o in profs if o is not p]
        hits += sum(ins)
        total += len(ins)
        every += all(ins)
        del i
    return hits / total, every


def verdicts(profs: list[Profile], budget: float) -> list[str]:
    return [judge_latency(metrics(p), budget, 90, 30)[0] for p in profs]


def flips(vs: list[str]) -> tuple[float, float]:
    """(pass/fail flip rate, any-difference rate) over pairs of invocations."""
    pairs = list(itertools.combinations(vs, 2))
    flip = sum({a, b} == {"pass", "fail"} for a, b in pairs)
    differ = sum(a != b for a, b in pairs)
    return flip / len(pairs), differ / len(pairs)


# the built-in plan's [measure] before rounds: one process per cell, 50 iterations and 5 s
TODAY_MEASURE = {
    "rounds": 1,
    "warmup_iterations": 5,
    "warmup_seconds": 0.5,
    "min_iterations": 50,
    "min_seconds": 5.0,
}


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def plan_toml(plan: dict) -> str:
    """The built-in plan's dict as TOML (tables, arrays of tables, scalars and lists)."""
    lines = [f"{k} = {_toml(v)}" for k, v in plan.items() if not isinstance(v, (dict, list))]
    for key, value in plan.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                lines += [f"[[{key}]]", *(f"{k} = {_toml(v)}" for k, v in item.items())]
        elif isinstance(value, dict):
            lines += [f"[{key}]", *(f"{k} = {_toml(v)}" for k, v in value.items())]
    return "\n".join(lines) + "\n"


def plan_totals(cache: str) -> tuple[float, float]:
    """Wall time of the built-in plan as it was before rounds and as it is, warm cache."""
    from harness.plan import DEFAULT_PLAN

    env = {**os.environ, "VITBENCH_CACHE": cache}
    with tempfile.TemporaryDirectory(prefix="vitbench-bench-plan-") as tmp:
        store = f"{tmp}/store.sqlite"
        before = Path(tmp) / "before.toml"
        before.write_text(plan_toml({**DEFAULT_PLAN, "measure": TODAY_MEASURE}))
        vitbench("run", "--store", store, "--out", tmp, "--quick", "--quiet", env=env)  # warm
        _, today = vitbench("run", str(before), "--store", store, "--out", tmp, "--quiet", env=env)
        _, now = vitbench("run", "--store", store, "--out", tmp, "--new", "--quiet", env=env)
    return today, now


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="lite")
    ap.add_argument("--runs", type=int, default=10, help="invocations per setting")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plan", action="store_true", help="also time the built-in plan")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="vitbench-bench-repeat-") as tmp:
        art = export_artifact(load_model(args.model), ExportSpec("onnx"), cache=Path(tmp))
        print(f"artifact {args.model} onnx fp32 ({art.sha256[:12]}), {args.threads} thread(s)")
        runs: dict[int, list[Profile]] = {1: [], 3: []}
        walls: dict[int, list[float]] = {1: [], 3: []}
        for _ in range(args.runs):
            for r in (1, 3):
                p, wall = profile(str(art.folder), r, args.threads)
                runs[r].append(p)
                walls[r].append(wall)

        pooled_p90 = float(
            np.percentile(np.concatenate([p.samples_ms for ps in runs.values() for p in ps]), 90)
        )
        print(f"pooled p90 over every invocation: {pooled_p90:.2f} ms")
        ok = True
        for r in (1, 3):
            ps = runs[r]
            rate, every = inside_rates(ps)
            p50s = [p.stats.p50 for p in ps]
            spread = statistics.pstdev(p50s) / statistics.mean(p50s)
            half = statistics.median(
                (p.stats.p50_ci[1] - p.stats.p50_ci[0]) / 2 / p.stats.p50 for p in ps
            )
            between = statistics.median(p.stats.between_round_cv for p in ps)
            within = statistics.median(p.stats.within_round_cv for p in ps)
            target = rate >= 0.90 if r == 3 else None
            ok &= target is not False
            print(
                f"[R={r}] p50s inside the others' intervals: {rate:.0%} of pairs "
                f"({every}/{len(ps)} inside every other){_mark(target, '>= 90%')}; "
                f"invocation-to-invocation sd of p50 {spread:.1%}, interval half-width "
                f"{half:.1%}; between-round CV {between:.1%}, within-round CV {within:.1%}"
            )
            for factor in (1.03, 0.97):
                vs = verdicts(ps, pooled_p90 * factor)
                flip, differ = flips(vs)
                target = flip == 0 if r == 3 else None
                ok &= target is not False
                counts = ", ".join(f"{k} {vs.count(k)}" for k in ("pass", "fail", "inconclusive"))
                print(
                    f"[R={r}] budget = pooled p90 x {factor:.2f}: {counts}; pass/fail flips "
                    f"{flip:.0%} of pairs{_mark(target, 'none')}, any verdict differs {differ:.0%}"
                )
        w1, w3 = statistics.median(walls[1]), statistics.median(walls[3])
        print(
            f"[wall] one measurement (median of {args.runs}): R=1 {w1:.1f} s, R=3 {w3:.1f} s: "
            f"ratio {w3 / w1:.2f}"
        )
        if args.plan:
            t1, t3 = plan_totals(str(Path(tmp) / "cache"))
            target = t3 / t1 <= 1.5
            ok &= target
            print(
                f"[plan] built-in plan, warm cache: before rounds (1 x 50 iterations, 5 s) "
                f"{t1:.1f} s, now (3 x 12, 1 s) {t3:.1f} s: ratio {t3 / t1:.2f}"
                f"{_mark(target, '<= 1.5')}"
            )
    print("PASS" if ok else "MISSED")


def _mark(ok: bool | None, what: str) -> str:
    if ok is None:
        return ""
    return f" (target {what}: {'OK' if ok else 'MISSED'})"


if __name__ == "__main__":
    main()
