"""Gate verdicts on stored results made to pass, fail and be inconclusive."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.gate import judge_run, samples_to_decide
from harness.plan import BudgetSettings, DeviceBudget
from harness.store import CellRecord, open_store
from harness.target import Device, Profile


def _store(tmp_path, cells, plan=None, total=None):
    """cells: list of (device, samples, extra_metrics, status)."""
    st = open_store(tmp_path / "r.db")
    plan = plan or {"name": "p", "budgets": {"latency_ms": 200.0, "percentile": 90}}
    st.create_run("run1", "p", "h", "c", {}, {}, plan, total if total is not None else len(cells))
    for i, (device, samples, extra, status) in enumerate(cells):
        cid = st.start_cell(
            "run1", CellRecord(f"k{i}", "lite", "m", "onnx", {"precision": "fp32"}, "host", device)
        )
        if status == "failed":
            st.finish_cell(
                cid,
                status="failed",
                failure_kind="infrastructure",
                failure_reason="phone unplugged",
                samples_ms=list(samples),
            )
            continue
        prof = Profile.from_samples("host", Device("host", device), "a" * 64, "ort", list(samples))
        st.finish_cell(
            cid, status="done", samples_ms=prof.samples_ms, metrics=prof.metric_rows() + list(extra)
        )
    return st


rng = np.random.default_rng(0)
FAST = rng.normal(120, 5, 300)  # p90 ~126 ms, far under 200
SLOW = rng.normal(260, 5, 300)  # far over
EDGE = np.random.default_rng(1).normal(192, 10, 40)  # p90 ~201 ms, 95% CI ~198-212: straddles 200


def test_pass(tmp_path):
    res = judge_run(_store(tmp_path, [("a", FAST, [], "done"), ("b", FAST, [], "done")]), "run1")
    assert (
        res.verdict == "pass" and res.exit_code == 0 and all(c.verdict == "pass" for c in res.cells)
    )


def test_fail_names_the_cell_and_why(tmp_path):
    res = judge_run(_store(tmp_path, [("a", FAST, [], "done"), ("b", SLOW, [], "done")]), "run1")
    assert res.verdict == "fail" and res.exit_code == 1
    bad = [c for c in res.cells if c.verdict == "fail"]
    assert (
        len(bad) == 1 and "host:b" in bad[0].label and "over the 200 ms budget" in bad[0].reasons[0]
    )


def test_inconclusive_says_how_many_more_samples(tmp_path):
    res = judge_run(_store(tmp_path, [("a", FAST, [], "done"), ("edge", EDGE, [], "done")]), "run1")
    assert res.verdict == "inconclusive" and res.exit_code == 3
    edge = next(c for c in res.cells if "edge" in c.label)
    assert (
        edge.verdict == "inconclusive"
        and "straddles" in edge.reasons[0]
        and edge.needed_samples > 0
    )
    assert f"about {edge.needed_samples} more samples" in edge.reasons[0]


def test_more_samples_decide_an_inconclusive_cell():
    # with many samples from the same distribution the interval shrinks and the verdict lands
    n, est, lo, hi, budget = 40, 205.0, 198.0, 212.0, 200.0
    more = samples_to_decide(n, est, lo, hi, budget)
    assert more is not None and more > 0
    assert samples_to_decide(n, 200.0, 195.0, 205.0, 200.0) is None


def test_too_few_samples_is_inconclusive(tmp_path):
    res = judge_run(_store(tmp_path, [("a", FAST[:10], [], "done")]), "run1")
    assert res.verdict == "inconclusive" and "only 10 samples" in res.cells[0].reasons[0]


def test_failed_cell_and_missing_cells(tmp_path):
    res = judge_run(
        _store(tmp_path, [("a", FAST, [], "done"), ("b", FAST[:5], [], "failed")]), "run1"
    )
    assert (
        res.verdict == "fail"
        and "phone unplugged" in next(c for c in res.cells if c.verdict == "error").reasons[0]
    )
    res = judge_run(
        _store(
            tmp_path / "x" if (tmp_path / "x").mkdir() is None else None,
            [("a", FAST, [], "done")],
            total=3,
        ),
        "run1",
    )
    assert res.verdict == "inconclusive"  # two cells of the plan never ran


def test_device_budgets_parity_and_accuracy(tmp_path):
    st = _store(
        tmp_path,
        [
            (
                "a",
                FAST,
                [("parity_cosine", 0.9, "cosine"), ("parity_top1", 1.0, "fraction")],
                "done",
            ),
            ("b", FAST, [("accuracy", 0.80, "auc"), ("accuracy_reference", 0.95, "auc")], "done"),
        ],
    )
    res = judge_run(st, "run1")
    reasons = {c.label.split(":")[-1]: " ".join(c.reasons) for c in res.cells}
    assert res.verdict == "fail" and "parity (fp32) outside tolerance" in reasons["a"]
    assert "accuracy kept 84.2% of PyTorch on the target (< 95%)" in reasons["b"]
    tight = BudgetSettings(
        latency_ms=200, devices=(DeviceBudget("a", 100.0),), parity=False, accuracy_retention=None
    )
    res = judge_run(st, "run1", tight)
    assert next(c for c in res.cells if c.label.endswith(":a")).verdict == "fail"
    assert next(c for c in res.cells if c.label.endswith(":b")).verdict == "pass"


def _kept(kind, value, low, high):
    name = f"{kind}_retention"
    return [
        (name, value, "ratio"),
        (f"{name}_ci_low", low, "ratio"),
        (f"{name}_ci_high", high, "ratio"),
    ]


def test_retention_budgets_judge_the_paired_interval(tmp_path):
    """Both retentions are gated on their intervals: the whole interval under the budget
    fails, an interval holding the budget is inconclusive (never a pass or fail on noise), a
    student that keeps its teacher's level passes; --compression-retention moves the bar."""
    st = _store(
        tmp_path,
        [
            ("below", FAST, _kept("compression", 0.85, 0.80, 0.90), "done"),
            ("straddles", FAST, _kept("compression", 0.94, 0.90, 0.98), "done"),
            ("keeps", FAST, _kept("compression", 1.00, 0.97, 1.03), "done"),
            ("int8", FAST, _kept("accuracy", 0.96, 0.93, 0.99), "done"),
        ],
    )
    res = judge_run(st, "run1")
    by = {c.label.split(":")[-1]: c for c in res.cells}
    assert by["below"].verdict == "fail"
    assert "compression kept 85.0% [80.0%, 90.0%] of its teacher (< 93%)" in by["below"].reasons
    assert by["straddles"].verdict == "inconclusive"
    assert "the interval holds 93%" in " ".join(by["straddles"].reasons)
    assert by["keeps"].verdict == "pass"
    assert by["int8"].verdict == "inconclusive"  # 0.93-0.99 holds the 95% on-target budget
    assert res.verdict == "fail"
    lax = BudgetSettings(accuracy_retention=0.9, compression_retention=0.75)
    assert {c.verdict for c in judge_run(st, "run1", lax).cells} == {"pass"}


def _cli(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output


def test_gate_cli_exit_codes_and_flags(tmp_path):
    st = _store(tmp_path, [("a", FAST, [], "done"), ("edge", EDGE, [], "done")])
    db = str(tmp_path / "r.db")
    del st
    code, out = _cli("gate", "--store", db)
    assert code == 3 and "INCONCLUSIVE" in out and "edge" in out
    code, out = _cli("gate", "run1", "--store", db, "--latency-ms", "500")
    assert code == 0 and out.startswith("gate PASS")
    code, out = _cli("gate", "run1", "--store", db, "--device-budget", "a=50", "--json")
    data = json.loads(out)
    assert code == 1 and data["verdict"] == "fail"
    code, out = _cli("gate", "run1", "--store", db, "--device-budget", "pixel=50")
    assert code == 2 and "budget for device 'pixel', which this run did not measure" in out
    code, out = _cli("gate", "nope", "--store", db)
    assert code == 2 and "no run 'nope'" in out and "Traceback" not in out
    code, out = _cli("gate", "--store", str(tmp_path / "missing.db"))  # a reader: never created
    assert code == 2 and "no results store at" in out and not (tmp_path / "missing.db").exists()
    open_store(tmp_path / "empty.db").close()
    code, out = _cli("gate", "--store", str(tmp_path / "empty.db"))
    assert code == 2 and "no runs" in out


@pytest.mark.parametrize("percentile", ["50", "90"])
def test_gate_percentile_flag(tmp_path, percentile):
    _store(tmp_path, [("a", FAST, [], "done")])
    code, out = _cli("gate", "--store", str(tmp_path / "r.db"), "--percentile", percentile)
    assert code == 0 and f"p{percentile}" in out
