"""Runs real ExecuTorch programs for the stand-in executor_runner on a fake phone.

The stand-in (tests/support/android_runners/executor_runner.py) prints what the real runner
prints, with latencies from the phone's physics; the outputs it writes must be the program's
real outputs. Loading ExecuTorch's Python runtime needs torch, seconds per process on a busy
2-core machine, so the test process (which has both loaded) executes the program and the
stand-in asks it over loopback, one JSON line each way:

    -> {"model": PATH, "inputs": [RAW_FLOAT32_FILE, ...], "output_file": PREFIX}
    <- {"outputs": [[shape...], ...]}   (written to PREFIX-0.bin, PREFIX-1.bin, ...)
    <- {"error": "..."}                 (the program does not load or run)

Without ``inputs`` the program runs on ones, like the real runner. The fake adb server starts
one and hands its address to the phone's shell as $VITBENCH_PROGRAM_SERVER.
"""

from __future__ import annotations

import json
import socketserver
from pathlib import Path

import numpy as np

from tests.support.loopback import ThreadedServer

ENV = "VITBENCH_PROGRAM_SERVER"


def run_program(model: str, inputs: list[str], output_file: str) -> list[list[int]]:
    """Executes ``model`` (a .pte) with ExecuTorch on the raw float32 ``inputs``; writes the
    outputs as ``output_file``-K.bin when ``output_file`` is set; returns their shapes."""
    import torch
    from executorch.extension.pybindings import _C

    program = Path(model).read_bytes()
    module = _C._load_for_executorch_from_buffer(program)  # keeps a view: hold ``program``
    meta = module.method_meta("forward")
    tensors = []
    for k in range(meta.num_inputs()):
        shape = list(meta.input_tensor_meta(k).sizes())
        if k < len(inputs):
            data = np.fromfile(inputs[k], dtype=np.float32).reshape(shape)
        else:
            data = np.ones(shape, np.float32)
        tensors.append(torch.from_numpy(data.copy()))
    outputs = [o.detach().numpy() for o in module.forward(tensors)]
    del program
    if output_file:
        for k, out in enumerate(outputs):
            out.astype(np.float32).tofile(f"{output_file}-{k}.bin")
    return [list(o.shape) for o in outputs]


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        request = json.loads(self.rfile.readline())
        try:
            shapes = run_program(
                request["model"], request.get("inputs", []), request.get("output_file", "")
            )
            answer = {"outputs": shapes}
        except Exception as exc:  # the stand-in reports it the way the runner would
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        self.wfile.write((json.dumps(answer) + "\n").encode())


def program_server() -> ThreadedServer:
    """An unstarted server; ``with program_server() as srv: env[ENV] = srv.address``."""
    return ThreadedServer(socketserver.ThreadingTCPServer, _Handler)
