#!/usr/bin/env python3
"""Stand-in for ExecuTorch's executor_runner (examples/portable/executor_runner), run on a fake
phone. It takes the real runner's gflags and prints what the real one prints with the posix
PAL: ET_LOG lines on stderr ("I 00:00:00.012345 executorch:executor_runner.cpp:LINE] ..."),
"Model loaded in X ms.", "Iteration i of N: X ms" per execution, "Model executed successfully
N time(s) in X ms.", and writes ``<output_file>-<i>.bin`` and an ETDump when asked.

The model is a real ExecuTorch program (the exporter's .pte): a file without the program
identifier ET12 fails to parse, as on a phone, and its outputs are the program's real outputs,
computed by ExecuTorch in the test process (tests/support/program_server.py, address in
$VITBENCH_PROGRAM_SERVER) so that no runner pays for loading torch. Latencies come from the
phone's physics.json; they are scripted, because this is a fake device. Bytes starting with
CRASH make it abort after two executions. Physics ``output_dtype`` ("float16") or
``output_bytes`` (N) make it write its output files in another dtype or cut to N bytes: a
runner built with other output handling than vitbench expects.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS = {
    "model_path": "model.pte",
    "data_path": "",
    "inputs": "",
    "output_file": "",
    "print_output": "summary",
    "num_executions": "1",
    "method_name": "",
    "cpu_threads": "-1",
    "input_shapes": "",
    "server_mode": "false",
}
START = time.monotonic()
PHONE = Path(os.environ.get("PHONE", "."))
ANDROID_PAL = False  # physics "pal": "android": ET_LOG goes to logcat (tag ExecuTorch), not stderr


def log(level: str, line: int, msg: str) -> None:
    if ANDROID_PAL:
        with open(PHONE / "state/logcat", "a") as fh:
            fh.write(f"{os.getpid()} {msg}\n")
        return
    t = time.monotonic() - START
    sys.stderr.write(
        f"{level} 00:00:{int(t):02d}.{int((t % 1) * 1e6):06d} "
        f"executorch:executor_runner.cpp:{line}] {msg}\n"
    )
    sys.stderr.flush()


def main() -> int:
    global ANDROID_PAL
    phone = PHONE
    physics = (
        json.loads((phone / "state/physics.json").read_text())
        if (phone / "state/physics.json").exists()
        else {}
    )
    ANDROID_PAL = physics.get("pal") == "android"
    flags = runner_flags(physics)
    args = sys.argv[1:]
    if not parse_flags(flags, args):
        return 1
    import numpy as np

    model = Path(flags["model_path"])
    if not model.is_file():
        log("E", 330, "FileDataLoader::from() failed: 0x22")
        os.abort()
    data = model.read_bytes()
    ballast = bytearray(int(physics.get("ballast_mb", 24)) << 20)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # touch the pages: they count in VmHWM
    crash = data.startswith(b"CRASH")
    if not crash and data[4:8] != b"ET12":  # flatbuffer file identifier of a Program
        log("E", 347, f"Failed to parse model file {flags['model_path']}")
        return 1
    log("I", 344, f"Model file {flags['model_path']} is loaded.")
    log("I", 357, "Using method forward")
    runs_file = phone / "state/runs"
    runs = int(runs_file.read_text()) if runs_file.exists() else 0
    runs_file.write_text(str(runs + 1))
    load_ms = float(physics.get("load_ms", 30.0)) * (0.8 if runs else 1.0)
    log("I", 420, f"Model loaded in {load_ms:.6f} ms.")

    time.sleep(float(physics.get("hang_s", 0)))  # a runner stuck in a driver call
    trickle(physics)
    n = int(flags["num_executions"])
    threads = int(flags.get("cpu_threads", "-1"))
    base = float(physics.get("base_ms", 10.0)) * (
        1.0 if threads in (-1, 4) else 4.0 / max(threads, 1) ** 0.8
    )
    if runs >= int(physics.get("slow_from_run", 1 << 30)):
        base *= float(physics.get("slowdown", 1.4))
    rng = np.random.default_rng(runs)
    total, times = 0.0, []
    for it in range(n):
        if crash and it == 2:
            log(
                "F",
                512,
                "In function execute(), assert failed (status == Error::Ok): "
                "Execution of method forward failed with status 0x20",
            )
            os.abort()
        ms = base * (1.6 if it == 0 else 1.0) * (1 + 0.02 * abs(rng.standard_normal()))
        times.append(ms)
        total += ms
        if not physics.get("old_runner"):
            log("I", 540, f"Iteration {it + 1} of {n}: {ms:.6f} ms")
    log("I", 556, f"Model executed successfully {n} time(s) in {total:.6f} ms.")

    outputs = run_program(flags, str(model.resolve()))
    if outputs is None:
        return 1
    report_outputs(flags, outputs)
    if flags["output_file"]:
        misshape_outputs(physics, flags["output_file"], len(outputs))
    if "etdump_path" in flags and any(a.lstrip("-").startswith("etdump_path") for a in args):
        write_etdump(flags["etdump_path"], load_ms, times, float(physics.get("delegated", 0.75)))
        log("I", 229, f"ETDump written to file '{flags['etdump_path']}'.")
    time.sleep(float(physics.get("linger_s", 0.15)))  # so the wrapper sees the process alive
    return 0


def trickle(physics: dict) -> None:
    """With ``trickle_s``: a runner that prints an iteration now and then and never ends."""
    if not physics.get("trickle_s"):
        return
    k = 0
    while True:
        k += 1
        log("I", 540, f"Iteration {k} of 1000000: 10.000000 ms")
        time.sleep(float(physics["trickle_s"]))


def runner_flags(physics: dict) -> dict:
    """The flags this build of the runner knows, with their defaults."""
    flags = dict(FLAGS)
    if physics.get("old_runner"):  # before per-iteration logging: no cpu_threads, no print_output
        for k in ("cpu_threads", "print_output", "input_shapes"):
            flags.pop(k)
    if physics.get("etdump"):
        flags["etdump_path"] = "model.etdump"
    return flags


def parse_flags(flags: dict, args: list[str]) -> bool:
    """gflags parsing into ``flags`` (``-k v``, ``--k=v``); False after printing the usage
    (``--help``) or the error a real runner prints for an unknown flag."""
    if "--help" in args or "-help" in args:
        print(
            "executor_runner: Warning: SetUsageMessage() never called\n\n"
            "  Flags from executor_runner.cpp:"
        )
        for k, v in flags.items():
            print(f'    -{k} () type: string default: "{v}"')
        return False
    i = 0
    while i < len(args):
        key, eq, val = args[i].lstrip("-").partition("=")
        if key not in flags:
            print(f"ERROR: unknown command line flag '{key}'", file=sys.stderr)
            return False
        if not eq:
            i += 1
            val = args[i] if i < len(args) else ""
        flags[key] = val
        i += 1
    return True


def report_outputs(flags: dict, outputs: list) -> None:
    """The lines executor_runner logs and prints about its outputs."""
    log("I", 560, f"{len(outputs)} outputs: ")
    if flags["output_file"]:
        for k in range(len(outputs)):
            log("I", 572, f"Writing output to file: {flags['output_file']}-{k}.bin")
    if flags.get("print_output", "summary") == "summary":
        for k, out in enumerate(outputs):
            sizes = ", ".join(map(str, out.shape))
            print(f"OutputX {k}: tensor(sizes=[{sizes}], {out.ravel()[:5].tolist()})")


def misshape_outputs(physics: dict, prefix: str, count: int) -> None:
    """Rewrite the output files in physics' ``output_dtype`` and cut to ``output_bytes``."""
    import numpy as np

    for k in range(count):
        path = Path(f"{prefix}-{k}.bin")
        data = path.read_bytes()
        if physics.get("output_dtype"):
            data = np.frombuffer(data, np.float32).astype(physics["output_dtype"]).tobytes()
        if "output_bytes" in physics:
            data = data[: int(physics["output_bytes"])]
        path.write_bytes(data)


def run_program(flags: dict, model: str):
    """The program's outputs for ``--inputs`` (ones when none), written to ``--output_file``
    when set; None (after logging the runtime's error) when it does not run."""
    import socket

    import numpy as np

    prefix = flags["output_file"] or tempfile.mktemp(prefix="outputs-", dir=str(PHONE))
    inputs = [str(Path(p).resolve()) for p in flags["inputs"].split(",") if p]
    host, _, port = os.environ["VITBENCH_PROGRAM_SERVER"].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        request = {"model": model, "inputs": inputs, "output_file": str(Path(prefix).resolve())}
        sock.sendall((json.dumps(request) + "\n").encode())
        answer = json.loads(sock.makefile().readline())
    if "error" in answer:
        log("E", 512, f"Execution of method forward failed: {answer['error']}")
        return None
    outputs = []
    for k, shape in enumerate(answer["outputs"]):
        path = Path(f"{prefix}-{k}.bin")
        outputs.append(np.fromfile(path, dtype=np.float32).reshape(shape))
        if not flags["output_file"]:
            path.unlink()
    return outputs


def write_etdump(path: str, load_ms: float, times: list[float], delegated: float) -> None:
    """A size-prefixed ETDump flatbuffer (the runtime's schema, compiled by flatc) with the
    events ETDumpGen records: Program::load_method, then per execution Method::execute with a
    DELEGATE_CALL and an OPERATOR_CALL inside."""

    def ev(name, start, end, instr=-1):
        return {
            "profile_event": {
                "name": name,
                "chain_index": 0,
                "instruction_id": instr,
                "delegate_debug_id_int": -1,
                "start_time": int(start),
                "end_time": int(end),
            }
        }

    t = 1_000_000
    events = [ev("Program::load_method", t, t + load_ms * 1e6)]
    t += load_ms * 1e6 + 5e5
    for ms in times:
        d = ms * 1e6
        events.append(ev("DELEGATE_CALL", t + 1000, t + 1000 + d * delegated, 0))
        events.append(ev("OPERATOR_CALL", t + 2000 + d * delegated, t + d - 1000, 1))
        events.append(ev("Method::execute", t, t + d))
        t += d + 2e5
    doc = {
        "version": 0,
        "run_data": [{"name": "forward", "bundled_input_index": -1, "events": events}],
    }
    flatc, schema = os.environ["VITBENCH_FLATC"], Path(os.environ["VITBENCH_ETDUMP_SCHEMA"])
    with tempfile.TemporaryDirectory() as d:
        for f in schema.parent.glob("*.fbs"):
            (Path(d) / f.name).write_bytes(f.read_bytes())
        (Path(d) / "etdump.json").write_text(json.dumps(doc))
        subprocess.run(
            [
                flatc,
                "--binary",
                "--size-prefixed",
                "-o",
                d,
                str(Path(d) / schema.name),
                str(Path(d) / "etdump.json"),
            ],
            check=True,
        )
        Path(path).write_bytes((Path(d) / "etdump.etdp").read_bytes())


if __name__ == "__main__":
    sys.exit(main())
