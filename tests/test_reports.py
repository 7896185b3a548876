"""Reports, runs, compare and nightly change detection on realistic synthetic runs, on SQLite
and on a real PostgreSQL server; the HTML page rendered in headless Chromium."""

from __future__ import annotations

import io
import json
import sqlite3
import uuid

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from harness.cli import main
from harness.store import open_store
from reports import Report, render_report
from reports.frame import RUN_FRAME_COLUMNS, history_frame, run_frame, runs_frame
from reports.trends import change_points, compare_runs, compare_samples, detect_changes
from tests.support.browser import console_messages, render_page
from tests.support.postgres import postgres_server  # noqa: F401 - fixture
from tests.support.report_data import (
    CELLS,
    FAILING_CELL,
    NOISY_CELL,
    SLOW_CELL,
    SLOW_FROM,
    SLOWDOWN,
    write_nightly,
)


@pytest.fixture(scope="module")
def sqlite_nightly(tmp_path_factory):
    path = tmp_path_factory.mktemp("nightly") / "results.db"
    store = open_store(path)
    return store, write_nightly(store), str(path)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def nightly(request, sqlite_nightly):
    """12 nightly runs of 12 cells: the slowdown from run 7, a noisy cell, a failing cell."""
    if request.param == "sqlite":
        yield sqlite_nightly
        return
    import psycopg

    server = request.getfixturevalue("postgres_server")
    name = "vitbench_reports_" + uuid.uuid4().hex[:8]
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{server}/{name}"
    store = open_store(url)
    yield store, write_nightly(store), url
    store.close()
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(*args, env=None):
    return CliRunner().invoke(
        main, list(args), env=env or {"VITBENCH_STORE": ""}, catch_exceptions=False
    )


# -- the statistics --------------------------------------------------------------------------


def test_compare_samples_needs_significance_and_a_practical_size():
    rng = np.random.default_rng(1)
    base = rng.lognormal(np.log(50), 0.05, 4000)
    same = rng.lognormal(np.log(50), 0.05, 4000)
    assert compare_samples(base, same).verdict == "no change"
    tiny_shift = compare_samples(base, rng.lognormal(np.log(50 * 1.015), 0.05, 4000))
    assert tiny_shift.p_value < 1e-6 and tiny_shift.ratio_ci[0] > 1  # significant ...
    assert tiny_shift.verdict == "no change"  # ... but 1.5% is not a practical change
    slower = compare_samples(base[:400], rng.lognormal(np.log(55), 0.05, 400))
    assert (
        slower.verdict == "slower"
        and slower.ratio_ci[0] > 1.05
        and slower.ratio_ci[0] < 1.1 < slower.ratio_ci[1]
    )
    faster = compare_samples(base[:400], rng.lognormal(np.log(40), 0.05, 400))
    assert faster.verdict == "faster" and faster.ratio_ci[1] < 1
    noisy = compare_samples(rng.lognormal(np.log(50), 0.6, 30), rng.lognormal(np.log(56), 0.6, 30))
    assert (
        noisy.verdict == "no change"
    )  # 12% in the medians, but not significant in 30 noisy samples
    assert compare_samples([1.0, 2.0], [3.0, 4.0, 5.0]).verdict == "too few samples"


def test_bootstrap_interval_is_reproducible():
    rng = np.random.default_rng(2)
    a, b = rng.normal(10, 1, 300), rng.normal(11, 1, 300)
    assert compare_samples(a, b).ratio_ci == compare_samples(a, b).ratio_ci
    assert compare_samples(a, b, seed=1).ratio_ci != compare_samples(a, b, seed=2).ratio_ci


def test_change_points_find_steps_and_ignore_noise():
    rng = np.random.default_rng(3)
    flat = np.log(100) + rng.normal(0, 0.02, 20)
    assert change_points(flat) == []
    step = flat.copy()
    step[8:] += np.log(1.3)
    assert change_points(step) == [8]
    two = step.copy()
    two[15:] -= np.log(1.6)
    assert change_points(two) == [8, 15]
    assert change_points([1.0, 1.0, 2.0]) == []  # too short for two segments of two


# -- history on stored runs (both back ends) ---------------------------------------------------


def test_detects_the_slowdown_at_run_7_and_nothing_else(nightly):
    store, ids, _ = nightly
    history = detect_changes(store, ids[-1])
    assert history.run_ids == ids
    assert [(c.cell_key, c.run_id, c.direction) for c in history.changes] == [
        (SLOW_CELL.key, ids[SLOW_FROM - 1], "slower")
    ]
    change = history.changes[0]
    assert change.source == "change point"
    lo, hi = change.comparison.ratio_ci
    assert lo < SLOWDOWN * 1.02 and hi > SLOWDOWN * 0.98 and change.comparison.p_value < 1e-6
    trends = {t.cell_key: t for t in history.trends}
    noisy = trends[NOISY_CELL.key]
    assert noisy.changes == []
    assert noisy.noise == max(t.noise for t in history.trends) and 3 * noisy.noise > 0.1
    # nights are the unit of the tests, so the noise is in the tests themselves: no size
    # threshold scaled by the noise is needed to keep the noisy cell quiet (tests/test_trends.py
    # shows the pooled raw samples that did need one)
    fixed = detect_changes(store, ids[-1], noise_multiple=0.0)
    assert {c.cell_key for c in fixed.changes} == {SLOW_CELL.key}
    assert FAILING_CELL.key not in trends  # a cell that never finished has no trend
    assert history.latest_changes() == []


def test_the_run_that_slowed_down_reports_it_as_its_own_change(nightly):
    store, ids, _ = nightly
    history = detect_changes(store, ids[SLOW_FROM - 1])  # later runs are not seen
    assert history.run_ids == ids[:SLOW_FROM]
    assert [(c.cell_key, c.run_id, c.source, c.direction) for c in history.changes] == [
        (SLOW_CELL.key, ids[SLOW_FROM - 1], "latest run", "slower")
    ]
    assert history.latest_changes() == history.changes
    assert detect_changes(store, ids[SLOW_FROM - 2]).changes == []  # the night before: nothing yet


def test_compare_two_runs(nightly):
    store, ids, _ = nightly
    frame = compare_runs(store, ids[SLOW_FROM - 2], ids[SLOW_FROM - 1])
    verdicts = dict(zip(frame["cell_key"], frame["verdict"], strict=True))
    assert verdicts.pop(SLOW_CELL.key) == "slower"
    assert verdicts.pop(FAILING_CELL.key) == "not compared"
    assert set(verdicts.values()) == {"no change"} and len(verdicts) == len(CELLS) - 2
    back = compare_runs(store, ids[SLOW_FROM - 1], ids[SLOW_FROM - 2]).set_index("cell_key")
    assert (
        back.loc[SLOW_CELL.key, "verdict"] == "faster"
        and back.loc[SLOW_CELL.key, "ratio_ci_high"] < 1
    )


def test_run_frame_has_one_row_per_cell_with_numbers_from_the_store(nightly):
    store, ids, _ = nightly
    frame = run_frame(store, ids[-1])
    assert list(frame.columns) == RUN_FRAME_COLUMNS and len(frame) == len(CELLS)
    assert frame["cell_key"].is_unique
    failed = frame.set_index("cell_key").loc[FAILING_CELL.key]
    assert (
        failed["status"] == "failed"
        and failed["failure_kind"] == "model"
        and "softmax" in failed["failure_reason"]
    )
    assert np.isnan(failed["p50_ms"]) and failed["verdict"] == "error"
    done = frame[frame["status"] == "done"]
    row = done.iloc[0]
    samples = store.samples([int(row["cell_id"])])[int(row["cell_id"])]
    assert row["p50_ms"] == pytest.approx(np.percentile(samples, 50))
    assert row["p90_ci_low_ms"] <= row["p90_ms"] <= row["p90_ci_high_ms"]
    assert row["iterations"] == len(samples)
    assert (done["accuracy_retention"] == done["accuracy"] / done["accuracy_reference"]).all()
    assert (
        done[["load_cold_ms", "load_warm_ms", "first_inference_ms", "peak_memory_mb"]]
        .notna()
        .all()
        .all()
    )
    mac = done.set_index("cell_key").loc[CELLS[6].key]
    assert (mac["compute_unit"], mac["share_npu"]) == ("ane", pytest.approx(0.81))
    # the gate judged every cell; the Xiaomi fp32 cell's p90 (~226 ms) is over the 200 ms budget
    run_verdict = Report.collect(store, ids[-1], history_runs=0, samples=False).verdict
    assert run_verdict == "fail" and set(frame["verdict"]) <= {
        "pass",
        "fail",
        "inconclusive",
        "error",
    }
    assert frame.attrs == {}  # the verdict is a field of the results, nothing rides on the frame
    assert set(done["parity_status"]) == {"passed"}  # as judged and stored when measured
    assert frame.set_index("cell_key").loc[CELLS[4].key, "verdict"] == "fail"


def test_history_frame_and_runs(nightly):
    store, ids, _ = nightly
    hist = history_frame(store, "nightly", last_n=5)
    assert list(dict.fromkeys(hist["run_id"])) == ids[-5:] and hist["run_index"].max() == 4
    assert (hist["status"] == "done").all() and len(hist) == 5 * (len(CELLS) - 1)
    runs = runs_frame(store)
    assert list(runs["id"]) == ids[::-1]
    assert runs.iloc[0][["cells_done", "cells_failed", "cells_total"]].tolist() == [
        len(CELLS) - 1,
        1,
        len(CELLS),
    ]
    assert runs_frame(store, plan_name="other").empty


def test_markdown_report(nightly):
    store, ids, _ = nightly
    text = render_report(store, ids[SLOW_FROM - 1], "md")
    lines = text.splitlines()
    assert lines[0] == f"## vitbench report: run `{ids[SLOW_FROM - 1]}`"
    header = next(
        i for i, ln in enumerate(lines) if ln.startswith("| model | format | device | p50 ms")
    )
    rows = [ln for ln in lines[header + 2 :] if ln.startswith("| ")]
    rows = rows[: len(CELLS)]
    assert len(rows) == len(CELLS) and all(r.count(" | ") == 14 for r in rows)
    slow = next(r for r in rows if "executorch/qnn/int8" in r and "lite" in r)
    frame = run_frame(store, ids[SLOW_FROM - 1]).set_index("cell_key").loc[SLOW_CELL.key]
    assert (
        f"| {frame['p50_ms']:,.1f} | {frame['p90_ms']:,.1f} ({frame['p90_ci_low_ms']:,.1f}–" in slow
    )
    assert "npu (NPU 94%, CPU 6%)" in slow and "auc" in slow and "✅ pass" in slow
    failed = text.split("### Failed cells")[1]
    assert (
        "lite · executorch/neuropilot/int8 · android:Xiaomi 14T Pro" in failed
        and "softmax" in failed
    )
    assert (
        "In this run:" in text
        and "🔺 slower **lite · executorch/qnn/int8 · aihub:Samsung Galaxy S24 (Family)**" in text
    )
    assert "Not passing the gate" in text and "over the 200 ms budget" in text


def test_csv_and_json_reports(nightly):
    store, ids, _ = nightly
    frame = run_frame(store, ids[-1])
    csv = pd.read_csv(io.StringIO(render_report(store, ids[-1], "csv")))
    assert list(csv.columns) == RUN_FRAME_COLUMNS and len(csv) == len(CELLS)
    assert np.allclose(csv["p90_ms"].dropna(), frame["p90_ms"].dropna())
    doc = json.loads(render_report(store, ids[-1], "json"))
    assert (
        doc["run"]["id"] == ids[-1]
        and doc["run"]["plan_name"] == "nightly"
        and doc["gate"]["verdict"] == "fail"
    )
    cells = {c["cell_key"]: c for c in doc["cells"]}
    assert (
        cells[FAILING_CELL.key]["p50_ms"] is None and cells[FAILING_CELL.key]["status"] == "failed"
    )
    assert cells[SLOW_CELL.key]["p50_ms"] == pytest.approx(
        frame.set_index("cell_key").loc[SLOW_CELL.key, "p50_ms"]
    )
    assert [(c["cell_key"], c["run_id"]) for c in doc["history"]["changes"]] == [
        (SLOW_CELL.key, ids[SLOW_FROM - 1])
    ]


# -- command line ----------------------------------------------------------------------------


def test_cli_runs_report_compare(nightly, tmp_path):
    store, ids, url = nightly
    res = cli("runs", "--store", url, "--json")
    assert res.exit_code == 0 and [r["id"] for r in json.loads(res.stdout)] == ids[::-1]
    res = cli("runs", "--store", url, "--plan", "nightly", "--limit", "2")
    assert (
        res.exit_code == 0
        and ids[-1] in res.stdout
        and ids[-3] not in res.stdout
        and "done" in res.stdout
    )
    res = cli("report", "--store", url)  # the latest run, Markdown on stdout
    assert res.exit_code == 0 and res.stdout.startswith(f"## vitbench report: run `{ids[-1]}`")
    out = tmp_path / "r.html"
    res = cli("report", ids[3], "--store", url, "--format", "html", "--out", str(out))
    assert (
        res.exit_code == 0
        and out.read_text().startswith("<!DOCTYPE html>")
        and ids[3] in out.read_text()
    )
    res = cli("compare", ids[5], ids[6], "--store", url, "--json")
    assert res.exit_code == 0
    got = {c["cell_key"]: c["verdict"] for c in json.loads(res.stdout)["cells"]}
    assert got[SLOW_CELL.key] == "slower" and got[NOISY_CELL.key] == "no change"
    res = cli("compare", ids[5], ids[6], "--store", url)
    assert res.exit_code == 0 and "1 slower, 0 faster, 10 no change" in res.stdout


def one_line_error(res, *fragments):
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vitbench: error: "), res.stderr
    for f in fragments:
        assert f in lines[0]


def test_cli_bad_input_is_one_line(sqlite_nightly, tmp_path):
    _, _, path = sqlite_nightly
    one_line_error(
        cli("report", "--store", path, "--format", "pdf"), "unknown report format 'pdf'", "md, html"
    )
    one_line_error(cli("report", "no-such-run", "--store", path), "no run 'no-such-run'")
    one_line_error(cli("compare", "nightly-001", "nope", "--store", path), "no run 'nope'")
    one_line_error(cli("runs", "--store", str(tmp_path / "missing.db")), "no results store at")
    assert not (tmp_path / "missing.db").exists()  # reading never creates a store
    res = cli("runs", "--store", "postgresql://bench:s3cret@127.0.0.1:9/results")
    one_line_error(res, "cannot reach store")
    assert "s3cret" not in res.stderr
    newer = tmp_path / "newer.db"
    open_store(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE vitbench_schema SET version = 99")
    one_line_error(cli("report", "--store", str(newer)), "schema version 99")
    one_line_error(
        cli("report", "--store", path, "--format", "md", "--out", str(tmp_path / "no" / "r.md")),
        "does not exist",
    )
    empty = tmp_path / "empty.db"
    open_store(empty).close()
    one_line_error(cli("report", "--store", str(empty)), "no runs in")


def test_report_default_store_comes_from_the_environment(sqlite_nightly):
    _, ids, path = sqlite_nightly
    res = cli("report", "--format", "csv", env={"VITBENCH_STORE": path})
    assert res.exit_code == 0 and len(pd.read_csv(io.StringIO(res.stdout))) == len(CELLS)


# -- the HTML page -----------------------------------------------------------------------------


def test_html_is_self_contained_and_has_every_plot(sqlite_nightly):
    store, ids, _ = sqlite_nightly
    html = Report.collect(store, ids[-1]).render("html")
    assert (
        "http" not in html and "src=" not in html and "href=" not in html and "@import" not in html
    )
    assert html.count("<svg") >= 4 + 4 + 1 + (
        len(CELLS) - 1
    )  # boxes and Pareto per device, shares, trends
    for heading in (
        "Latency distributions per device",
        "Latency vs accuracy",
        "Compute units",
        "History",
    ):
        assert f"<h2>{heading}</h2>" in html
    assert html.count('class="mark change"') == 1  # the one change, marked on its trend
    assert "Latency on aihub: Samsung Galaxy S24 (Family)" in html


def test_console_detector_catches_page_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><p>x</p><script>console.error('oops');"
        "document.body.dataset.ready = 'yes'; notDefined();</script></body></html>"
    )
    run = render_page(bad, tmp_path, size="400,300")
    assert any("Uncaught ReferenceError: notDefined is not defined" in m for m in run.console)
    assert any("oops" in m for m in run.console)
    good = tmp_path / "good.html"
    good.write_text("<!DOCTYPE html><html><body><p>fine</p></body></html>")
    assert render_page(good, tmp_path, size="400,300").console == []
    assert console_messages("[1:2:ERROR:dbus/bus.cc:405] Failed to connect to the bus") == []


def test_html_renders_in_headless_chromium(sqlite_nightly, tmp_path):
    store, ids, _ = sqlite_nightly
    page = tmp_path / "report.html"
    page.write_text(Report.collect(store, ids[-1]).render("html"), encoding="utf-8")
    run = render_page(page, tmp_path, size="1400,2000")
    assert run.console == [], run.console
    assert 'data-ready="yes"' in run.dom  # the page script ran to its end
    img = Image.open(run.screenshot).convert("RGB")
    assert img.size == (1400, 2000)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, tables and plots, not a blank page


def test_write_reports_leaves_markdown_and_html(sqlite_nightly, tmp_path):
    from reports import write_reports

    store, ids, _ = sqlite_nightly
    paths = write_reports(store, ids[2], tmp_path / "out")
    assert [p.name for p in paths] == [f"{ids[2]}.md", f"{ids[2]}.html"]
    assert paths[0].read_text().startswith(f"## vitbench report: run `{ids[2]}`")
    assert "<h2>History</h2>" in paths[1].read_text()


def test_reports_of_a_first_run_with_nothing_measured(tmp_path):
    store = open_store(tmp_path / "one.db")
    ids = write_nightly(store, runs=1, cells=[FAILING_CELL])
    store.create_run("empty", "nightly", "h", "c", {}, {}, {}, 3)  # started, nothing finished yet
    for run_id in (ids[0], "empty"):
        report = Report.collect(store, run_id)
        assert report.history is None  # one finished run: no trend yet
        md = report.render("md")
        html = report.render("html")
        doc = json.loads(report.render("json"))
        assert doc["history"] is None and "No raw samples in this run" in html
        assert "No cell has both a latency and an accuracy" in html
    assert "0 of 1 cells done, 1 failed" in render_report(store, ids[0], "md")
    assert "0 of 3 cells done, 0 failed, 3 not finished" in md and doc["cells"] == []


class CountingStore:
    """A store that records every call a report makes on it."""

    def __init__(self, store):
        self._store, self.calls = store, []

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.calls.append((name, args))
            return attr(*args, **kwargs)

        return call


def test_a_report_reads_its_run_once(sqlite_nightly):
    store, ids, _ = sqlite_nightly
    counting = CountingStore(store)
    report = Report.collect(counting, ids[-1])
    # the run (run, cells, metrics, raw samples), then only what the history still lacks: the
    # plan's runs and the earlier runs' cells and metrics (the change tests are on nights:
    # their medians, no raw sample)
    assert [name for name, _ in counting.calls] == [
        "run",
        "cells",
        "metrics",
        "samples",
        "runs",
        "cells",
        "metrics",
    ]
    runs_read = [r for name, args in counting.calls if name == "cells" for r in args[0]]
    assert sorted(runs_read) == ids  # every run of the window once
    for what in ("metrics", "samples"):
        cell_ids = [c for name, args in counting.calls if name == what for c in args[0]]
        assert len(cell_ids) == len(set(cell_ids)), what
    assert report.verdict == "fail" and report.gate.run_id == ids[-1] and report.history is not None
    assert report.cells.attrs == {}
    latest = CountingStore(store)
    assert Report.collect(latest, history_runs=0, samples=False).run_id == ids[-1]
    assert [name for name, _ in latest.calls] == ["latest_run", "cells", "metrics"]


def test_reports_show_the_parity_judged_when_the_cell_was_measured(tmp_path):
    from harness.parity import ParityResult
    from harness.store import CellRecord
    from harness.target import Device, Profile

    store = open_store(tmp_path / "parity.db")
    store.create_run("r", "p", "h", "c", {}, {}, {"name": "p", "budgets": {"latency_ms": 200.0}}, 2)
    x = list(np.random.default_rng(0).normal(50, 1, 300))
    # judged on the phone: its outputs had the wrong shape, so it failed whatever its numbers
    # would say if judged again (cosine 1.0 is within any tolerance)
    judged = ParityResult(
        status="failed",
        precision="fp16",
        where="android:Pixel 8",
        max_abs=0.0,
        cosine=1.0,
        top1=1.0,
        n=8,
        failures=("output shape (8, 5) does not match the reference (8, 4)",),
    )
    for key, device, parity in (("k1", "Pixel 8", judged), ("k2", "old", None)):
        cid = store.start_cell(
            "r", CellRecord(key, "lite", "m", "onnx", {"precision": "fp16"}, "android", device)
        )
        prof = Profile.from_samples("android", Device("android", device), "a" * 64, "ort", x)
        rows = prof.metric_rows() + [
            ("parity_max_abs", 0.0, "abs"),
            ("parity_cosine", 1.0, "cosine"),
            ("parity_top1", 1.0, "fraction"),
        ]
        # the second cell is from a store before judgements were kept: its numbers are judged
        # by harness.parity for its precision
        store.finish_cell(
            cid,
            status="done",
            samples_ms=x,
            metrics=rows,
            details={"parity": parity.to_dict()} if parity else {},
        )
    report = Report.collect(store, "r")
    cells = report.cells.set_index("device")
    assert (
        cells.loc["Pixel 8", "parity_status"] == "failed"
        and "output shape" in cells.loc["Pixel 8", "parity_failures"]
    )
    assert (
        cells.loc["old", "parity_status"] == "passed" and cells.loc["old", "parity_failures"] == ""
    )
    assert cells.loc["Pixel 8", "verdict"] == "fail" and cells.loc["old", "verdict"] == "pass"
    md = report.render("md")
    row = next(ln for ln in md.splitlines() if ln.startswith("| lite | onnx | android: Pixel 8 |"))
    shape = "output shape (8, 5) does not match the reference (8, 4)"
    assert f"cos 1.00000, top-1 100.0% (failed: {shape})" in row
    old = next(ln for ln in md.splitlines() if ln.startswith("| lite | onnx | android: old |"))
    assert "cos 1.00000, top-1 100.0% (passed)" in old
    assert "(failed: output shape (8, 5)" in report.render("html")


def test_markdown_keeps_its_table_when_a_reason_has_pipes_and_newlines(tmp_path):
    from harness.store import CellRecord

    store = open_store(tmp_path / "p.db")
    store.create_run("r", "p", "h", "c", {}, {}, {}, 1)
    cid = store.start_cell("r", CellRecord("k", "lite", "m", "onnx", {}, "host", "host"))
    store.finish_cell(
        cid,
        status="failed",
        failure_kind="infrastructure",
        failure_reason="adb | shell\nexited 137",
    )
    text = render_report(store, "r", "md")
    row = next(ln for ln in text.splitlines() if ln.startswith("| lite |"))
    assert row.count(" | ") == 14 and "\\|" not in row
    assert (
        "- **lite · onnx · host:host** — infrastructure: adb \\| shell exited 137 (attempts: 1)"
        in text
    )


def test_plot_helpers():
    from reports.svg import Point, Scale, nice_ticks, pareto_front

    assert nice_ticks(0, 1, 6) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert len(Scale(4.13, 4.27, 0, 100).ticks(4)) >= 3  # narrow ranges still get a scale
    assert Scale(1, 1000, 0, 300, log=True)(10) == pytest.approx(100)
    pts = [
        Point(10, 0.80, "a"),
        Point(20, 0.85, "b"),
        Point(15, 0.79, "dominated"),
        Point(50, 0.85, "slower, same"),
        Point(60, 0.86, "c"),
    ]
    assert [p.label for p in pareto_front(pts)] == ["a", "b", "c"]


def test_html_table_sorts_when_a_header_is_clicked(sqlite_nightly, tmp_path):
    store, ids, _ = sqlite_nightly
    html = Report.collect(store, ids[-1], history_runs=0).render("html")
    # click "p50 ms" (5th column) twice and record the order each click gave
    probe = (
        "<script>var th = document.querySelector('#cells thead th:nth-child(5)');"
        "function order() { return Array.prototype.map.call("
        "document.querySelectorAll('#cells tbody tr'),"
        " function (r) { return r.cells[4].getAttribute('data-sort'); }).join(';'); }"
        "th.click(); document.body.setAttribute('data-asc', order());"
        "th.click(); document.body.setAttribute('data-desc', order());</script></body>"
    )
    page = tmp_path / "sort.html"
    page.write_text(html.replace("</body>", probe), encoding="utf-8")
    run = render_page(page, tmp_path, screenshot=False)
    assert run.console == [], run.console

    def order(attr):
        raw = run.dom.split(f'data-{attr}="')[1].split('"')[0].split(";")
        return [float(v) if v else None for v in raw]

    asc, desc = order("asc"), order("desc")
    numbers = sorted(v for v in asc if v is not None)
    assert asc == numbers + [None]  # ascending, the failed cell (no number) last
    assert desc == numbers[::-1] + [None]
