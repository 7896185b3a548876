"""What vitbench reads from phones and runners: getprop/dumpsys answers, chipset names, runner
output in the formats the real programs print, ELF headers, ETDump files."""

from __future__ import annotations

import json
import subprocess

import pytest

from targets.android.device import chipset, cpu_mask, parse_getprop, parse_state
from targets.android.etdump import backend_times, flatc_and_schema, read_etdump
from targets.android.runners import (
    Runner,
    RunnerError,
    check_runner_abi,
    elf_machine,
    help_flags,
    parse_executor_runner,
    parse_perf_test,
    runner_args,
)
from tests.support.android_runners import elf_file


@pytest.mark.parametrize(
    "props, slug, name",
    [
        (
            {"ro.soc.manufacturer": "QTI", "ro.soc.model": "SM8650"},
            "qualcomm-snapdragon-8gen3",
            "Snapdragon 8 Gen 3",
        ),
        ({"ro.soc.model": "SM8750"}, "qualcomm-snapdragon-8elite", "Snapdragon 8 Elite"),
        (
            {"ro.board.platform": "kalama"},
            "qualcomm-snapdragon-8gen2",
            "Snapdragon 8 Gen 2",
        ),  # Android 11: no ro.soc.*
        (
            {"ro.soc.manufacturer": "Mediatek", "ro.soc.model": "MT6991"},
            "mediatek-dimensity-9400",
            "Dimensity 9400",
        ),
        (
            {
                "ro.soc.manufacturer": "Google",
                "ro.soc.model": "Tensor G3",
                "ro.board.platform": "zuma",
            },
            "google-tensor-g3",
            "Tensor G3",
        ),
        ({"ro.board.platform": "zumapro"}, "google-tensor-g4", "Tensor G4"),
        (
            {"ro.soc.manufacturer": "Samsung", "ro.soc.model": "s5e9945"},
            "samsung-exynos-2400",
            "Exynos 2400",
        ),
        (
            {"ro.soc.manufacturer": "QTI", "ro.soc.model": "SM9999"},
            "qualcomm-sm9999",
            "Qualcomm SM9999",
        ),
    ],
)
def test_chipset_names(props, slug, name):
    assert chipset(props)[:2] == (slug, name)


def test_getprop_and_state_parsing():
    props = parse_getprop(
        "[ro.product.model]: [Pixel 8]\n[ro.build.version.release]: [15]\n[empty]: []\n"
    )
    assert props == {"ro.product.model": "Pixel 8", "ro.build.version.release": "15", "empty": ""}
    sep = "---vitbench---"
    text = (
        "Thermal Status: 1\nCurrent temperatures from HAL:\n"
        "\tTemperature{mValue=39.5, mType=3, mName=skin, mStatus=1}\n"
        f"{sep}\n  temperature: 367\n{sep}\n  mWakefulness=Asleep\n{sep}\n"
        "cpu0 300000 2016000 schedutil\ncpu4 2000000 2600000 schedutil\n"
        "cpu7 0 3000000 performance\n"
    )
    st = parse_state(text)
    assert (st.thermal_status, st.thermal_name, st.battery_c, st.skin_c, st.screen) == (
        1,
        "LIGHT",
        36.7,
        39.5,
        "Asleep",
    )
    assert [c.cpu for c in st.cpus] == [0, 4, 7] and st.cpus[2].governor == "performance"
    assert st.big_cores() == [4, 7] and cpu_mask(st.big_cores()) == "90"
    assert not st.is_cool(38.0) and "LIGHT" in st.describe()
    # Android 9: no thermalservice; only the battery decides
    old = parse_state(
        f"Can't find service: thermalservice\n{sep}\n  temperature: 300\n{sep}\n{sep}\n"
    )
    assert old.thermal_status is None and old.thermal_name == "UNKNOWN" and old.is_cool(38.0)
    assert not old.is_cool(29.0)


# executor_runner with the posix PAL (ET_LOG on stderr), as printed by
# examples/portable/executor_runner/executor_runner.cpp
ET_OUTPUT = """\
I 00:00:00.000412 executorch:executor_runner.cpp:205] Model file model.pte is loaded.
I 00:00:00.000431 executorch:executor_runner.cpp:214] Using method forward
I 00:00:00.020117 executorch:executor_runner.cpp:423] Model loaded in 19.741000 ms.
I 00:00:00.031558 executorch:executor_runner.cpp:541] Iteration 1 of 3: 11.402000 ms
I 00:00:00.039812 executorch:executor_runner.cpp:541] Iteration 2 of 3: 8.231500 ms
I 00:00:00.048040 executorch:executor_runner.cpp:541] Iteration 3 of 3: 8.210000 ms
I 00:00:00.048051 executorch:executor_runner.cpp:556] Model executed successfully 3 time(s) \
in 27.843500 ms.
I 00:00:00.048060 executorch:executor_runner.cpp:560] 1 outputs:
OutputX 0: tensor(sizes=[1, 5], [0.1, -0.3, 0.2, 0.0, 0.5])
"""


def test_executor_runner_output():
    out = parse_executor_runner(ET_OUTPUT)
    assert out.samples_ms == [11.402, 8.2315, 8.21] and out.load_ms == 19.741
    assert out.first_inference_ms == 11.402 and out.executions == 3
    assert out.summary["mean_ms"] == pytest.approx(27.8435 / 3)
    old = parse_executor_runner(
        "I 00:00:00.1 executorch:executor_runner.cpp:200] "
        "Model executed successfully 10 time(s) in 92.5 ms."
    )
    assert old.samples_ms == [] and old.summary["mean_ms"] == 9.25


# onnxruntime_perf_test -v -s (onnxruntime/test/perftest/performance_runner.cc), newer releases
# say "Average inference time cost total"
ORT_OUTPUT = """\
Setting intra_op_num_threads to 4
iteration:1,time_cost:0.0121
iteration:2,time_cost:0.0118
iteration:3,time_cost:0.013
Session creation time cost: 0.217932 s
First inference time cost: 19 ms
Total inference time cost: 0.0369 s
Total inference requests: 3
Average inference time cost: 12.3 ms
Total inference run time: 0.037 s
Number of inferences per second: 81.08
Avg CPU usage: 41 %
Peak working set size: 52428800 bytes
Min Latency: 0.0118 s
Max Latency: 0.013 s
P50 Latency: 0.0121 s
P90 Latency: 0.013 s
P95 Latency: 0.013 s
P99 Latency: 0.013 s
P999 Latency: 0.013 s
"""


def test_perf_test_output():
    out = parse_perf_test(ORT_OUTPUT)
    assert out.samples_ms == pytest.approx([12.1, 11.8, 13.0]) and out.load_ms == pytest.approx(
        217.932
    )
    assert out.first_inference_ms == 19 and out.summary["mean_ms"] == 12.3
    assert out.summary["peak_working_set_mb"] == 50 and out.summary["p50_ms"] == pytest.approx(12.1)
    assert parse_perf_test("Average inference time cost total: 98.961997 ms").summary[
        "mean_ms"
    ] == pytest.approx(98.961997)


def test_runner_command_lines(tmp_path):
    et = Runner("executorch", tmp_path / "executor_runner")
    flags = help_flags(
        "  Flags from executor_runner.cpp:\n    -model_path (Model) type: string\n"
        "    -num_executions (n) type: uint32\n    -cpu_threads (t) type: int32\n"
        "    -etdump_path (p) type: string\n"
    )
    assert flags == {"model_path", "num_executions", "cpu_threads", "etdump_path"}
    assert runner_args(et, "/d/m.pte", 12, 4, flags=flags, etdump="/d/e.etdp") == [
        "--model_path=/d/m.pte",
        "--num_executions=12",
        "--cpu_threads=4",
        "--etdump_path=/d/e.etdp",
    ]
    # a build without the event tracer or thread flag gets neither
    assert runner_args(
        et, "/d/m.pte", 5, 4, flags={"model_path", "num_executions"}, etdump="/d/e"
    ) == ["--model_path=/d/m.pte", "--num_executions=5"]
    ort = Runner("onnxruntime", tmp_path / "onnxruntime_perf_test")
    assert runner_args(ort, "/d/m.onnx", 7, 2, ort_ep="qnn") == [
        "-m",
        "times",
        "-r",
        "7",
        "-I",
        "-s",
        "-v",
        "-e",
        "qnn",
        "-x",
        "2",
        "/d/m.onnx",
    ]


def test_elf_abi_check(tmp_path):
    arm = elf_file(tmp_path / "arm64", 183)
    x86 = elf_file(tmp_path / "x86", 62)
    assert elf_machine(arm) == 183 and elf_machine(x86) == 62
    assert check_runner_abi(Runner("executorch", arm), "arm64-v8a") == ""
    with pytest.raises(
        RunnerError,
        match="built for x86-64, the phone is arm64-v8a: rebuild it with -DANDROID_ABI=arm64-v8a",
    ):
        check_runner_abi(Runner("executorch", x86), "arm64-v8a")
    with pytest.raises(RunnerError, match="built for aarch64"):
        check_runner_abi(Runner("executorch", arm), "x86_64")
    script = tmp_path / "wrapper.sh"
    script.write_text('#!/system/bin/sh\nexec ./executor_runner "$@"\n')
    assert "script" in check_runner_abi(Runner("executorch", script), "arm64-v8a")


def test_etdump_backend_times(tmp_path):
    """An ETDump compiled by flatc from the runtime's own schema reads back into time per
    execution and the split between delegate calls and CPU kernels."""
    flatc, schema = flatc_and_schema()
    events = [
        {"profile_event": {"name": "Program::load_method", "start_time": 0, "end_time": 20_000_000}}
    ]
    t = 30_000_000
    for ms, tenths in ((10.0, 6), (12.0, 8)):
        d = int(ms * 1e6)
        events += [
            {
                "profile_event": {
                    "name": "DELEGATE_CALL",
                    "instruction_id": 0,
                    "start_time": t,
                    "end_time": t + d * tenths // 10,
                }
            },
            {
                "profile_event": {
                    "name": "OPERATOR_CALL",
                    "instruction_id": 1,
                    "start_time": t + d * tenths // 10,
                    "end_time": t + d,
                }
            },
            {
                "profile_event": {
                    "name": "Conv (NHWC, F32) IGEMM",
                    "delegate_debug_id_int": 3,
                    "start_time": t,
                    "end_time": t + d // 2,
                }
            },
            {"profile_event": {"name": "Method::execute", "start_time": t, "end_time": t + d}},
        ]
        t += d + 1_000_000
    for f in schema.parent.glob("*.fbs"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "dump.json").write_text(
        json.dumps({"version": 0, "run_data": [{"name": "forward", "events": events}]})
    )
    subprocess.run(
        [
            flatc,
            "--binary",
            "--size-prefixed",
            "-o",
            str(tmp_path),
            str(tmp_path / schema.name),
            str(tmp_path / "dump.json"),
        ],
        check=True,
    )
    times = backend_times(read_etdump(tmp_path / "dump.etdp"))
    assert times.execute_ms == [10.0, 12.0] and times.load_method_ms == 20.0
    assert times.delegate_ms == pytest.approx([6.0, 9.6]) and times.operator_ms == pytest.approx(
        [4.0, 2.4]
    )
    assert times.delegated_share() == pytest.approx(15.6 / 22) and times.delegated_share(
        skip=1
    ) == pytest.approx(0.8)
    bad = tmp_path / "junk.etdp"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(Exception, match="not an ETDump"):
        read_etdump(bad)
