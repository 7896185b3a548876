"""The results store on its two back ends, side by side in one run:

1. writes: samples written per second into SQLite and into PostgreSQL by one and by four
   writer processes, each writing its own cells of one run (as shards do: ``start_cell``
   then ``finish_cell`` with ~100-200 raw samples and 15 metrics). Every trial writes the
   same cells into a fresh store; trials are interleaved over rounds and the median is
   printed, with its ratio to the one-writer SQLite figure;
2. reads: `vitbench report` of the newest of 30 runs x 20 cells (write_nightly's synthetic
   history) from each back end, in this process through click's CliRunner (the command's
   own work, imports already done) and as a fresh `python -m harness.cli report` process
   (what a CI job pays, imports included), with the ratio to SQLite.

PostgreSQL is a private throwaway cluster (tests/support/postgres.PostgresCluster) on
loopback, with the server's default durability (fsync on; --pg-fsync off for a test-like
server). The SQLite store is a WAL file with synchronous=NORMAL, as harness.store opens it.

    python bench/bench_store.py [--cells 160] [--rounds 3] [--runs 30] [--repeat 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from harness.store import CellRecord, open_store  # noqa: E402
from tests.support.postgres import PostgresCluster, create_database  # noqa: E402
from tests.support.report_data import CELLS, metric_rows, samples_for, write_nightly  # noqa: E402

WRITERS = (1, 4)
BACKENDS = ("sqlite", "postgresql")
FORMATS = ("md", "html")
RUN_ID = "bench-writes"
Payload = tuple[list[float], list[tuple[str, float, str]]]


# -- writes --------------------------------------------------------------------------------
def payloads(n: int, samples: tuple[int, int], metrics: int, seed: int = 3) -> list[Payload]:
    """``n`` distinct cell results (raw samples, metric rows) made once, before any timing:
    realistic latencies and the first ``metrics`` of the rows a target reports."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cell = CELLS[i % len(CELLS)]
        level = cell.p50_ms or 50.0
        x = samples_for(cell, level, int(rng.integers(samples[0], samples[1] + 1)), rng)
        rows, _ = metric_rows(cell, x, rng)
        out.append(([float(v) for v in x], rows[:metrics]))
    return out


def record(key: str) -> CellRecord:
    return CellRecord(
        cell_key=key,
        model_name="lite",
        model_hash="mlite",
        export_label="onnx",
        export_spec={"format": "onnx", "precision": "fp32"},
        target="host",
        device_name=f"host-{key}",
        device_chipset="AMD EPYC 7763",
        device_os="Linux 6.1",
    )


def writer(url: str, keys: list[str], data: list[Payload], barrier, results) -> None:
    """One shard: opens the store, waits for the others, writes its cells one by one."""
    try:
        store = open_store(url)
        recs = [record(k) for k in keys]
        barrier.wait(timeout=300)
        written = 0
        for i, rec in enumerate(recs):
            samples, metrics = data[i % len(data)]
            cid = store.start_cell(RUN_ID, rec)
            store.finish_cell(
                cid,
                status="done",
                artifact_sha256="a" * 64,
                runtime="ort",
                compute_unit="cpu",
                samples_ms=samples,
                metrics=metrics,
                details={"environment": {"threads": 4}, "warnings": []},
            )
            written += len(samples)
        store.close()
        results.put(("ok", written))
    except BaseException:
        barrier.abort()
        results.put(("error", traceback.format_exc()))


def write_trial(ctx, url: str, writers: int, cells: int, data: list[Payload]) -> float:
    """Samples per second of ``writers`` processes writing ``cells`` cells of one run into
    the (fresh) store at ``url``: from the moment all of them are ready to the last commit."""
    store = open_store(url)
    store.create_run(RUN_ID, "bench", "planhash", "commit", {}, {}, {}, cells)
    store.close()
    keys = [f"cell-{i:05d}" for i in range(cells)]
    barrier, results = ctx.Barrier(writers + 1), ctx.Queue()
    procs = [
        ctx.Process(target=writer, args=(url, keys[w::writers], data, barrier, results))
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=300)
    except Exception:
        pass  # a writer failed: its traceback is in the queue
    start = time.perf_counter()
    outcomes = [results.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    errors = [text for kind, text in outcomes if kind == "error"]
    if errors:
        sys.exit(f"a writer failed on {backend_of(url)}:\n{errors[0]}")
    check = open_store(url)
    stored = check.cell_status(RUN_ID)
    check.close()
    if len(stored) != cells or set(stored.values()) != {"done"}:
        sys.exit(f"{url}: {len(stored)} cells stored of {cells}")
    return sum(n for _, n in outcomes) / elapsed


def backend_of(url: str) -> str:
    return "postgresql" if url.startswith("postgresql://") else "sqlite"


def fresh_store(backend: str, tmp: Path, server: str, name: str) -> str:
    if backend == "sqlite":
        return str(tmp / f"{name}.db")
    return create_database(server)


def mp_context():
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def bench_writes(args, tmp: Path, server: str) -> None:
    ctx = mp_context()
    data = payloads(16, (args.min_samples, args.max_samples), args.metrics)
    per_trial = sum(len(data[i % len(data)][0]) for i in range(args.cells))
    rates: dict[tuple[str, int], list[float]] = {(b, w): [] for b in BACKENDS for w in WRITERS}
    for r in range(args.rounds):
        for backend in BACKENDS:
            for writers in WRITERS:
                url = fresh_store(backend, tmp, server, f"writes-{r}-{writers}")
                rates[backend, writers].append(write_trial(ctx, url, writers, args.cells, data))
    print(
        f"writes: {args.cells} cells per trial, {args.min_samples}-{args.max_samples} samples "
        f"and {args.metrics} metrics each ({per_trial:,} samples), a fresh store per trial; "
        f"median of {args.rounds} interleaved rounds"
    )
    base = statistics.median(rates["sqlite", 1])
    print(f"{'backend':12} {'writers':>7} {'samples/s':>10} {'(min-max)':>17} {'ratio':>7}")
    for (backend, writers), values in rates.items():
        med = statistics.median(values)
        spread = f"{min(values):,.0f}-{max(values):,.0f}"
        print(f"{backend:12} {writers:7d} {med:10,.0f} {spread:>17} {med / base:7.3f}")
    print("ratio: samples/s over the one-writer SQLite figure (higher is faster)")


# -- reads ---------------------------------------------------------------------------------
def twenty_cells():
    extra = [replace(c, model="small", p50_ms=c.p50_ms * 0.55) for c in CELLS if not c.fails]
    return CELLS + extra[: 20 - len(CELLS)]


def populate(url: str, runs: int) -> tuple[int, float]:
    """The nightly history in the store at ``url``: (raw samples written, seconds taken)."""
    store = open_store(url)
    start = time.perf_counter()
    ids = write_nightly(store, runs=runs, cells=twenty_cells(), samples=(200, 1000))
    took = time.perf_counter() - start
    n = sum(len(v) for v in store.samples([c["id"] for c in store.cells(ids)]).values())
    store.close()
    return n, took


def report_in_process(url: str, fmt: str, out: Path) -> float:
    from click.testing import CliRunner

    from harness.cli import main as cli

    start = time.perf_counter()
    result = CliRunner().invoke(
        cli, ["report", "--store", url, "--format", fmt, "--out", str(out)], catch_exceptions=True
    )
    took = time.perf_counter() - start
    if result.exit_code != 0:
        sys.exit(f"vitbench report failed on {backend_of(url)}: {result.output}")
    return took


def report_fresh(url: str, fmt: str, out: Path, env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "harness.cli", "report", "--store", url, "--format", fmt]
    start = time.perf_counter()
    done = subprocess.run([*cmd, "--out", str(out)], env=env, cwd=ROOT, capture_output=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"vitbench report failed on {backend_of(url)}: {done.stderr.decode()[-2000:]}")
    return took


def bench_reports(args, tmp: Path, server: str) -> None:
    urls = {b: fresh_store(b, tmp, server, "reports") for b in BACKENDS}
    with mp_context().Pool(len(urls)) as pool:  # both at once: generating the data is most of it
        made = pool.starmap(populate, [(url, args.runs) for url in urls.values()])
    for backend, (n, took) in zip(urls, made, strict=True):
        print(
            f"{backend} report store: {args.runs} runs x 20 cells, {n:,} raw samples "
            f"(written in {took:.1f} s, both stores at once, not timed)"
        )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    times: dict[tuple[str, str, str], list[float]] = {}
    for url in urls.values():  # warm-up: imports, plugin discovery, first connection
        report_in_process(url, "md", tmp / "warm.md")
    for _ in range(args.repeat):
        for fmt in FORMATS:
            for backend, url in urls.items():
                out = tmp / f"report-{backend}.{fmt}"
                times.setdefault((backend, fmt, "in"), []).append(report_in_process(url, fmt, out))
                times.setdefault((backend, fmt, "fresh"), []).append(
                    report_fresh(url, fmt, out, env)
                )
    print(
        f"`vitbench report` of the newest run (trends over {args.runs}), median s of "
        f"{args.repeat}: in this process (CliRunner, imports done) and as a fresh process "
        "(imports included)"
    )
    print(
        f"{'backend':12} {'format':6} {'in-process s':>12} {'ratio':>7} {'fresh s':>8} {'ratio':>7}"
    )
    for fmt in FORMATS:
        base_in = statistics.median(times["sqlite", fmt, "in"])
        base_fresh = statistics.median(times["sqlite", fmt, "fresh"])
        for backend in BACKENDS:
            t_in = statistics.median(times[backend, fmt, "in"])
            t_fresh = statistics.median(times[backend, fmt, "fresh"])
            print(
                f"{backend:12} {fmt:6} {t_in:12.3f} {t_in / base_in:7.3f} {t_fresh:8.3f} "
                f"{t_fresh / base_fresh:7.3f}"
            )
    print("ratio: seconds over SQLite's for the same format (lower is faster)")
    for fmt in FORMATS:
        texts = [(tmp / f"report-{b}.{fmt}").read_bytes() for b in BACKENDS]
        same = "identical" if len(set(texts)) == 1 else "DIFFERENT"
        print(f"{fmt} report: {len(texts[0]) / 1e3:.1f} kB, {same} from the two back ends")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=160, help="cells written per write trial")
    ap.add_argument("--min-samples", type=int, default=100)
    ap.add_argument("--max-samples", type=int, default=200)
    ap.add_argument("--metrics", type=int, default=15, help="metric rows per cell (at most 30)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of write trials")
    ap.add_argument("--runs", type=int, default=30, help="runs in the report store")
    ap.add_argument("--repeat", type=int, default=3, help="timings of each report")
    ap.add_argument("--pg-fsync", choices=("on", "off"), default="on")
    ap.add_argument("--skip-reports", action="store_true", help="writes only")
    args = ap.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vitbench-bench-store-") as name:
        tmp = Path(name)
        os.environ.setdefault("VITBENCH_LOG", str(tmp / "vitbench.log"))
        settings = {} if args.pg_fsync == "on" else {"fsync": "off"}
        with PostgresCluster(settings=settings) as pg:
            print(
                f"PostgreSQL: private cluster on 127.0.0.1:{pg.port} (fsync {args.pg_fsync}); "
                "SQLite: WAL, synchronous=NORMAL; both on one disk"
            )
            bench_writes(args, tmp, pg.url)
            if not args.skip_reports:
                bench_reports(args, tmp, pg.url)
    print(
        f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on "
        f"{os.cpu_count()} cores (wall times include waiting for a core); "
        f"this bench took {time.perf_counter() - began:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
