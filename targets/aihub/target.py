"""The Qualcomm AI Hub target: compile an ONNX or pt2 artifact for a Snapdragon device, then
profile it (an inference job with profiling on) or run seeded inputs through it, on many
devices at once.

Every job id is written to a :class:`JobJournal` the moment the hub returns it; a re-run of
the same artifact, device, runtime and options picks the jobs up (running or done) instead
of resubmitting. A job that fails is recorded with the hub's text and classified
(infrastructure or model) and never stops the other devices.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from harness.artifacts import MANIFEST, Artifact, ArtifactError, path_size, sha256_path
from harness.errors import UserError
from targets.aihub import connection
from targets.aihub.connection import RetryPolicy
from targets.aihub.devices import RUNTIMES, TARGET, select, to_device
from targets.aihub.journal import JobJournal, default_cache_dir
from targets.aihub.profile_data import parse_profile
from targets.base import Device, Profile, ProfileSettings, TargetError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

# What the hub takes as a source model (vitbench formats), with the file suffix it needs.
SOURCE_FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}
DEFAULT_RUNTIME = "tflite"
COMPUTE_UNITS = ("npu", "gpu", "cpu", "all")

# JobFailureType names (public_api.proto) that mean the model, not the service, is at fault.
MODEL_FAILURES = {
    "UNSUPPORTED", "MODEL_UNKNOWN", "MODEL_CORRUPT", "MODEL_INVALID", "QNN_TOOL_ERROR",
    "INVALID_INPUTS", "INVALID_ARGUMENT", "RUNTIME_OUT_OF_MEMORY", "RUNTIME_DEVICE_OOM",
    "RUNTIME_CRASH", "QNN_VERSION_MISMATCH", "DSP_VERSION_MISMATCH",
}
INFRA_WORDS = ("device", "timed out", "timeout", "unavailable", "internal", "try again", "busy",
               "provision", "disconnect", "throttl")


def classify_failure(failure_type: str, reason: str) -> str:
    """'model' or 'infrastructure' for a failed job, from the hub's failure type (and its
    text when the type says nothing)."""
    kind = failure_type.removeprefix("JOB_FAILURE_TYPE_")
    if kind in MODEL_FAILURES:
        return "model"
    if kind and kind not in ("UNSPECIFIED", "UNKNOWN", "SUCCESS"):
        return "infrastructure"
    return "infrastructure" if any(w in reason.lower() for w in INFRA_WORDS) else "model"


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class HubJob:
    """One hub job this run follows."""

    stage: str  # "compile", "profile", "inference"
    id: str
    handle: Any  # qai_hub.CompileJob / InferenceJob
    url: str
    seen_at: float
    resumed: bool
    state: str = "CREATED"


@dataclass
class Plan:
    """What every cell of one run shares."""

    artifact: Artifact
    settings: ProfileSettings
    runtime: str
    compute_unit: str | None
    compile_options: str
    profile_options: str
    want_profile: bool
    inputs: list[Any] | None  # arrays for an inference job (seeded or allowed), or None


@dataclass
class Cell:
    device: Device
    compile_key: str
    compile: HubJob | None = None
    compiled: Artifact | None = None
    jobs: dict[str, HubJob] = field(default_factory=dict)  # "profile" / "inference"
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, TargetError] = field(default_factory=dict)  # a follower stage that failed
    error: TargetError | None = None  # the cell failed as a whole (compile, device)
    notes: list[str] = field(default_factory=list)
    done: bool = False
    results_wanted: tuple[str, ...] = ()  # "profile" and/or "inference", after the compile


class AIHubTarget:
    """Snapdragon phones, laptops and boards through Qualcomm AI Hub."""

    name = TARGET

    def __init__(self, cache_dir: str | Path | None = None, journal: JobJournal | str | Path | None = None,
                 poll_interval_s: float = 10.0, retry: RetryPolicy | None = None,
                 progress: Callable[[str, str], None] | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        if journal is None:
            journal = self.cache_dir / "aihub" / "journal.json"
        self.journal = journal if isinstance(journal, JobJournal) else JobJournal(journal)
        self.poll_interval_s = poll_interval_s
        self.retry = retry or RetryPolicy()
        self.progress = progress
        self._client = None
        self._devices: list[Device] | None = None

    # -- the connection ----------------------------------------------------------------------

    def unavailable_reason(self) -> str:
        try:
            connection.load_config()
        except UserError as exc:
            return str(exc)
        return ""

    @property
    def client(self):
        if self._client is None:
            self._client = connection.connect()
        return self._client

    @property
    def host(self) -> str:
        return urlparse(self.client.config.api_url).netloc or self.client.config.api_url

    def _call(self, fn, *args, what: str, **kwargs):
        return connection.call(fn, *args, what=what, retry=self.retry,
                               on_retry=lambda m: self._say(what.split(":")[0], m), **kwargs)

    def _say(self, who: str, message: str) -> None:
        if self.progress is not None:
            self.progress(who, message)

    # -- devices -----------------------------------------------------------------------------

    def devices(self) -> list[Device]:
        """Every device the hub offers now, with chipset, OS and the runtimes it takes."""
        if self._devices is None:
            from qai_hub import public_rest_api as api

            pb = self._call(api.get_device_list, self.client.config, what="listing devices")
            self._devices = sorted((to_device(d.name, d.os, list(d.attributes), d.soc_description)
                                    for d in pb.devices), key=lambda d: (d.name, d.os))
        return self._devices

    def select(self, selectors: Sequence[str]) -> list[Device]:
        return select(self.devices(), selectors)

    # -- the Target contract -----------------------------------------------------------------

    def accepts(self, artifact: Artifact) -> bool:
        return artifact.format in SOURCE_FORMATS and artifact.path.suffix == SOURCE_FORMATS[artifact.format]

    def profile(self, artifact: Artifact, device: Device, settings: ProfileSettings) -> Profile:
        (result,) = self.profile_many(artifact, [device], settings)
        if isinstance(result, TargetError):
            raise result
        return result

    def infer(self, artifact: Artifact, device: Device, inputs: list[np.ndarray],
              allow_data_upload: bool = False, settings: ProfileSettings | None = None) -> list[np.ndarray]:
        """Outputs of ``inputs`` run on ``device``. Only vitbench's seeded synthetic inputs
        leave the machine unless ``allow_data_upload`` is given for this run."""
        settings = settings or ProfileSettings()
        allow = allow_data_upload or bool(settings.options.get("allow_data_upload"))
        check_inputs_may_leave(artifact, inputs, allow)
        (cell,) = self._run(artifact, [device], settings, want_profile=False, inputs=list(inputs))
        error = cell.error or cell.failures.get("inference")
        if error is not None:
            raise error
        return cell.results["inference"]

    def profile_many(self, artifact: Artifact, devices: Sequence[Device], settings: ProfileSettings,
                     parity: bool | None = None) -> list[Profile | TargetError]:
        """Profile ``artifact`` on every device at once: all jobs are submitted, then waited
        for together. One result per device, in order: a Profile, or the TargetError that
        says why not (the others still finish). With ``parity`` (or settings.options
        ["parity"]) the artifact's seeded reference inputs also run on each device and the
        parity metrics join the profile."""
        parity = bool(settings.options.get("parity")) if parity is None else parity
        inputs = None
        if parity:
            from harness.parity import REFERENCE_FILE, load_reference

            if not (artifact.folder / REFERENCE_FILE).is_file():
                raise ArtifactError(f"{artifact.folder} has no {REFERENCE_FILE}: parity needs the reference "
                                    "outputs the exporter writes beside the artifact")
            inputs, _ = load_reference(artifact.folder)
        cells = self._run(artifact, devices, settings, want_profile=True, inputs=inputs)
        return [c.error or c.failures.get("profile") or self._profile_of(c, artifact, settings) for c in cells]

    def compile(self, artifact: Artifact, device: Device, settings: ProfileSettings) -> Artifact:
        """The compiled model for ``device`` as an artifact of its own (cached)."""
        (cell,) = self._run(artifact, [device], settings, want_profile=False, inputs=None)
        if cell.error is not None:
            raise cell.error
        assert cell.compiled is not None
        return cell.compiled

    # -- one run: plan, cells, the wait loop --------------------------------------------------

    def check_artifact(self, artifact: Artifact) -> None:
        """Refuse, in one line, an artifact the hub does not take (ExecuTorch .pte, Core ML)."""
        if not self.accepts(artifact):
            raise ArtifactError(
                f"AI Hub does not take {artifact.format} artifacts ({artifact.path.name}); it takes ONNX "
                f"(.onnx) or a PyTorch ExportedProgram (.pt2): export with --format onnx or pt2"
            )
        artifact.verify()

    def _plan(self, artifact: Artifact, settings: ProfileSettings, want_profile: bool,
              inputs: list[Any] | None) -> Plan:
        self.check_artifact(artifact)
        runtime = settings.runtime or DEFAULT_RUNTIME
        if runtime not in RUNTIMES:
            raise UserError(f"unknown AI Hub runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        cu = settings.compute_unit
        if cu is not None:
            cu = cu.lower()
            if not set(cu.split(",")) <= set(COMPUTE_UNITS):
                raise UserError(f"unknown compute unit {settings.compute_unit!r}; choose from {', '.join(COMPUTE_UNITS)}")
        compile_opts = " ".join(filter(None, [f"--target_runtime {runtime}",
                                              f"--compute_unit {cu}" if cu else "",
                                              str(settings.options.get("compile_options", "")).strip()]))
        loop = settings.loop
        profile_opts = " ".join(filter(None, [f"--compute_unit {cu}" if cu else "",
                                              f"--max_profiler_iterations {loop.min_iterations}",
                                              f"--max_profiler_time {max(1, round(loop.min_seconds))}",
                                              str(settings.options.get("profile_options", "")).strip()]))
        return Plan(artifact, settings, runtime, cu, compile_opts, profile_opts, want_profile, inputs)

    def _resolve(self, device: Device) -> Device:
        if device.target == TARGET and "os_version" in device.attributes:
            return device
        return self.select([device.name])[0]

    def _run(self, artifact: Artifact, devices: Sequence[Device], settings: ProfileSettings,
             want_profile: bool, inputs: list[Any] | None) -> list[Cell]:
        plan = self._plan(artifact, settings, want_profile, inputs)
        devices = [self._resolve(d) for d in devices]
        cells = []
        wanted = tuple(s for s, on in (("profile", want_profile), ("inference", inputs is not None)) if on)
        for d in devices:
            key = "|".join([self.host, artifact.sha256, d.name, d.attributes["os_version"], plan.runtime,
                            plan.compute_unit or "", _fingerprint(plan.compile_options)])
            cell = Cell(device=d, compile_key=key, results_wanted=wanted)
            if plan.runtime not in d.attributes.get("runtimes", []):
                cell.error = TargetError(
                    f"{d.name} does not run {plan.runtime} models (it runs {', '.join(d.attributes.get('runtimes', [])) or 'none'})",
                    kind="model", retryable=False)
            cells.append(cell)
        active = [c for c in cells if c.error is None]
        if not active:
            return cells
        model = self._upload(artifact)
        poll = float(settings.options.get("poll_interval_s", self.poll_interval_s))
        with ThreadPoolExecutor(max_workers=min(32, 2 * len(active))) as pool:
            while active:
                for f in [pool.submit(self._step, c, plan, model) for c in active]:
                    f.result()  # HubAuthError and programming errors end the run here
                active = [c for c in active if not c.done and c.error is None]
                if active:
                    time.sleep(poll)
        return cells

    def _upload(self, artifact: Artifact):
        """The hub's model for ``artifact``: uploaded once per sha256, then reused."""
        key = f"{self.host}|upload|{artifact.sha256}"
        model_id = self.journal.get(key, "model")
        if model_id:
            try:
                return self._call(self.client.get_model, model_id, what=f"model {model_id}")
            except TargetError:
                self._say("upload", f"model {model_id} is gone from AI Hub; uploading again")
        self._say("upload", f"uploading {artifact.path.name} ({path_size(artifact.path) / 1e6:.1f} MB)")
        model = self._call(self.client.upload_model, str(artifact.path), name=artifact.path.name,
                           what=f"uploading {artifact.path.name}")
        self.journal.put(key, "model", model.model_id)
        return model

    # -- one cell, one step at a time (run in a worker thread per round) ----------------------

    def _step(self, cell: Cell, plan: Plan, model: Any) -> None:
        try:
            self._advance(cell, plan, model)
        except TargetError as exc:
            cell.error = exc

    def _advance(self, cell: Cell, plan: Plan, model: Any) -> None:
        import qai_hub as hub

        d = cell.device
        hub_device = hub.Device(name=d.name, os=d.attributes["os_version"])
        if cell.compile is None:
            cell.compile = self._ensure_job(
                cell, "compile", cell.compile_key,
                lambda: self.client.submit_compile_job(
                    model, device=hub_device, name=f"vitbench {plan.artifact.path.name}",
                    input_specs=_input_specs(plan.artifact), options=plan.compile_options, retry=False))
        if not self._finished(cell, cell.compile, plan):
            return
        if cell.compiled is None:
            cell.compiled = self._keep_compiled(cell, plan)
        for stage in cell.results_wanted:
            if stage not in cell.results and stage not in cell.failures:
                try:
                    self._advance_follower(cell, plan, stage, hub_device)
                except TargetError as exc:  # this stage failed; the others keep what they have
                    cell.failures[stage] = exc
        cell.done = all(s in cell.results or s in cell.failures for s in cell.results_wanted)

    def _advance_follower(self, cell: Cell, plan: Plan, stage: str, hub_device: Any) -> None:
        """Submit, poll or fetch the profile or inference job that runs the compiled model."""
        job = cell.jobs.get(stage)
        if job is None:
            target_model = cell.compile.handle.get_target_model()
            key, submit = self._follower(cell, plan, stage, target_model, hub_device)
            job = cell.jobs[stage] = self._ensure_job(cell, stage, key, submit)
        if not self._finished(cell, job, plan):
            return
        who = cell.device.name
        if stage == "profile":
            cell.results[stage] = self._call(job.handle.download_profile, what=f"{who}: profile {job.id}")
        else:
            out = self._call(job.handle.download_output_data, what=f"{who}: outputs of {job.id}")
            cell.results[stage] = _first_output(out, plan.artifact)
        self._say(who, f"{stage} job {job.id} done")

    def _follower(self, cell: Cell, plan: Plan, stage: str, target_model: Any,
                  hub_device: Any) -> tuple[str, Callable[[], Any]]:
        """The journal key and the submission of a job that runs the compiled model."""
        name = f"vitbench {plan.artifact.path.name}"
        if stage == "profile":
            key = f"{cell.compile_key}|profile|{_fingerprint(plan.profile_options)}"
            return key, partial(self.client.submit_inference_job, target_model, device=hub_device, name=name,
                                options=plan.profile_options, profile=True, retry=False)
        key = f"{cell.compile_key}|inference|{_inputs_fingerprint(plan.inputs)}"
        data = {_input_name(plan.artifact): list(plan.inputs)}
        return key, partial(self.client.submit_inference_job, target_model, device=hub_device, inputs=data,
                            name=f"{name} parity", profile=False, retry=False)

    def _ensure_job(self, cell: Cell, stage: str, key: str, submit: Callable[[], Any]) -> HubJob:
        """The journal's job for (key, stage) when the hub still has it and it did not fail
        on the hub's side; otherwise a new one, journaled the moment its id exists."""
        who = cell.device.name
        job_id = self.journal.get(key, stage)
        if job_id:
            try:
                handle = self._call(self.client.get_job, job_id, what=f"{who}: {stage} job {job_id}")
            except TargetError:
                handle = None
                cell.notes.append(f"{stage} job {job_id} is no longer on AI Hub; resubmitted")
            if handle is not None:
                status = self._call(handle.get_status, what=f"{who}: {stage} job {job_id}")
                failed_infra = status.failure and self._failure_kind(job_id, status.message or "") == "infrastructure"
                if not failed_infra:
                    self._say(who, f"picked up {stage} job {job_id} ({status.code})")
                    return HubJob(stage, job_id, handle, handle.url, time.monotonic(), True, status.code)
                cell.notes.append(f"{stage} job {job_id} had failed on AI Hub's side "
                                  f"({connection.one_line(status.message or '')}); resubmitted")
            self.journal.drop(key, stage)
        handle = self._call(submit, what=f"{who}: submitting the {stage} job")
        self.journal.put(key, stage, handle.job_id)
        self._say(who, f"{stage} job {handle.job_id} submitted: {handle.url}")
        return HubJob(stage, handle.job_id, handle, handle.url, time.monotonic(), False)

    def _failure_kind(self, job_id: str, reason: str) -> str:
        from qai_hub import public_api_pb2 as pb
        from qai_hub import public_rest_api as api

        job_pb = self._call(api.get_job, self.client.config, job_id, what=f"job {job_id}")
        return classify_failure(pb.JobFailureType.Name(job_pb.failure_type), reason)

    def _finished(self, cell: Cell, job: HubJob, plan: Plan) -> bool:
        """Poll ``job``: True when it succeeded; a failure or a timeout becomes the cell's
        error; False while it runs."""
        who = cell.device.name
        status = self._call(job.handle.get_status, what=f"{who}: {job.stage} job {job.id}")
        if status.code != job.state:
            job.state = status.code
            self._say(who, f"{job.stage} job {job.id}: {status.code}")
        if status.success:
            return True
        if status.failure:
            reason = connection.one_line(status.message or "no reason given")
            kind = self._failure_kind(job.id, reason)
            raise TargetError(f"{who}: {job.stage} job {job.id} failed ({kind}): {reason} ({job.url})",
                              kind=kind, retryable=kind == "infrastructure")
        waited = time.monotonic() - job.seen_at
        if waited > plan.settings.timeout_s:
            raise TargetError(
                f"{who}: {job.stage} job {job.id} still {status.code} after {plan.settings.timeout_s:g} s; "
                f"it keeps running on AI Hub: run the same command again to pick up its result ({job.url})",
                kind="infrastructure")
        return False

    def _keep_compiled(self, cell: Cell, plan: Plan) -> Artifact:
        """The compiled model in the artifact layout (model file + manifest.json), downloaded
        once per compile job."""
        from qai_hub import public_rest_api as api
        from qai_hub.client import ModelMetadataKey

        job = cell.compile
        folder = self.cache_dir / "aihub" / "compiled" / job.id
        if (folder / MANIFEST).is_file():
            try:
                return Artifact.load(folder).verify()
            except ArtifactError:
                pass
        shutil.rmtree(folder, ignore_errors=True)  # a download that died midway
        folder.mkdir(parents=True)
        path = Path(self._call(api.download_compiled_model, self.client.config, job.id, str(folder),
                               what=f"{cell.device.name}: downloading the compiled model"))
        target = job.handle.get_target_model()
        meta = self._call(self.client.get_model, target.model_id, what="compiled model").metadata
        src = plan.artifact
        manifest = {
            "file": path.name, "format": plan.runtime, "sha256": sha256_path(path), "size": path_size(path),
            "exporter": "aihub", "precision": src.precision, "inputs": src.inputs, "outputs": src.outputs,
            "source_sha256": src.sha256, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "aihub": {
                "compile_job_id": job.id, "compile_job_url": job.url, "target_model_id": target.model_id,
                "runtime": plan.runtime, "compute_unit": plan.compute_unit, "options": plan.compile_options,
                "device": cell.device.name, "device_os": cell.device.os, "chipset": cell.device.chipset,
                "qairt_version": meta.get(ModelMetadataKey.QAIRT_SDK_VERSION, ""),
                "hub_version": getattr(job.handle, "hub_version", ""),
            },
        }
        art = Artifact(path=path, manifest=manifest)
        art.write_manifest()
        self._say(cell.device.name, f"compiled model kept in {folder}")
        return art

    # -- results -----------------------------------------------------------------------------

    def _profile_of(self, cell: Cell, artifact: Artifact, settings: ProfileSettings) -> Profile | TargetError:
        from harness.parity import compare, load_reference

        try:
            hp = parse_profile(cell.results["profile"], settings.compute_unit)
        except ValueError as exc:
            return TargetError(f"{cell.device.name}: {exc}", kind="measurement")
        metrics, warnings = dict(hp.metrics), [*hp.warnings, *cell.notes]
        if "inference" in cell.results:
            _, reference = load_reference(artifact.folder)
            parity = compare(reference, cell.results["inference"])
            metrics.update(parity_max_abs=parity.max_abs, parity_cosine=parity.cosine, parity_top1=parity.top1)
            warnings += [f"parity on device: {f}" for f in parity.failures(artifact.precision)]
        elif "inference" in cell.failures:
            warnings.append(f"parity not checked: {cell.failures['inference']}")
        compiled = cell.compiled.manifest["aihub"] if cell.compiled else {}
        jobs = {s: j for s, j in [("compile", cell.compile), *cell.jobs.items()] if j is not None}
        units = dict(hp.units, parity_max_abs="", parity_cosine="", parity_top1="fraction")
        return Profile.from_samples(
            TARGET, cell.device, artifact.sha256, settings.runtime or DEFAULT_RUNTIME, hp.samples_ms,
            metrics=metrics, units={k: v for k, v in units.items() if k in metrics},
            compute_unit=hp.compute_unit, warnings=warnings, settings=settings.to_dict(),
            environment={"device": cell.device.name, "os": cell.device.os, "chipset": cell.device.chipset,
                         "qairt_version": compiled.get("qairt_version", ""),
                         "hub_version": compiled.get("hub_version", "")},
            details={
                "jobs": {s: {"id": j.id, "url": j.url, "resumed": j.resumed} for s, j in jobs.items()},
                "layers": hp.layers,
                "compiled_artifact": str(cell.compiled.path) if cell.compiled else "",
                "compile_options": compiled.get("options", ""),
            },
        )


# -- inputs ---------------------------------------------------------------------------------

def _input_specs(artifact: Artifact) -> dict[str, tuple[tuple[int, ...], str]] | None:
    if not artifact.inputs:
        return None
    return {i["name"]: (tuple(int(s) for s in i["shape"]), i.get("dtype", "float32")) for i in artifact.inputs}


def _input_name(artifact: Artifact) -> str:
    return artifact.inputs[0]["name"] if artifact.inputs else "input"


def _inputs_fingerprint(inputs: list[Any] | None) -> str:
    h = hashlib.sha256()
    for a in inputs or []:
        h.update(str(a.shape).encode() + str(a.dtype).encode() + a.tobytes())
    return h.hexdigest()[:16]


def _first_output(out: dict[str, list[Any]] | None, artifact: Artifact) -> list[Any]:
    if not out:
        raise TargetError("AI Hub returned no outputs for the inference job", kind="infrastructure")
    names = [o.get("name") for o in artifact.outputs]
    key = next((n for n in names if n in out), next(iter(out)))
    return list(out[key])


def check_inputs_may_leave(artifact: Artifact, inputs: Sequence[Any], allow_data_upload: bool) -> None:
    """Only vitbench's seeded synthetic inputs (harness.parity.seeded_inputs) may be sent to
    AI Hub, unless the user allowed data upload for this run."""
    import numpy as np

    from harness.parity import REFERENCE_FILE, seeded_inputs

    if allow_data_upload or not inputs:
        return
    seeds = {0}
    ref = artifact.folder / REFERENCE_FILE
    if ref.is_file():
        with np.load(ref) as z:
            seeds.add(int(z["seed"]))
    shape = np.shape(inputs[0])
    for seed in seeds:
        synthetic = seeded_inputs(shape, len(inputs), seed)
        if all(np.shape(a) == shape and np.array_equal(a, s) for a, s in zip(inputs, synthetic, strict=True)):
            return
    raise UserError("these inputs are not vitbench's seeded synthetic inputs and would be uploaded to AI Hub; "
                    "real images leave this machine only with --allow-data-upload "
                    "(allow_data_upload=True) for this run")
