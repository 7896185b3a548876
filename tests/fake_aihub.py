"""A fake Qualcomm AI Hub on loopback that speaks the hub's HTTP + protobuf API (the message
types from ``qai_hub.public_api_pb2``), so the real ``qai_hub`` client runs end to end.

It serves what the client calls: the device list, model creation with multipart upload URLs
(served here too), datasets (form upload and download), compile and inference jobs whose
state advances with time, job results with a real-shaped profile (per-iteration times in
microseconds, load times, memory ranges, per-layer compute units taken from the uploaded
ONNX graph), and outputs computed by running the "compiled" model with ONNX Runtime.

Knobs for the tests: job duration (per device), per-request latency, failing jobs with a
hub failure type and text, HTTP 429 for the next N job submissions, rejected compile
options, devices that fall back to CPU or perturb outputs. Counters tell what the client did.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from qai_hub import public_api_pb2 as pb

PB = "application/x-protobuf"
ANDROID = ["os:android", "format:phone", "framework:tflite", "framework:qnn", "framework:onnx"]


@dataclass
class FakeDevice:
    name: str
    os: str
    attributes: list[str]
    soc: str = ""
    base_ms: float = 10.0  # median inference time it reports
    cpu_fallback: bool = False  # layers run on CPU although NPU was asked
    output_noise: float = 0.0  # added to outputs (a lossy runtime)


DEVICES = [
    FakeDevice("Samsung Galaxy S24 (Family)", "14", ANDROID + ["chipset:qualcomm-snapdragon-8gen3", "vendor:samsung",
               "hexagon:v75"], "Snapdragon® 8 Gen 3 | SM8650", base_ms=8.0),
    FakeDevice("Samsung Galaxy S24 (Family)", "15", ANDROID + ["chipset:qualcomm-snapdragon-8gen3", "vendor:samsung",
               "hexagon:v75"], "Snapdragon® 8 Gen 3 | SM8650", base_ms=7.8),
    FakeDevice("Samsung Galaxy S23 (Family)", "13", ANDROID + ["chipset:qualcomm-snapdragon-8gen2", "vendor:samsung",
               "hexagon:v73"], "Snapdragon® 8 Gen 2 | SM8550", base_ms=11.0),
    FakeDevice("Snapdragon 8 Elite QRD", "15", ANDROID + ["chipset:qualcomm-snapdragon-8-elite", "vendor:qualcomm",
               "hexagon:v79"], "Snapdragon® 8 Elite | SM8750", base_ms=6.0),
    FakeDevice("Samsung Galaxy S21", "12", ANDROID + ["chipset:qualcomm-snapdragon-888", "vendor:samsung",
               "hexagon:v68"], "Snapdragon® 888 | SM8350", base_ms=25.0, cpu_fallback=True),
    FakeDevice("Snapdragon X Elite CRD", "11", ["os:windows", "format:compute", "framework:qnn", "framework:onnx",
               "chipset:qualcomm-snapdragon-x-elite", "vendor:qualcomm", "hexagon:v73"],
               "Snapdragon® X Elite | X1E80100", base_ms=5.0),
    FakeDevice("QCS8550 (Proxy)", "12", ["os:android", "format:iot", "framework:tflite", "framework:qnn",
               "framework:onnx", "chipset:qualcomm-qcs8550-proxy", "vendor:qualcomm", "hexagon:v73"],
               "QCS8550 Proxy", base_ms=12.0),
]

RUNTIMES = {"tflite": (pb.MODEL_TYPE_TFLITE, "model.tflite"), "qnn_dlc": (pb.MODEL_TYPE_QNN_DLC, "model.dlc"),
            "qnn_context_binary": (pb.MODEL_TYPE_QNN_CONTEXT_BINARY, "model.bin"),
            "onnx": (pb.MODEL_TYPE_ONNX, "model.onnx"), "precompiled_qnn_onnx": (pb.MODEL_TYPE_ONNX, "model.onnx")}


def _ts(t: float) -> Timestamp:
    ts = Timestamp()
    ts.FromSeconds(int(t))
    return ts


def _parse_options(text: str) -> dict[str, str]:
    """``--name value --flag`` as a dict (a flag without a value is "true")."""
    out, words, i = {}, text.split(), 0
    while i < len(words):
        if not words[i].startswith("--"):
            raise ValueError(f"unexpected argument {words[i]!r}")
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            out[words[i][2:]] = words[i + 1]
            i += 2
        else:
            out[words[i][2:]] = "true"
            i += 1
    return out


@dataclass
class FakeJob:
    id: str
    kind: str  # "compile" or "inference"
    device: FakeDevice
    model_id: str
    options: str
    name: str
    created: float
    duration: float
    failure: tuple[int, str] | None = None  # (JobFailureType, failure text)
    profiling: bool = False
    dataset_id: str = ""
    target_model_id: str = ""
    output_dataset_id: str = ""

    def state(self, now: float) -> int:
        elapsed = now - self.created
        if elapsed >= self.duration:
            return pb.JOB_STATE_FAILED if self.failure else pb.JOB_STATE_DONE
        if elapsed < self.duration * 0.2:
            return pb.JOB_STATE_CREATED
        if self.kind == "compile":
            return pb.JOB_STATE_OPTIMIZING_MODEL
        if elapsed < self.duration * 0.5:
            return pb.JOB_STATE_PROVISIONING_DEVICE
        return pb.JOB_STATE_MEASURING_PERFORMANCE if self.profiling else pb.JOB_STATE_RUNNING_INFERENCE


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
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeAIHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeAIHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def write_client_ini(self, path, token: str | None = None) -> None:
        """A client.ini like `qai-hub configure` writes, pointing at this fake."""
        tok = "" if token == "" else f"api_token = {token or self.token}\n"
        path.write_text(f"[api]\n{tok}api_url = {self.url}\nweb_url = {self.url}\nverbose = True\n")

    # -- counters -------------------------------------------------------------------------------

    def jobs_of(self, kind: str) -> list[FakeJob]:
        with self.lock:
            return [j for j in self.jobs.values() if j.kind == kind]

    def count(self, method: str, path: str, status: int | None = None) -> int:
        """Requests the fake answered for ``method path`` (with ``status``, when given)."""
        with self.lock:
            return sum(1 for m, p, s in self.requests if m == method and p == path
                       and (status is None or s == status))

    # -- helpers used by the handler ------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return prefix + uuid.uuid4().hex[:8]

    def find_devices(self, name: str, os_spec: str, attrs: list[str], select: bool) -> list[FakeDevice]:
        from packaging.version import Version

        def os_ok(v: str) -> bool:
            if not os_spec:
                return True
            if os_spec.startswith("["):
                lo, hi = os_spec[1:-1].split(",")
                return (not lo or Version(v) >= Version(lo)) and (not hi or Version(v) < Version(hi))
            return v == os_spec

        hits = [d for d in self.devices if (not name or d.name == name) and os_ok(d.os)
                and all(a in d.attributes for a in attrs)]
        if select and hits:
            hits = [max(hits, key=lambda d: Version(d.os))]
        return hits

    def device_pb(self, d: FakeDevice) -> pb.Device:
        return pb.Device(name=d.name, os=d.os, attributes=d.attributes, soc_description=d.soc)

    def model_pb(self, model_id: str) -> pb.Model:
        m = self.models[model_id]
        out = pb.Model(model_id=model_id, name=m["name"], model_type=m["type"], creation_time=_ts(m["created"]),
                       file_upload_complete=m["complete"], is_directory=m.get("is_directory", False),
                       producer_id=m.get("producer", ""))
        for k, v in m.get("metadata", {}).items():
            out.metadata.entries[k] = v
        return out

    def job_pb(self, job: FakeJob, now: float) -> pb.Job:
        state = job.state(now)
        failed = state == pb.JOB_STATE_FAILED
        reason = job.failure[1] if failed and job.failure else ""
        model = self.model_pb(job.model_id)
        if job.kind == "compile":
            inner = pb.CompileJob(compile_job_id=job.id, model=model, job_state=state,
                                  device=self.device_pb(job.device), name=job.name, options=job.options,
                                  failure_reason=reason, creation_time=_ts(job.created))
            inner.devices.devices.append(self.device_pb(job.device))
            inner.target_model.CopyFrom(self.model_pb(job.target_model_id))
            out = pb.Job(compile_job=inner, hub_version="aihub-fake-0.56")
        else:
            inner = pb.InferenceJob(inference_job_id=job.id, model=model, job_state=state,
                                    device=self.device_pb(job.device), name=job.name, options=job.options,
                                    failure_reason=reason, creation_time=_ts(job.created),
                                    is_profiling_on=job.profiling)
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
        return pb.Dataset(dataset_id=dataset_id, name=d["name"], creation_time=_ts(d["created"]),
                          expiration_time=_ts(d["created"] + 30 * 86400), file_upload_complete=d["complete"])

    def profile_detail(self, job: FakeJob) -> pb.ProfileDetail:

        rng = np.random.default_rng(int(job.id[1:], 16))
        opts = _parse_options(job.options)
        n = int(opts.get("max_profiler_iterations", 100))
        dev = job.device
        times = np.maximum(dev.base_ms * 0.8, rng.normal(dev.base_ms, dev.base_ms * 0.03, n)) * 1000
        if dev.cpu_fallback:
            times = times * 4
        mb = 1024 * 1024
        detail = pb.ProfileDetail(
            major_version=1, minor_version=2, execution_time=int(np.median(times)),
            after_execution_peak_memory=40 * mb, cold_load_time=int(dev.base_ms * 90_000),
            warm_load_time=int(dev.base_ms * 12_000), after_cold_load_peak_memory=60 * mb,
            after_warm_load_peak_memory=45 * mb, all_execution_times=[int(t) for t in times],
            all_cold_load_times=[int(dev.base_ms * 90_000)], all_warm_load_times=[int(dev.base_ms * 12_000)] * 5,
        )
        for mem, lo, hi in ((detail.execution_memory, 12, 40), (detail.cold_load_memory, 30, 60),
                            (detail.warm_load_memory, 20, 45)):
            mem.increase.lower, mem.increase.upper = lo * mb // 2, hi * mb // 2
            mem.peak.lower, mem.peak.upper = lo * mb, hi * mb
        layers = self.source_layers(job.model_id)
        per_layer = float(np.median(times)) / max(1, len(layers))
        for i, (name, op_type) in enumerate(layers):
            on_cpu = dev.cpu_fallback and op_type not in ("Add",) or op_type in ("Gather",)
            detail.layer_details.append(pb.LayerDetail(
                name=name or f"layer_{i}", layer_type_name=op_type, id=str(i),
                compute_unit=pb.COMPUTE_UNIT_CPU if on_cpu else pb.COMPUTE_UNIT_NPU,
                execution_time=int(per_layer * (3 if on_cpu else 1)), delegate_name="QNN" if not on_cpu else ""))
        detail.tool_versions.append(pb.ToolVersion(name="QAIRT", version=self.qairt_version))
        return detail

    def source_layers(self, target_model_id: str) -> list[tuple[str, str]]:
        """(name, op type) of each layer of the model a compile job started from: the ONNX
        graph's nodes, or a ViT-shaped stand-in for an ExportedProgram."""
        import onnx

        source = self.models[self.models[target_model_id]["source"]]
        if source["type"] == pb.MODEL_TYPE_ONNX:
            return [(n.name, n.op_type) for n in onnx.load_from_string(source["data"]).graph.node]
        block = ["LayerNormalization", "MatMul", "Gather", "MatMul", "Softmax", "MatMul", "Add",
                 "LayerNormalization", "MatMul", "Gelu", "MatMul", "Add"]
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
        outputs = []
        for batch in batches:
            y = sess.run([out_name], dict(zip(names, batch, strict=True)))[0]
            if job.device.output_noise:
                y = y + np.float32(job.device.output_noise)
            outputs.append(y.astype(np.float32))
        buf = io.BytesIO()
        with h5py.File(buf, "w") as h5f:
            dataset_entries_to_h5({out_name: outputs}, h5f)
        ds_id = self._new_id("d")
        self.datasets[ds_id] = {"name": "outputs", "created": time.time(), "complete": True,
                                "data": buf.getvalue()}
        return ds_id


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAIHub
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    # -- plumbing -------------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", ctype: str = PB, headers: dict[str, str] | None = None):
        path = urlparse(self.path).path
        with self.fake.lock:
            self.fake.requests.append((self.command, path, status))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _pb(self, msg, status: int = 200):
        self._send(status, msg.SerializeToString())

    def _error(self, status: int, detail: str):
        self._send(status, json.dumps({"detail": detail}).encode(), "application/json")

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"token {self.fake.token}"

    def _route(self, method: str):
        body = self._body()
        if self.fake.request_latency_s:
            time.sleep(self.fake.request_latency_s)
        url = urlparse(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        try:
            if parts[:1] == ["blob"]:  # the upload/download URLs the API hands out
                return self._blob(method, parts[1:], body)
            if parts[:2] != ["api", "v1"]:
                return self._error(404, "Not found.")
            if not self._authorized():
                return self._error(401, "Invalid token.")
            with self.fake.lock:
                return self._api(method, parts[2:], query, body)
        except Exception as exc:  # noqa: BLE001 - a fake's own bug shows up as a 500 with its text
            import traceback

            traceback.print_exc()
            return self._error(500, f"fake hub error: {exc}")

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    def do_PATCH(self):
        self._route("PATCH")

    # -- upload / download URLs -----------------------------------------------------------------

    def _blob(self, method: str, parts: list[str], body: bytes):
        fake = self.fake
        with fake.lock:
            if method == "PUT" and parts[0] == "model":  # one part of a multipart model upload
                model_id, index = parts[1], int(parts[2])
                if fake.fail_upload_parts > 0:
                    fake.fail_upload_parts -= 1
                    return self._send(500, b"<Error><Code>InternalError</Code></Error>", "application/xml")
                fake.models[model_id].setdefault("parts", {})[index] = body
                etag = f'"{uuid.uuid5(uuid.NAMESPACE_OID, str(len(body)) + model_id).hex}-{index}"'
                return self._send(200, b"", "text/plain", {"ETag": etag})
            if method == "POST" and parts[0] == "dataset":  # a form upload (S3-style POST)
                msg = BytesParser(policy=HTTP).parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
                files = [p for p in msg.iter_parts() if p.get_param("name", header="content-disposition") == "file"]
                fake.datasets[parts[1]]["data"] = files[0].get_payload(decode=True)
                return self._send(204, b"", "text/plain")
            if method == "GET" and parts[0] == "model":
                m = fake.models[parts[1]]
                data = m["data"] if "data" in m else fake.models[m["source"]]["data"]
                return self._send(200, data, "application/octet-stream")
            if method == "GET" and parts[0] == "dataset":
                return self._send(200, fake.datasets[parts[1]]["data"], "application/octet-stream")
        return self._error(404, "Not found.")

    # -- the API --------------------------------------------------------------------------------

    def _api(self, method: str, p: list[str], q: dict[str, list[str]], body: bytes):
        fake, now = self.fake, time.time()
        if method == "GET" and p == ["devices"]:
            found = fake.find_devices(q.get("name", [""])[0], q.get("os", [""])[0], q.get("attributes", []),
                                      q.get("select", ["False"])[0] == "True")
            return self._pb(pb.DeviceList(devices=[fake.device_pb(d) for d in found], total_query_count=len(found)))

        if p == ["models"] and method == "POST":
            m = pb.Model()
            m.ParseFromString(body)
            model_id = fake._new_id("m")
            fake.models[model_id] = {"name": m.name, "type": m.model_type, "created": now, "complete": False,
                                     "is_directory": m.is_directory}
            return self._pb(pb.CreateUpdateResponse(id=model_id, creation_time=_ts(now)))
        if p[:1] == ["models"] and len(p) >= 2 and p[1] in fake.models:
            model_id = p[1]
            if len(p) == 2 and method == "GET":
                return self._pb(fake.model_pb(model_id))
            if p[2:] == ["multipart_upload"] and method == "GET":
                size = int(q["file_size"][0])
                n = max(1, -(-size // fake.max_part_size))
                urls = [f"{fake.url}/blob/model/{model_id}/{i}" for i in range(n)]
                return self._pb(pb.FileUploadResponse(multipart_url=pb.FileMultipartUploadURL(
                    urls=urls, upload_id=fake._new_id("u"), max_part_size=fake.max_part_size)))
            if p[2:] == ["multipart_upload"] and method == "POST":
                done = pb.FileMultipartUploadComplete()
                done.ParseFromString(body)
                m = fake.models[model_id]
                parts = m.pop("parts", {})
                if len(parts) != len(done.etags):
                    return self._error(400, f"expected {len(done.etags)} parts, got {len(parts)}")
                m["data"] = b"".join(parts[i] for i in sorted(parts))
                m["complete"] = True
                return self._pb(pb.CreateUpdateResponse(id=model_id, creation_time=_ts(m["created"])))
            if p[2:] == ["download"] and method == "GET":
                name = RUNTIMES.get(fake.models[model_id].get("runtime", ""), (0, "model.onnx"))[1]
                return self._pb(pb.FileDownloadResponse(url=pb.FileDownloadURL(
                    url=f"{fake.url}/blob/model/{model_id}", filename=name)))
        if p[:1] == ["models"]:
            return self._error(404, "Model not found.")

        if p == ["datasets"] and method == "POST":
            d = pb.Dataset()
            d.ParseFromString(body)
            ds_id = fake._new_id("d")
            fake.datasets[ds_id] = {"name": d.name, "created": now, "complete": False}
            return self._pb(pb.CreateUpdateResponse(id=ds_id, creation_time=_ts(now),
                                                    expiration_time=_ts(now + 30 * 86400)))
        if p[:1] == ["datasets"] and len(p) >= 2 and p[1] in fake.datasets:
            ds_id = p[1]
            if len(p) == 2 and method == "GET":
                return self._pb(fake.dataset_pb(ds_id))
            if len(p) == 2 and method == "PATCH":
                fake.datasets[ds_id]["complete"] = True
                import h5py
                from qai_hub.util.dataset_entries_converters import h5_to_dataset_entries

                with h5py.File(io.BytesIO(fake.datasets[ds_id]["data"]), "r") as h5f:
                    fake.uploaded_inputs.append(h5_to_dataset_entries(h5f))
                return self._pb(pb.CreateUpdateResponse(id=ds_id))
            if p[2:] == ["upload_url"]:
                return self._pb(pb.FileUploadResponse(url=pb.FileUploadURL(
                    url=f"{fake.url}/blob/dataset/{ds_id}", file_field_name="file", fields={"key": ds_id})))
            if p[2:] == ["download_data"]:
                return self._pb(pb.FileDownloadResponse(url=pb.FileDownloadURL(
                    url=f"{fake.url}/blob/dataset/{ds_id}", filename=f"{ds_id}.h5")))
        if p[:1] == ["datasets"]:
            return self._error(404, "Dataset not found.")

        if p == ["jobs"] and method == "POST":
            if fake.rate_limit_job_posts > 0:
                fake.rate_limit_job_posts -= 1
                return self._send(429, json.dumps({"detail": "Request was throttled. Expected available in 1 second."})
                                  .encode(), "application/json", {"Retry-After": "1"})
            return self._create_job(body, now)
        if p[:1] == ["jobs"] and len(p) >= 2:
            job = fake.jobs.get(p[1])
            if job is None:
                return self._error(404, "Job not found.")
            if len(p) == 2 and method == "GET":
                return self._pb(fake.job_pb(job, now))
            if p[2:] == ["result"]:
                if job.state(now) != pb.JOB_STATE_DONE:
                    return self._error(404, "Job results are not available.")
                if job.kind == "compile":
                    return self._pb(pb.JobResult(compile_job_result=pb.CompileJobResult(compile_job_id=job.id)))
                res = pb.InferenceJobResult(inference_job_id=job.id)
                if job.profiling:
                    res.detail.CopyFrom(fake.profile_detail(job))
                if job.dataset_id:
                    if not job.output_dataset_id:
                        job.output_dataset_id = fake.run_inference(job)
                    res.output_dataset_id = job.output_dataset_id
                return self._pb(pb.JobResult(inference_job_result=res))
            if p[2:] == ["download_compiled_model"]:
                if job.state(now) != pb.JOB_STATE_DONE:
                    return self._error(404, "The compiled model is not available.")
                name = RUNTIMES[fake.models[job.target_model_id]["runtime"]][1]
                return self._pb(pb.FileDownloadResponse(url=pb.FileDownloadURL(
                    url=f"{fake.url}/blob/model/{job.target_model_id}", filename=name)))
        return self._error(404, "Not found.")

    def _create_job(self, body: bytes, now: float):
        fake = self.fake
        job_pb = pb.Job()
        job_pb.ParseFromString(body)
        kind = job_pb.WhichOneof("job")
        inner = getattr(job_pb, kind)
        try:
            options = _parse_options(inner.options)
        except ValueError as exc:
            return self._error(400, f"Invalid options: {exc}")
        for name, message in fake.reject_options.items():
            if name in options:
                return self._error(400, message)
        if inner.model.model_id not in fake.models:
            return self._error(400, f"Model {inner.model.model_id} does not exist.")
        dev_pb = inner.devices.devices[0] if kind == "compile_job" else inner.device
        found = fake.find_devices(dev_pb.name, dev_pb.os, list(dev_pb.attributes), True)
        if not found:
            return self._error(400, f"Device {dev_pb.name} is not available.")
        device = found[0]
        job_id = fake._new_id("j")
        short = "compile" if kind == "compile_job" else "inference"
        job = FakeJob(id=job_id, kind=short, device=device, model_id=inner.model.model_id, options=inner.options,
                      name=inner.name, created=now,
                      duration=fake.job_seconds_by_device.get(device.name, fake.job_seconds),
                      failure=fake.fail_jobs.get(("profile" if getattr(inner, "is_profiling_on", False) else short,
                                                   device.name)))
        if kind == "compile_job":
            runtime = options.get("target_runtime", "tflite")
            if runtime not in RUNTIMES:
                return self._error(400, f"Invalid value for --target_runtime: {runtime!r}")
            target_id = fake._new_id("m")
            fake.models[target_id] = {"name": f"{inner.name}.{RUNTIMES[runtime][1].split('.')[-1]}",
                                      "type": RUNTIMES[runtime][0], "created": now, "complete": True,
                                      "producer": job_id, "source": inner.model.model_id, "runtime": runtime,
                                      "metadata": {pb.MODEL_METADATA_KEY_QAIRT_SDK_VERSION: fake.qairt_version}}
            job.target_model_id = target_id
        else:
            job.profiling = inner.is_profiling_on
            job.dataset_id = inner.dataset.dataset_id
        fake.jobs[job_id] = job
        return self._pb(pb.CreateUpdateResponse(id=job_id, creation_time=_ts(now)))
