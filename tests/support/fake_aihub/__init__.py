"""A fake Qualcomm AI Hub on loopback that speaks the hub's HTTP + protobuf API (the message
types from ``qai_hub.public_api_pb2``), so the real ``qai_hub`` client runs end to end.

It serves what the client calls: the device list, model creation with multipart upload URLs
(served here too), datasets (form upload and download), compile and inference jobs whose
state advances with time, job results with a real-shaped profile (per-iteration times in
microseconds, load times, memory ranges, per-layer compute units taken from the uploaded
ONNX graph), and outputs computed by running the "compiled" model with ONNX Runtime.

Knobs for the tests: job duration (per device), per-request latency, failing jobs with a
hub failure type and text, HTTP 429 for the next N job submissions, rejected compile
options, devices that fall back to CPU, perturb outputs, compute in fp16 or report slow
warm-up iterations. Counters tell what the client did.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import numpy as np
from qai_hub import public_api_pb2 as pb

from tests.support.fake_aihub.handler import HubHandler
from tests.support.fake_aihub.records import DEVICES, FakeDevice, FakeJob, parse_options, ts
from tests.support.loopback import ThreadedServer

__all__ = ["DEVICES", "FakeAIHub", "FakeDevice", "FakeJob"]


@dataclass
class FakeAIHub:
    token: str = "fake-token-0123456789abcdef"
    devices: list[FakeDevice] = field(default_factory=lambda: list(DEVICES))
    job_seconds: float = 0.3
    request_latency_s: float = 0.0
    max_part_size: int = 64 * 1024
    qairt_version: str = "2.31.0.250130"

    def __post_init__(self):
        self.lock = threading.RLock()
        self.models: dict[str, dict[str, Any]] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.job_seconds_by_device: dict[str, float] = {}
        # ("compile" | "profile" | "inference", device name) -> (JobFailureType, failure text)
        self.fail_jobs: dict[tuple[str, str], tuple[int, str]] = {}
        self.rate_limit_job_posts = 0  # the next N POST /jobs/ answer 429
        self.fail_upload_parts = 0  # the next N part uploads answer 500 (an upload failing midway)
        self.reject_options: dict[str, str] = {}  # option name -> the hub's message (HTTP 400)
        self.uploaded_inputs: list[dict[str, list[np.ndarray]]] = []
        self._server: ThreadedServer | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeAIHub:
        hub = self

        class Handler(HubHandler):
            fake = hub

        self._server = ThreadedServer(ThreadingHTTPServer, Handler).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> FakeAIHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://{self._server.address}"

    def write_client_ini(self, path, token: str | None = None) -> None:
        """A client.ini like `qai-hub configure` writes, pointing at this fake."""
        tok = "" if token == "" else f"api_token = {token or self.token}\n"
        path.write_text(f"[api]\n{tok}api_url = {self.url}\nweb_url = {self.url}\nverbose = True\n")

    def client_env(self, folder, monkeypatch, token: str | None = None):
        """What `qai-hub configure` leaves, for this fake: a client.ini in ``folder`` found
        through QAIHUB_CLIENT_INI, a throwaway HOME, no token in the environment. Returns
        the client.ini's path."""
        home = folder / "home"
        home.mkdir(exist_ok=True)
        ini = folder / "client.ini"
        self.write_client_ini(ini, token)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
        monkeypatch.delenv("QAI_HUB_API_TOKEN", raising=False)
        return ini

    def free_dimensions(self, model_id: str) -> list[str]:
        """``input[axis]`` for every input dimension of an uploaded ONNX model that has no
        fixed size (a ``dim_param`` such as "batch")."""
        data = self.models.get(model_id, {}).get("data")
        if not data:
            return []
        import onnx

        try:
            graph = onnx.load_from_string(data).graph
        except Exception:  # noqa: BLE001 - not an ONNX file (a TorchScript or .pt2 upload)
            return []
        return [
            f"{i.name}[{k}]"
            for i in graph.input
            for k, d in enumerate(i.type.tensor_type.shape.dim)
            if not d.HasField("dim_value")
        ]

    # -- counters -------------------------------------------------------------------------------

    def jobs_of(self, kind: str) -> list[FakeJob]:
        with self.lock:
            return [j for j in self.jobs.values() if j.kind == kind]

    def count(self, method: str, path: str, status: int | None = None) -> int:
        """Requests the fake answered for ``method path`` (with ``status``, when given)."""
        with self.lock:
            return sum(
                1
                for m, p, s in self.requests
                if m == method and p == path and (status is None or s == status)
            )

    # -- helpers used by the handler ------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return prefix + uuid.uuid4().hex[:8]

    def find_devices(
        self, name: str, os_spec: str, attrs: list[str], select: bool
    ) -> list[FakeDevice]:
        from packaging.version import Version

        def os_ok(v: str) -> bool:
            if not os_spec:
                return True
            if os_spec.startswith("["):
                lo, hi = os_spec[1:-1].split(",")
                return (not lo or Version(v) >= Version(lo)) and (
                    not hi or Version(v) < Version(hi)
                )
            return v == os_spec

        hits = [
            d
            for d in self.devices
            if (not name or d.name == name)
            and os_ok(d.os)
            and all(a in d.attributes for a in attrs)
        ]
        if select and hits:
            hits = [max(hits, key=lambda d: Version(d.os))]
        return hits

    def device_pb(self, d: FakeDevice) -> pb.Device:
        return pb.Device(name=d.name, os=d.os, attributes=d.attributes, soc_description=d.soc)

    def model_pb(self, model_id: str) -> pb.Model:
        m = self.models[model_id]
        out = pb.Model(
            model_id=model_id,
            name=m["name"],
            model_type=m["type"],
            creation_time=ts(m["created"]),
            file_upload_complete=m["complete"],
            is_directory=m.get("is_directory", False),
            producer_id=m.get("producer", ""),
        )
        for k, v in m.get("metadata", {}).items():
            out.metadata.entries[k] = v
        return out

    def job_pb(self, job: FakeJob, now: float) -> pb.Job:
        state = job.state(now)
        failed = state == pb.JOB_STATE_FAILED
        reason = job.failure[1] if failed and job.failure else ""
        model = self.model_pb(job.model_id)
        common = dict(
            model=model,
            job_state=state,
            device=self.device_pb(job.device),
            name=job.name,
            options=job.options,
            failure_reason=reason,
            creation_time=ts(job.created),
        )
        if job.kind == "compile":
            inner = pb.CompileJob(compile_job_id=job.id, **common)
            inner.devices.devices.append(self.device_pb(job.device))
            inner.target_model.CopyFrom(self.model_pb(job.target_model_id))
            out = pb.Job(compile_job=inner, hub_version="aihub-fake-0.56")
        else:
            inner = pb.InferenceJob(
                inference_job_id=job.id, is_profiling_on=job.profiling, **common
            )
            if job.dataset_id:
                inner.dataset.CopyFrom(self.dataset_pb(job.dataset_id))
            out = pb.Job(inference_job=inner, hub_version="aihub-fake-0.56")
        if failed and job.failure:
            out.failure_type = job.failure[0]
        elif state == pb.JOB_STATE_DONE:
            out.failure_type = pb.JOB_FAILURE_TYPE_SUCCESS
        return out

    def dataset_pb(self, dataset_id: str) -> pb.Dataset:
        d = self.datasets[dataset_id]
        return pb.Dataset(
            dataset_id=dataset_id,
            name=d["name"],
            creation_time=ts(d["created"]),
            expiration_time=ts(d["created"] + 30 * 86400),
            file_upload_complete=d["complete"],
        )

    def profile_detail(self, job: FakeJob) -> pb.ProfileDetail:

        rng = np.random.default_rng(int(job.id[1:], 16))
        opts = parse_options(job.options)
        n = int(opts.get("max_profiler_iterations", 100))
        dev = job.device
        times = np.maximum(dev.base_ms * 0.8, rng.normal(dev.base_ms, dev.base_ms * 0.03, n)) * 1000
        if dev.cpu_fallback:
            times = times * 4
        k = min(dev.warmup_iterations, n)
        times[:k] *= np.linspace(3.0, 1.0, k + 1)[:k]  # clocks and caches warming up
        mb = 1024 * 1024
        detail = pb.ProfileDetail(
            major_version=1,
            minor_version=2,
            execution_time=int(np.median(times)),
            after_execution_peak_memory=40 * mb,
            cold_load_time=int(dev.base_ms * 90_000),
            warm_load_time=int(dev.base_ms * 12_000),
            after_cold_load_peak_memory=60 * mb,
            after_warm_load_peak_memory=45 * mb,
            all_execution_times=[int(t) for t in times],
            all_cold_load_times=[int(dev.base_ms * 90_000)],
            all_warm_load_times=[int(dev.base_ms * 12_000)] * 5,
        )
        for mem, lo, hi in (
            (detail.execution_memory, 12, 40),
            (detail.cold_load_memory, 30, 60),
            (detail.warm_load_memory, 20, 45),
        ):
            mem.increase.lower, mem.increase.upper = lo * mb // 2, hi * mb // 2
            mem.peak.lower, mem.peak.upper = lo * mb, hi * mb
        layers = self.source_layers(job.model_id)
        per_layer = float(np.median(times)) / max(1, len(layers))
        for i, (name, op_type) in enumerate(layers):
            on_cpu = dev.cpu_fallback and op_type not in ("Add",) or op_type in ("Gather",)
            detail.layer_details.append(
                pb.LayerDetail(
                    name=name or f"layer_{i}",
                    layer_type_name=op_type,
                    id=str(i),
                    compute_unit=pb.COMPUTE_UNIT_CPU if on_cpu else pb.COMPUTE_UNIT_NPU,
                    execution_time=int(per_layer * (3 if on_cpu else 1)),
                    delegate_name="QNN" if not on_cpu else "",
                )
            )
        detail.tool_versions.append(pb.ToolVersion(name="QAIRT", version=self.qairt_version))
        return detail

    def source_layers(self, target_model_id: str) -> list[tuple[str, str]]:
        """(name, op type) of each layer of the model a compile job started from: the ONNX
        graph's nodes, or a ViT-shaped stand-in for an ExportedProgram."""
        import onnx

        source = self.models[self.models[target_model_id]["source"]]
        if source["type"] == pb.MODEL_TYPE_ONNX:
            return [(n.name, n.op_type) for n in onnx.load_from_string(source["data"]).graph.node]
        block = [
            "LayerNormalization",
            "MatMul",
            "Gather",
            "MatMul",
            "Softmax",
            "MatMul",
            "Add",
            "LayerNormalization",
            "MatMul",
            "Gelu",
            "MatMul",
            "Add",
        ]
        return [(f"block{b}.{op}{i}", op) for b in range(3) for i, op in enumerate(block)]

    def run_inference(self, job: FakeJob) -> str:
        """Run the uploaded inputs through the (source) ONNX model; returns the output dataset."""
        import h5py
        import onnxruntime as ort
        from qai_hub.util.dataset_entries_converters import (
            dataset_entries_to_h5,
            h5_to_dataset_entries,
        )

        with h5py.File(io.BytesIO(self.datasets[job.dataset_id]["data"]), "r") as h5f:
            entries = h5_to_dataset_entries(h5f)
        source = self.models[self.models[job.model_id]["source"]]["data"]
        sess = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        out_name = sess.get_outputs()[0].name
        batches = list(zip(*entries.values(), strict=True))
        on_accelerator = parse_options(job.options).get("compute_unit", "npu") != "cpu"
        outputs = []
        for batch in batches:
            y = sess.run([out_name], dict(zip(names, batch, strict=True)))[0]
            if job.device.output_noise:
                y = y + np.float32(job.device.output_noise)
            if job.device.fp16 and on_accelerator:  # fp16 storage and accumulation
                err = np.float32(4e-3) * np.cos(np.arange(y.size, dtype=np.float32))
                y = (y + err.reshape(y.shape)).astype(np.float16)
            outputs.append(y.astype(np.float32))
        buf = io.BytesIO()
        with h5py.File(buf, "w") as h5f:
            dataset_entries_to_h5({out_name: outputs}, h5f)
        ds_id = self._new_id("d")
        self.datasets[ds_id] = {
            "name": "outputs",
            "created": time.time(),
            "complete": True,
            "data": buf.getvalue(),
        }
        return ds_id
