#!/usr/bin/env python3
"""Stand-in for ONNX Runtime's onnxruntime_perf_test (onnxruntime/test/perftest), run on a fake
phone. It takes the real tool's options (-m times -r N -x T -e EP -I -s -v MODEL [RESULT_FILE])
and prints what the real one prints: with -v one "iteration:I,time_cost:SECONDS" line per run
after the warm-up run, then the summary ("Session creation time cost", "First inference time
cost", "Average inference time cost total", "Peak working set size"...) and with -s the
latency percentiles in seconds. Latencies come from the phone's physics.json (a fake device).
"""

import getopt
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    phone = Path(os.environ.get("PHONE", "."))
    physics = (
        json.loads((phone / "state/physics.json").read_text())
        if (phone / "state/physics.json").exists()
        else {}
    )
    try:
        opts, rest = getopt.getopt(sys.argv[1:], "m:r:t:x:y:e:i:o:p:c:IsvhAMP")
    except getopt.GetoptError as exc:
        print(
            f"{exc}\nusage: onnxruntime_perf_test [options...] model_path [result_file]",
            file=sys.stderr,
        )
        return 255
    o = dict(opts)
    if not rest:
        print("usage: onnxruntime_perf_test [options...] model_path [result_file]", file=sys.stderr)
        return 255
    model = Path(rest[0])
    if not model.is_file():
        print(f"failed to load model: {model}: No such file", file=sys.stderr)
        return 255
    data = model.read_bytes()
    if data.startswith(b"CRASH"):
        print("Session creation time cost: 0.05 s")
        sys.stdout.flush()
        os.abort()
    try:  # the session is real: a file ONNX Runtime cannot load fails as on the phone
        import onnxruntime

        onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception as exc:
        print(
            "Error: [ONNXRuntimeError] : 7 : INVALID_PROTOBUF : "
            f"Load model from {model.name} failed:{exc}",
            file=sys.stderr,
        )
        return 255
    ep = o.get("-e", "cpu")
    if ep not in ("cpu", "nnapi", "qnn", "xnnpack"):
        print(f"Error: unsupported execution provider {ep}", file=sys.stderr)
        return 255
    ballast = bytearray(int(physics.get("ballast_mb", 24)) << 20)
    ballast[::4096] = b"\1" * len(ballast[::4096])
    import random

    runs_file = phone / "state/runs"
    runs = int(runs_file.read_text()) if runs_file.exists() else 0
    runs_file.write_text(str(runs + 1))
    rng = random.Random(runs)
    n = int(o.get("-r", "1000"))
    base = float(physics.get("base_ms", 10.0)) * (0.6 if ep in ("nnapi", "qnn") else 1.0) / 1e3
    times = []
    print(f"Session creation time cost: {physics.get('load_ms', 30.0) / 1e3:.6g} s")
    for i in range(n):
        s = base * (1 + 0.02 * abs(rng.gauss(0, 1)))
        times.append(s)
        if "-v" in o:
            print(f"iteration:{i + 1},time_cost:{s:.6g}")
    total = sum(times)
    print(f"First inference time cost: {int(base * 1.7e3)} ms")
    print(f"Total inference time cost: {total:.6g} s")
    print(f"Total inference requests: {n}")
    print(f"Average inference time cost total: {total / n * 1e3:.6f} ms")
    print(f"Total inference run time: {total * 1.001:.6g} s")
    print(f"Number of inferences per second: {n / total:.6g}")
    print("Avg CPU usage: 47 %")
    print(f"Peak working set size: {len(ballast) + 9_000_000} bytes")
    if "-s" in o:
        st = sorted(times)
        print(f"Min Latency: {st[0]:.6g} s")
        print(f"Max Latency: {st[-1]:.6g} s")
        for q in (50, 90, 95, 99, 999):
            rank = min(len(st) - 1, int(len(st) * q / (1000 if q == 999 else 100)))
            print(f"P{q} Latency: {st[rank]:.6g} s")
    sys.stdout.flush()
    time.sleep(float(physics.get("linger_s", 0.15)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
