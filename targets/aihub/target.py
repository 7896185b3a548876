"""The Qualcomm AI Hub target: compile an ONNX or pt2 artifact for a Snapdragon device, then
profile it (an inference job with profiling on) or run seeded inputs through it, on many
devices at once. The jobs of a run are journaled and followed in :mod:`.jobs`; what the hub
reports becomes a Profile here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from harness.artifact import Artifact, ArtifactError, path_size
from harness.errors import UserError
from harness.locks import file_lock
from harness.rounds import merge_rounds, round_settings
from harness.target import Device, Profile, ProfileSettings, Target, TargetError
from targets.aihub import connection
from targets.aihub.connection import RetryPolicy
from targets.aihub.devices import RUNTIMES, TARGET, select, to_device
from targets.aihub.inputs import check_inputs_may_leave
from targets.aihub.jobs import Cell, JobFollower, Plan, fingerprint, profile_stages
from targets.aihub.journal import JobJournal, default_cache_dir
from targets.aihub.profile_data import parse_profile

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

# What the hub takes as a source model (vitbench formats), with the file suffix it needs.
SOURCE_FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}
DEFAULT_RUNTIME = "tflite"
COMPUTE_UNITS = ("npu", "gpu", "cpu", "all")
PARITY_UNITS = {
    "parity_max_abs": "",
    "parity_cosine": "",
    "parity_top1": "fraction",
    "parity_passed": "bool",
}


class AIHubTarget(Target):
    """Snapdragon phones, laptops and boards through Qualcomm AI Hub."""

    name = TARGET
    rounds_at_once = True  # every round's profile job is submitted at once, then waited for

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        journal: JobJournal | str | Path | None = None,
        poll_interval_s: float = 10.0,
        retry: RetryPolicy | None = None,
        progress: Callable[[str, str], None] | None = None,
    ):
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
        return connection.call(
            fn,
            *args,
            what=what,
            retry=self.retry,
            on_retry=lambda m: self._say(what.split(":")[0], m),
            **kwargs,
        )

    def _say(self, who: str, message: str) -> None:
        if self.progress is not None:
            self.progress(who, message)

    # -- devices -----------------------------------------------------------------------------

    def devices(self) -> list[Device]:
        """Every device the hub offers now, with chipset, OS and the runtimes it takes."""
        if self._devices is None:
            from qai_hub import public_rest_api as api

            pb = self._call(api.get_device_list, self.client.config, what="listing devices")
            self._devices = sorted(
                (
                    to_device(d.name, d.os, list(d.attributes), d.soc_description)
                    for d in pb.devices
                ),
                key=lambda d: (d.name, d.os),
            )
        return self._devices

    def pick(self, selectors: Sequence[str]) -> list[Device]:
        """Devices by name, attribute (``chipset:...``) and OS range (the newest OS that
        matches); an unknown selector is refused with the closest names."""
        return select(self.devices(), selectors)

    def select(self, selectors: Sequence[str]) -> tuple[list[Device], list[str]]:
        """:meth:`pick` for the contract: nothing is left unmatched (an unknown selector is
        refused)."""
        return self.pick(selectors), []

    # -- the Target contract -----------------------------------------------------------------

    def accepts(self, artifact: Artifact) -> bool:
        return (
            artifact.format in SOURCE_FORMATS
            and artifact.path.suffix == SOURCE_FORMATS[artifact.format]
        )

    def profile(self, artifact: Artifact, device: Device, settings: ProfileSettings) -> Profile:
        (result,) = self.profile_many(artifact, [device], settings)
        if isinstance(result, TargetError):
            raise result
        return result

    def infer(
        self,
        artifact: Artifact,
        device: Device,
        inputs: list[np.ndarray],
        allow_data_upload: bool = False,
        settings: ProfileSettings | None = None,
    ) -> list[np.ndarray]:
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

    def profile_many(
        self,
        artifact: Artifact,
        devices: Sequence[Device],
        settings: ProfileSettings,
        parity: bool | None = None,
    ) -> list[Profile | TargetError]:
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
                raise ArtifactError(
                    f"{artifact.folder} has no {REFERENCE_FILE}: parity needs the reference "
                    "outputs the exporter writes beside the artifact"
                )
            inputs, _ = load_reference(artifact.folder)
        cells = self._run(artifact, devices, settings, want_profile=True, inputs=inputs)
        return [c.error or self._rounds_of(c, artifact, settings) for c in cells]

    def _rounds_of(
        self, cell: Cell, artifact: Artifact, settings: ProfileSettings
    ) -> Profile | TargetError:
        """The cell's profile: its one profile job's, or its rounds' (every round's job was
        submitted at once) merged. A round that failed fails the cell, with the samples of
        the rounds that did not."""
        if settings.rounds <= 1:
            return cell.failures.get("profile") or self._profile_of(cell, artifact, settings)
        rounds: list[Profile] = []
        failed: TargetError | None = None
        for k, stage in enumerate(profile_stages(settings)):
            one = cell.failures.get(stage) or self._profile_of(
                cell, artifact, round_settings(settings, k), stage, parity=k == 0
            )
            if isinstance(one, TargetError):
                failed = failed or one
            else:
                rounds.append(one)
        if failed is not None:
            failed.samples_ms = [s for p in rounds for s in p.samples_ms] + failed.samples_ms
            return failed
        return merge_rounds(rounds, settings.noise_floor)

    def compile(self, artifact: Artifact, device: Device, settings: ProfileSettings) -> Artifact:
        """The compiled model for ``device`` as an artifact of its own (cached)."""
        (cell,) = self._run(artifact, [device], settings, want_profile=False, inputs=None)
        if cell.error is not None:
            raise cell.error
        assert cell.compiled is not None
        return cell.compiled

    # -- one run: plan, cells, the wait loop --------------------------------------------------

    def parity_precision(self, artifact: Artifact, settings: ProfileSettings | None = None) -> str:
        """A float model on the hub's NPU (HTP) or GPU computes in fp16 whatever the export
        says, so it is judged with the fp16 tolerance; only a CPU-only cell keeps fp32."""
        unit = ((settings.compute_unit if settings else None) or "").lower()
        if artifact.precision == "fp32" and unit != "cpu":
            return "fp16"
        return artifact.precision

    def check_artifact(self, artifact: Artifact) -> None:
        """Refuse, in one line, an artifact the hub does not take (ExecuTorch .pte, Core ML)."""
        if not self.accepts(artifact):
            raise ArtifactError(
                f"AI Hub does not take {artifact.format} artifacts ({artifact.path.name}); it "
                "takes ONNX (.onnx) or a PyTorch ExportedProgram (.pt2): export with --format "
                "onnx or pt2"
            )
        artifact.verify()

    def _plan(
        self,
        artifact: Artifact,
        settings: ProfileSettings,
        want_profile: bool,
        inputs: list[Any] | None,
    ) -> Plan:
        self.check_artifact(artifact)
        runtime = settings.runtime or DEFAULT_RUNTIME
        if runtime not in RUNTIMES:
            raise UserError(
                f"unknown AI Hub runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}"
            )
        cu = settings.compute_unit
        if cu is not None:
            cu = cu.lower()
            if not set(cu.split(",")) <= set(COMPUTE_UNITS):
                raise UserError(
                    f"unknown compute unit {settings.compute_unit!r}; choose from "
                    f"{', '.join(COMPUTE_UNITS)}"
                )
        unit = f"--compute_unit {cu}" if cu else ""

        def opts(*parts: str, stage: str) -> str:
            # the hub's own flags, then what the user adds for this stage (options.STAGE_options)
            extra = str(settings.options.get(f"{stage}_options", "")).strip()
            return " ".join(p for p in (*parts, extra) if p)

        loop = settings.loop
        compile_opts = opts(f"--target_runtime {runtime}", unit, stage="compile")
        profile_opts = opts(
            unit,
            f"--max_profiler_iterations {loop.min_iterations}",
            f"--max_profiler_time {max(1, round(loop.min_seconds))}",
            stage="profile",
        )
        # the inference (parity, accuracy) job runs the profiled model the way it was profiled
        inference_opts = opts(unit, stage="inference")
        return Plan(
            artifact,
            settings,
            runtime,
            cu,
            compile_opts,
            profile_opts,
            want_profile,
            inputs,
            inference_opts,
        )

    def _resolve(self, device: Device) -> Device:
        if device.target == TARGET and "os_version" in device.attributes:
            return device
        return self.pick([device.name])[0]

    def _run(
        self,
        artifact: Artifact,
        devices: Sequence[Device],
        settings: ProfileSettings,
        want_profile: bool,
        inputs: list[Any] | None,
    ) -> list[Cell]:
        plan = self._plan(artifact, settings, want_profile, inputs)
        cells = [self._cell(plan, self._resolve(d)) for d in devices]
        active = [c for c in cells if c.error is None]
        if not active:
            return cells
        model = self._upload(artifact)
        follower = JobFollower(self.client, self.journal, self.cache_dir, self._call, self._say)
        poll = float(settings.options.get("poll_interval_s", self.poll_interval_s))
        with ThreadPoolExecutor(max_workers=min(32, 2 * len(active))) as pool:
            while active:
                for f in [pool.submit(follower.step, c, plan, model) for c in active]:
                    f.result()  # HubAuthError and programming errors end the run here
                active = [c for c in active if not c.done and c.error is None]
                if active:
                    time.sleep(poll)
        return cells

    def _cell(self, plan: Plan, d: Device) -> Cell:
        """A cell for device ``d``; failed at once when the device does not run the runtime."""
        key = "|".join(
            [
                self.host,
                plan.artifact.sha256,
                d.name,
                d.attributes["os_version"],
                plan.runtime,
                plan.compute_unit or "",
                fingerprint(plan.compile_options),
            ]
        )
        wanted = (*(profile_stages(plan.settings) if plan.want_profile else ()),) + (
            ("inference",) if plan.inputs is not None else ()
        )
        runtimes = d.attributes.get("runtimes", [])
        if plan.runtime in runtimes:
            return Cell(device=d, compile_key=key, results_wanted=wanted)
        error = TargetError(
            f"{d.name} does not run {plan.runtime} models "
            f"(it runs {', '.join(runtimes) or 'none'})",
            kind="model",
            retryable=False,
        )
        return Cell(device=d, compile_key=key, results_wanted=wanted, error=error)

    def _upload(self, artifact: Artifact):
        """The hub's model for ``artifact``: uploaded once per sha256, then reused. Cells of
        one artifact (threads, shards, runs side by side) take a lock per hash, so the first
        uploads and the others find its model id in the journal."""
        key = f"{self.host}|upload|{artifact.sha256}"
        with file_lock(self.cache_dir / "aihub" / "locks" / f"upload-{artifact.sha256}.lock"):
            model_id = self.journal.get(key, "model")
            if model_id:
                try:
                    return self._call(self.client.get_model, model_id, what=f"model {model_id}")
                except TargetError:
                    self._say("upload", f"model {model_id} is gone from AI Hub; uploading again")
            size_mb = path_size(artifact.path) / 1e6
            self._say("upload", f"uploading {artifact.path.name} ({size_mb:.1f} MB)")
            model = self._call(
                self.client.upload_model,
                str(artifact.path),
                name=artifact.path.name,
                what=f"uploading {artifact.path.name}",
            )
            self.journal.put(key, "model", model.model_id)
            return model

    # -- results -----------------------------------------------------------------------------

    def _profile_of(
        self,
        cell: Cell,
        artifact: Artifact,
        settings: ProfileSettings,
        stage: str = "profile",
        parity: bool = True,
    ) -> Profile | TargetError:
        """One profile job's profile (``stage``: a round's job), with the cell's parity when
        ``parity`` (the first round carries it)."""
        try:
            hp = parse_profile(cell.results[stage], settings.compute_unit)
        except ValueError as exc:
            return TargetError(f"{cell.device.name}: {exc}", kind="measurement")
        parity_metrics, parity_warnings = (
            self._parity_of(cell, artifact, settings) if parity else ({}, [])
        )
        metrics = {**hp.metrics, **parity_metrics, "warmup_iterations": float(len(hp.warmup_ms))}
        units = {**hp.units, **PARITY_UNITS, "warmup_iterations": "count"}
        compiled = cell.compiled.manifest["aihub"] if cell.compiled else {}
        jobs = {
            s.partition("#")[0]: j
            for s, j in [("compile", cell.compile), *cell.jobs.items()]
            if j is not None and (s == stage or not s.startswith("profile"))
        }
        return Profile.from_samples(
            TARGET,
            cell.device,
            artifact.sha256,
            settings.runtime or DEFAULT_RUNTIME,
            hp.samples_ms,
            metrics=metrics,
            units={k: v for k, v in units.items() if k in metrics},
            compute_unit=hp.compute_unit,
            warnings=[*hp.warnings, *cell.notes, *parity_warnings],
            settings=settings.to_dict(),
            environment={
                "device": cell.device.name,
                "os": cell.device.os,
                "chipset": cell.device.chipset,
                "qairt_version": compiled.get("qairt_version", ""),
                "hub_version": compiled.get("hub_version", ""),
            },
            details={
                # the hub's leading slow iterations: kept, not in the statistics
                "warmup_samples_ms": hp.warmup_ms,
                "jobs": {
                    s: {"id": j.id, "url": j.url, "resumed": j.resumed} for s, j in jobs.items()
                },
                "layers": hp.layers,
                "compiled_artifact": str(cell.compiled.path) if cell.compiled else "",
                "compile_options": compiled.get("options", ""),
            },
        )

    def _parity_of(
        self, cell: Cell, artifact: Artifact, settings: ProfileSettings
    ) -> tuple[dict[str, float], list[str]]:
        """The parity metrics and warnings of a cell's inference job (none when not run)."""
        from harness.parity import check, load_reference

        if "inference" not in cell.results:
            failed = cell.failures.get("inference")
            return {}, [f"parity not checked: {failed}"] if failed else []
        _, reference = load_reference(artifact.folder)
        parity = check(
            reference,
            cell.results["inference"],
            self.parity_precision(artifact, settings),
            where=self.where(artifact, cell.device),
        )
        metrics = {name: value for name, value, _ in parity.metric_rows()}
        return metrics, [f"parity on device: {f}" for f in parity.failures]
