"""The hub jobs of one run, followed cell by cell: a compile job per device, then the
profile and/or inference job that runs the compiled model there.

Every job id is written to the :class:`JobJournal` the moment the hub returns it; a re-run
of the same artifact, device, runtime and options picks the jobs up (running or done)
instead of resubmitting. A job that fails is recorded with the hub's text and classified
(infrastructure or model) and never stops the other devices.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from harness.artifact import MANIFEST, Artifact, ArtifactError, path_size, sha256_path
from harness.rounds import round_settings
from harness.target import Device, ProfileSettings, TargetError
from targets.aihub import connection
from targets.aihub.inputs import first_output, input_name, input_specs, inputs_fingerprint
from targets.aihub.journal import JobJournal

# JobFailureType names (public_api.proto) that mean the model, not the service, is at fault.
MODEL_FAILURES = {
    "UNSUPPORTED",
    "MODEL_UNKNOWN",
    "MODEL_CORRUPT",
    "MODEL_INVALID",
    "QNN_TOOL_ERROR",
    "INVALID_INPUTS",
    "INVALID_ARGUMENT",
    "RUNTIME_OUT_OF_MEMORY",
    "RUNTIME_DEVICE_OOM",
    "RUNTIME_CRASH",
    "QNN_VERSION_MISMATCH",
    "DSP_VERSION_MISMATCH",
}
INFRA_WORDS = (
    "device",
    "timed out",
    "timeout",
    "unavailable",
    "internal",
    "try again",
    "busy",
    "provision",
    "disconnect",
    "throttl",
)


def classify_failure(failure_type: str, reason: str) -> str:
    """'model' or 'infrastructure' for a failed job, from the hub's failure type (and its
    text when the type says nothing)."""
    kind = failure_type.removeprefix("JOB_FAILURE_TYPE_")
    if kind in MODEL_FAILURES:
        return "model"
    if kind and kind not in ("UNSPECIFIED", "UNKNOWN", "SUCCESS"):
        return "infrastructure"
    return "infrastructure" if any(w in reason.lower() for w in INFRA_WORDS) else "model"


def profile_stages(settings: ProfileSettings) -> tuple[str, ...]:
    """The profile stages of a cell: one job, or one a round ("profile#1" ... "profile#R"),
    all submitted at once."""
    if settings.rounds <= 1:
        return ("profile",)
    return tuple(f"profile#{k}" for k in range(1, settings.rounds + 1))


def fingerprint(*parts: Any) -> str:
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


@dataclass(frozen=True)
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
    inference_options: str = ""  # the profile's compute unit and options, without the profiler


@dataclass
class Cell:
    """One device's part of a run, filled in while the run lasts."""

    device: Device
    compile_key: str
    compile: HubJob | None = None
    compiled: Artifact | None = None
    # "profile" (or a round's, "profile#1" ... "profile#R") / "inference"
    jobs: dict[str, HubJob] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, TargetError] = field(default_factory=dict)  # a follower stage failed
    error: TargetError | None = None  # the cell failed as a whole (compile, device)
    notes: list[str] = field(default_factory=list)
    done: bool = False
    results_wanted: tuple[str, ...] = ()  # "profile" and/or "inference", after the compile


class JobFollower:
    """Moves cells on, one step at a time (a worker thread per cell and round): submit or
    pick up a job, poll it, fetch its result. ``call`` is the target's retrying call into the
    client, ``say`` its progress line."""

    def __init__(
        self,
        client: Any,
        journal: JobJournal,
        cache_dir: Path,
        call: Callable[..., Any],
        say: Callable[[str, str], None],
    ):
        self.client, self.journal, self.cache_dir = client, journal, cache_dir
        self._call, self._say = call, say

    def step(self, cell: Cell, plan: Plan, model: Any) -> None:
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
                cell,
                "compile",
                cell.compile_key,
                lambda: self.client.submit_compile_job(
                    model,
                    device=hub_device,
                    name=f"vitbench {plan.artifact.path.name}",
                    input_specs=input_specs(plan.artifact),
                    options=plan.compile_options,
                    retry=False,
                ),
            )
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
        if stage.startswith("profile"):
            cell.results[stage] = self._call(
                job.handle.download_profile, what=f"{who}: profile {job.id}"
            )
        else:
            out = self._call(job.handle.download_output_data, what=f"{who}: outputs of {job.id}")
            cell.results[stage] = first_output(out, plan.artifact)
        self._say(who, f"{stage} job {job.id} done")

    def _follower(
        self, cell: Cell, plan: Plan, stage: str, target_model: Any, hub_device: Any
    ) -> tuple[str, Callable[[], Any]]:
        """The journal key and the submission of a job that runs the compiled model."""
        name = f"vitbench {plan.artifact.path.name}"
        submit = partial(
            self.client.submit_inference_job, target_model, device=hub_device, retry=False
        )
        # a measurement is keyed by its session too: a new run submits new jobs, and each
        # round ("profile#2") its own, keyed as when the rounds are asked for one by one
        settings = plan.settings
        if stage.startswith("profile#"):
            settings = round_settings(settings, int(stage.partition("#")[2]) - 1)
        session = f"|{settings.session}" if settings.session else ""
        if stage.startswith("profile"):
            key = f"{cell.compile_key}|profile|{fingerprint(plan.profile_options)}{session}"
            return key, partial(submit, name=name, options=plan.profile_options, profile=True)
        key = (
            f"{cell.compile_key}|inference|{fingerprint(plan.inference_options)}|"
            f"{inputs_fingerprint(plan.inputs)}{session}"
        )
        data = {input_name(plan.artifact): list(plan.inputs)}
        return key, partial(
            submit,
            inputs=data,
            name=f"{name} parity",
            options=plan.inference_options,
            profile=False,
        )

    def _ensure_job(self, cell: Cell, stage: str, key: str, submit: Callable[[], Any]) -> HubJob:
        """The journal's job for (key, stage) when the hub still has it and it did not fail
        on the hub's side; otherwise a new one, journaled the moment its id exists."""
        who = cell.device.name
        kind = stage.partition("#")[0]  # a round's profile job is journaled as a profile job
        job_id = self.journal.get(key, kind)
        if job_id:
            resumed = self._resume(cell, stage, job_id)
            if resumed is not None:
                return resumed
            self.journal.drop(key, kind)
        handle = self._call(submit, what=f"{who}: submitting the {stage} job")
        self.journal.put(key, kind, handle.job_id)
        self._say(who, f"{stage} job {handle.job_id} submitted: {handle.url}")
        return HubJob(stage, handle.job_id, handle, handle.url, time.monotonic(), False)

    def _resume(self, cell: Cell, stage: str, job_id: str) -> HubJob | None:
        """The journaled job, unless the hub lost it or it failed on the hub's side (a note
        on the cell says which)."""
        who = cell.device.name
        try:
            handle = self._call(self.client.get_job, job_id, what=f"{who}: {stage} job {job_id}")
        except TargetError:
            cell.notes.append(f"{stage} job {job_id} is no longer on AI Hub; resubmitted")
            return None
        status = self._call(handle.get_status, what=f"{who}: {stage} job {job_id}")
        failed_infra = status.failure and (
            self._failure_kind(job_id, status.message or "") == "infrastructure"
        )
        if not failed_infra:
            self._say(who, f"picked up {stage} job {job_id} ({status.code})")
            return HubJob(stage, job_id, handle, handle.url, time.monotonic(), True, status.code)
        cell.notes.append(
            f"{stage} job {job_id} had failed on AI Hub's side "
            f"({connection.one_line(status.message or '')}); resubmitted"
        )
        return None

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
            raise TargetError(
                f"{who}: {job.stage} job {job.id} failed ({kind}): {reason} ({job.url})",
                kind=kind,
                retryable=kind == "infrastructure",
            )
        timeout_s = plan.settings.timeout_s
        if time.monotonic() - job.seen_at > timeout_s:
            raise TargetError(
                f"{who}: {job.stage} job {job.id} still {status.code} after {timeout_s:g} s; "
                "it keeps running on AI Hub: run the same command again to pick up its result "
                f"({job.url})",
                kind="infrastructure",
            )
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
        what = f"{cell.device.name}: downloading the compiled model"
        path = Path(
            self._call(
                api.download_compiled_model, self.client.config, job.id, str(folder), what=what
            )
        )
        target = job.handle.get_target_model()
        meta = self._call(self.client.get_model, target.model_id, what="compiled model").metadata
        aihub = {
            "compile_job_id": job.id,
            "compile_job_url": job.url,
            "target_model_id": target.model_id,
            "runtime": plan.runtime,
            "compute_unit": plan.compute_unit,
            "options": plan.compile_options,
            "device": cell.device.name,
            "device_os": cell.device.os,
            "chipset": cell.device.chipset,
            "qairt_version": meta.get(ModelMetadataKey.QAIRT_SDK_VERSION, ""),
            "hub_version": job.handle.hub_version,
        }
        art = _compiled_artifact(path, plan.artifact, plan.runtime, aihub)
        self._say(cell.device.name, f"compiled model kept in {folder}")
        return art


def _compiled_artifact(
    path: Path, source: Artifact, runtime: str, aihub: dict[str, Any]
) -> Artifact:
    """The compiled model at ``path`` as an artifact of its own, its manifest written."""
    manifest = {
        "file": path.name,
        "format": runtime,
        "sha256": sha256_path(path),
        "size": path_size(path),
        "exporter": "aihub",
        "precision": source.precision,
        "inputs": source.inputs,
        "outputs": source.outputs,
        "source_sha256": source.sha256,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "aihub": aihub,
    }
    art = Artifact(path=path, manifest=manifest)
    art.write_manifest()
    return art
