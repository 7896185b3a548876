"""The fake AI Hub's HTTP side: the API the ``qai_hub`` client calls (devices, models,
datasets, jobs; protobuf bodies) and the upload and download URLs it hands out."""

from __future__ import annotations

import io
import json
import time
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlparse

from qai_hub import public_api_pb2 as pb

from tests.support.fake_aihub.records import PB, RUNTIMES, FakeJob, parse_options, ts

if TYPE_CHECKING:  # pragma: no cover
    from tests.support.fake_aihub import FakeAIHub


class HubHandler(BaseHTTPRequestHandler):
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

    def _send(
        self, status: int, body: bytes = b"", ctype: str = PB, headers: dict[str, str] | None = None
    ):
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
                    return self._send(
                        500, b"<Error><Code>InternalError</Code></Error>", "application/xml"
                    )
                fake.models[model_id].setdefault("parts", {})[index] = body
                etag = f'"{uuid.uuid5(uuid.NAMESPACE_OID, str(len(body)) + model_id).hex}-{index}"'
                return self._send(200, b"", "text/plain", {"ETag": etag})
            if method == "POST" and parts[0] == "dataset":  # a form upload (S3-style POST)
                msg = BytesParser(policy=HTTP).parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
                )
                files = [
                    p
                    for p in msg.iter_parts()
                    if p.get_param("name", header="content-disposition") == "file"
                ]
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
            found = fake.find_devices(
                q.get("name", [""])[0],
                q.get("os", [""])[0],
                q.get("attributes", []),
                q.get("select", ["False"])[0] == "True",
            )
            return self._pb(
                pb.DeviceList(
                    devices=[fake.device_pb(d) for d in found], total_query_count=len(found)
                )
            )
        routes = {"models": self._models, "datasets": self._datasets, "jobs": self._jobs}
        if p[:1] and p[0] in routes:
            return routes[p[0]](method, p[1:], q, body, now)
        return self._error(404, "Not found.")

    def _models(self, method: str, p: list[str], q: dict[str, list[str]], body: bytes, now: float):
        fake = self.fake
        if not p and method == "POST":
            m = pb.Model()
            m.ParseFromString(body)
            model_id = fake._new_id("m")
            fake.models[model_id] = {
                "name": m.name,
                "type": m.model_type,
                "created": now,
                "complete": False,
                "is_directory": m.is_directory,
            }
            return self._pb(pb.CreateUpdateResponse(id=model_id, creation_time=ts(now)))
        if not p or p[0] not in fake.models:
            return self._error(404, "Model not found.")
        model_id, rest = p[0], p[1:]
        if not rest and method == "GET":
            return self._pb(fake.model_pb(model_id))
        if rest == ["multipart_upload"] and method == "GET":
            size = int(q["file_size"][0])
            n = max(1, -(-size // fake.max_part_size))
            urls = [f"{fake.url}/blob/model/{model_id}/{i}" for i in range(n)]
            return self._pb(
                pb.FileUploadResponse(
                    multipart_url=pb.FileMultipartUploadURL(
                        urls=urls, upload_id=fake._new_id("u"), max_part_size=fake.max_part_size
                    )
                )
            )
        if rest == ["multipart_upload"] and method == "POST":
            return self._complete_upload(model_id, body)
        if rest == ["download"] and method == "GET":
            name = RUNTIMES.get(fake.models[model_id].get("runtime", ""), (0, "model.onnx"))[1]
            return self._pb(
                pb.FileDownloadResponse(
                    url=pb.FileDownloadURL(url=f"{fake.url}/blob/model/{model_id}", filename=name)
                )
            )
        return self._error(404, "Model not found.")

    def _complete_upload(self, model_id: str, body: bytes):
        done = pb.FileMultipartUploadComplete()
        done.ParseFromString(body)
        m = self.fake.models[model_id]
        parts = m.pop("parts", {})
        if len(parts) != len(done.etags):
            return self._error(400, f"expected {len(done.etags)} parts, got {len(parts)}")
        m["data"] = b"".join(parts[i] for i in sorted(parts))
        m["complete"] = True
        return self._pb(pb.CreateUpdateResponse(id=model_id, creation_time=ts(m["created"])))

    def _datasets(
        self, method: str, p: list[str], q: dict[str, list[str]], body: bytes, now: float
    ):
        fake = self.fake
        if not p and method == "POST":
            d = pb.Dataset()
            d.ParseFromString(body)
            ds_id = fake._new_id("d")
            fake.datasets[ds_id] = {"name": d.name, "created": now, "complete": False}
            return self._pb(
                pb.CreateUpdateResponse(
                    id=ds_id, creation_time=ts(now), expiration_time=ts(now + 30 * 86400)
                )
            )
        if not p or p[0] not in fake.datasets:
            return self._error(404, "Dataset not found.")
        ds_id, rest = p[0], p[1:]
        if not rest and method == "GET":
            return self._pb(fake.dataset_pb(ds_id))
        if not rest and method == "PATCH":
            fake.datasets[ds_id]["complete"] = True
            import h5py
            from qai_hub.util.dataset_entries_converters import h5_to_dataset_entries

            with h5py.File(io.BytesIO(fake.datasets[ds_id]["data"]), "r") as h5f:
                fake.uploaded_inputs.append(h5_to_dataset_entries(h5f))
            return self._pb(pb.CreateUpdateResponse(id=ds_id))
        if rest == ["upload_url"]:
            return self._pb(
                pb.FileUploadResponse(
                    url=pb.FileUploadURL(
                        url=f"{fake.url}/blob/dataset/{ds_id}",
                        file_field_name="file",
                        fields={"key": ds_id},
                    )
                )
            )
        if rest == ["download_data"]:
            return self._pb(
                pb.FileDownloadResponse(
                    url=pb.FileDownloadURL(
                        url=f"{fake.url}/blob/dataset/{ds_id}", filename=f"{ds_id}.h5"
                    )
                )
            )
        return self._error(404, "Dataset not found.")

    def _jobs(self, method: str, p: list[str], q: dict[str, list[str]], body: bytes, now: float):
        fake = self.fake
        if not p and method == "POST":
            if fake.rate_limit_job_posts > 0:
                fake.rate_limit_job_posts -= 1
                return self._send(
                    429,
                    json.dumps(
                        {"detail": "Request was throttled. Expected available in 1 second."}
                    ).encode(),
                    "application/json",
                    {"Retry-After": "1"},
                )
            return self._create_job(body, now)
        if not p:
            return self._error(404, "Not found.")
        job = fake.jobs.get(p[0])
        if job is None:
            return self._error(404, "Job not found.")
        rest = p[1:]
        if not rest and method == "GET":
            return self._pb(fake.job_pb(job, now))
        if rest == ["result"]:
            return self._job_result(job, now)
        if rest == ["download_compiled_model"]:
            if job.state(now) != pb.JOB_STATE_DONE:
                return self._error(404, "The compiled model is not available.")
            name = RUNTIMES[fake.models[job.target_model_id]["runtime"]][1]
            return self._pb(
                pb.FileDownloadResponse(
                    url=pb.FileDownloadURL(
                        url=f"{fake.url}/blob/model/{job.target_model_id}", filename=name
                    )
                )
            )
        return self._error(404, "Not found.")

    def _job_result(self, job: FakeJob, now: float):
        if job.state(now) != pb.JOB_STATE_DONE:
            return self._error(404, "Job results are not available.")
        if job.kind == "compile":
            return self._pb(
                pb.JobResult(compile_job_result=pb.CompileJobResult(compile_job_id=job.id))
            )
        res = pb.InferenceJobResult(inference_job_id=job.id)
        if job.profiling:
            res.detail.CopyFrom(self.fake.profile_detail(job))
        if job.dataset_id:
            if not job.output_dataset_id:
                job.output_dataset_id = self.fake.run_inference(job)
            res.output_dataset_id = job.output_dataset_id
        return self._pb(pb.JobResult(inference_job_result=res))

    def _create_job(self, body: bytes, now: float):
        fake = self.fake
        job_pb = pb.Job()
        job_pb.ParseFromString(body)
        kind = job_pb.WhichOneof("job")
        inner = job_pb.compile_job if kind == "compile_job" else job_pb.inference_job
        try:
            options = parse_options(inner.options)
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
        job = FakeJob(
            id=job_id,
            kind=short,
            device=device,
            model_id=inner.model.model_id,
            options=inner.options,
            name=inner.name,
            created=now,
            duration=fake.job_seconds_by_device.get(device.name, fake.job_seconds),
            failure=fake.fail_jobs.get(
                (
                    "profile" if kind == "inference_job" and inner.is_profiling_on else short,
                    device.name,
                )
            ),
        )
        if kind == "compile_job":
            runtime = options.get("target_runtime", "tflite")
            if runtime not in RUNTIMES:
                return self._error(400, f"Invalid value for --target_runtime: {runtime!r}")
            target_id = fake._new_id("m")
            fake.models[target_id] = {
                "name": f"{inner.name}.{RUNTIMES[runtime][1].split('.')[-1]}",
                "type": RUNTIMES[runtime][0],
                "created": now,
                "complete": True,
                "producer": job_id,
                "source": inner.model.model_id,
                "runtime": runtime,
                "metadata": {pb.MODEL_METADATA_KEY_QAIRT_SDK_VERSION: fake.qairt_version},
            }
            job.target_model_id = target_id
            job.input_specs = {
                t.name: list(t.tensor_type.shape) for t in inner.tensor_type_list.types
            }
            free = fake.free_dimensions(inner.model.model_id)
            if free and not job.input_specs and job.failure is None:
                # what the hub does with a dynamic shape it was given no fixed size for
                job.failure = (
                    pb.JOB_FAILURE_TYPE_INVALID_INPUTS,
                    f"Model has dynamic input shapes ({', '.join(free)}); specify input_specs "
                    "with a fixed shape for every input.",
                )
        else:
            job.profiling = inner.is_profiling_on
            job.dataset_id = inner.dataset.dataset_id
        fake.jobs[job_id] = job
        return self._pb(pb.CreateUpdateResponse(id=job_id, creation_time=ts(now)))
