"""The AI Hub target's pieces that need no hub: profile parsing, the job journal, OS ranges."""

from __future__ import annotations

import json

import pytest

from targets.aihub.devices import DeviceSelectionError, os_matches
from targets.aihub.journal import JobJournal
from targets.aihub.profile_data import parse_profile

MB = 1024 * 1024


def test_profile_in_microseconds_and_bytes_becomes_ms_and_mb():
    prof = parse_profile(
        {
            "execution_summary": {
                "all_inference_times": [12000, 12500, 11800],
                "first_load_time": 850_000,
                "warm_load_time": 95_000,
                "inference_memory_peak_range": (20 * MB, 48 * MB),
                "first_load_memory_peak_range": (30 * MB, 64 * MB),
            },
            "execution_detail": [
                {"name": "a", "type": "MatMul", "compute_unit": "NPU", "execution_time": 300},
                {"name": "b", "type": "MatMul", "compute_unit": "NPU", "execution_time": 300},
                {"name": "c", "type": "Gather", "compute_unit": "CPU", "execution_time": 400},
            ],
        },
        asked_unit="npu",
    )
    assert prof.samples_ms == [12.0, 12.5, 11.8]
    assert (prof.metrics["load_cold_ms"], prof.metrics["load_warm_ms"]) == (850.0, 95.0)
    assert (prof.metrics["peak_memory_mb"], prof.metrics["peak_memory_low_mb"]) == (48.0, 20.0)
    assert prof.metrics["load_cold_peak_memory_mb"] == 64.0
    assert prof.metrics["compute_share_npu"] == pytest.approx(2 / 3)
    assert prof.metrics["compute_time_share_cpu"] == pytest.approx(0.4)
    assert prof.compute_unit == "npu" and prof.layers == {"npu": 2, "gpu": 0, "cpu": 1}
    assert prof.warnings == ["1 of 3 layers did not run on NPU"]


def test_cpu_fallback_is_flagged_by_time_not_only_layer_count():
    detail = [{"compute_unit": "NPU", "execution_time": 10}] * 3 + [
        {"compute_unit": "CPU", "execution_time": 500}
    ]
    prof = parse_profile(
        {"execution_summary": {"all_inference_times": [5000]}, "execution_detail": detail}, "npu"
    )
    assert prof.compute_unit == "cpu"
    assert "CPU fallback" in prof.warnings[0] and "3 of 4 layers on NPU" in prof.warnings[0]


def test_old_profile_without_per_iteration_times():
    prof = parse_profile(
        {
            "execution_summary": {
                "estimated_inference_time": 20000,
                "estimated_inference_peak_memory": 10 * MB,
            },
            "execution_detail": [],
        }
    )
    assert prof.samples_ms == [20.0] and prof.metrics["peak_memory_mb"] == 10.0
    assert "one estimated inference time" in prof.warnings[0] and prof.compute_unit == ""
    with pytest.raises(ValueError, match="no inference times"):
        parse_profile({"execution_summary": {}, "execution_detail": []})


def test_journal_writes_through_and_merges_with_other_writers(tmp_path):
    path = tmp_path / "state" / "journal.json"
    a, b = JobJournal(path), JobJournal(path)
    a.put("cell-1", "compile", "j1")
    b.put("cell-2", "compile", "j2")  # another process: must not drop cell-1
    a.put("cell-1", "profile", "j3")
    assert json.loads(path.read_text()) == {
        "cell-1": {"compile": "j1", "profile": "j3"},
        "cell-2": {"compile": "j2"},
    }
    assert JobJournal(path).get("cell-1", "profile") == "j3"
    b.drop("cell-1", "profile")
    assert a.get("cell-1", "profile") is None and a.get("nothing", "compile") is None
    path.write_text("{torn")
    assert a.get("cell-1", "compile") is None  # a torn file is started again, not fatal


def test_os_versions_and_ranges():
    assert os_matches("14", "") and os_matches("14", "14") and os_matches("14.2", "14")
    assert os_matches("14", "[14,15)") and not os_matches("15", "[14,15)")
    assert os_matches("15", "[14,)") and os_matches("13", "[,14)") and not os_matches("14", "[,14)")
    with pytest.raises(DeviceSelectionError):
        os_matches("14", "[14,15]")
