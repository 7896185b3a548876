"""Report generation for a nightly history: 30 runs x 20 cells, 200-1000 raw samples per cell,
in a SQLite store. Times what `vitbench report` does for the newest run (cell table, raw
samples, trends and change detection over the 30 runs, Markdown and HTML) against the
issue's 5 s budget and prints the ratio.

    python bench/bench_report.py [--runs 30] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.store import open_store  # noqa: E402
from reports import Report  # noqa: E402
from reports.frame import run_table  # noqa: E402
from reports.stored_run import StoredRun  # noqa: E402
from reports.trends import detect_changes  # noqa: E402
from tests.support.report_data import CELLS, write_nightly  # noqa: E402

BUDGET_S = 5.0


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def fresh(what: str, commands: list[list[str]], repeat: int, env: dict, cwd: Path) -> None:
    """Median wall and CPU time of running ``commands`` one after the other, against the budget."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, cpu0 = time.perf_counter(), _children_cpu()
        for cmd in commands:
            subprocess.run(cmd, check=True, env=env, cwd=cwd, capture_output=True)
        wall.append(time.perf_counter() - start)
        cpu.append(_children_cpu() - cpu0)
    w, c = statistics.median(wall), statistics.median(cpu)
    print(
        f"{what}: {w:.3f} s wall, {c:.3f} s CPU; budget {BUDGET_S:.1f} s; "
        f"ratio time/budget {w / BUDGET_S:.3f} (CPU {c / BUDGET_S:.3f})"
    )


def twenty_cells():
    extra = [replace(c, model="small", p50_ms=c.p50_ms * 0.55) for c in CELLS if not c.fails]
    return CELLS + extra[: 20 - len(CELLS)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cells = twenty_cells()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.db"
        store = open_store(path)
        t0 = time.perf_counter()
        ids = write_nightly(store, runs=args.runs, cells=cells, samples=(200, 1000))
        made = time.perf_counter() - t0
        n_samples = sum(len(v) for v in store.samples([c["id"] for c in store.cells(ids)]).values())
        print(
            f"store: {args.runs} runs x {len(cells)} cells, {n_samples:,} raw samples, "
            f"{path.stat().st_size / 1e6:.1f} MB (written in {made:.1f} s, not timed)"
        )
        store.close()

        parts: dict[str, list[float]] = {
            "open": [],
            "read the run (run, cells, metrics)": [],
            "gate + cell table": [],
            "trends (30 runs; reads the earlier ones)": [],
            "collect (table, samples, trends)": [],
            "markdown": [],
            "html": [],
            "total": [],
        }
        for _ in range(args.repeat):
            start = time.perf_counter()
            store = open_store(path)
            parts["open"].append(time.perf_counter() - start)
            t = time.perf_counter()
            report = Report.collect(store, history_runs=30)
            parts["collect (table, samples, trends)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            md = report.render("md")
            parts["markdown"].append(time.perf_counter() - t)
            t = time.perf_counter()
            html = report.render("html")
            parts["html"].append(time.perf_counter() - t)
            parts["total"].append(time.perf_counter() - start)
            # the pieces of collect, measured on their own for the breakdown
            t = time.perf_counter()
            stored = StoredRun.load(store, ids[-1])
            parts["read the run (run, cells, metrics)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            run_table(stored, stored.gate_result()[0])
            parts["gate + cell table"].append(time.perf_counter() - t)
            t = time.perf_counter()
            history = detect_changes(store, ids[-1], last_n=30, current=stored)
            parts["trends (30 runs; reads the earlier ones)"].append(time.perf_counter() - t)
            store.close()
        print(
            f"report of {ids[-1]}: markdown {len(md) / 1e3:.0f} kB, html {len(html) / 1e3:.0f} kB, "
            f"{len(history.changes)} change(s) found: "
            + ", ".join(f"{c.label} {c.direction} from {c.run_id}" for c in history.changes)
        )
        print(f"{'step':42} {'median s':>9}  (of {args.repeat})")
        for name, values in parts.items():
            print(f"{name:42} {statistics.median(values):9.3f}")
        total = statistics.median(parts["total"])
        print(
            f"report generation in one process (md + html + trends): {total:.3f} s; "
            f"budget {BUDGET_S:.1f} s; ratio time/budget {total / BUDGET_S:.3f}"
        )
        # What a CI job pays: fresh processes, imports included, one per format.
        root = Path(__file__).resolve().parents[1]
        env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        script = (
            "import sys; from harness.store import open_store; from reports import write_reports; "
            "st = open_store(sys.argv[1]); write_reports(st, st.latest_run()['id'], sys.argv[2])"
        )
        fresh(
            "md + html in one fresh process "
            "(what `vitbench run` does at its end, imports included)",
            [[sys.executable, "-c", script, str(path), str(Path(tmp) / "out")]],
            args.repeat,
            env,
            root,
        )
        fresh(
            "`vitbench report --format md` + `--format html` as two fresh processes "
            "(imports included)",
            [
                [
                    sys.executable,
                    "-m",
                    "harness.cli",
                    "report",
                    "--store",
                    str(path),
                    "--format",
                    fmt,
                    "--out",
                    str(Path(tmp) / f"report.{fmt}"),
                ]
                for fmt in ("md", "html")
            ],
            args.repeat,
            env,
            root,
        )
        print(
            f"load average during the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on "
            f"{os.cpu_count()} cores (wall times above include waiting for a core)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
