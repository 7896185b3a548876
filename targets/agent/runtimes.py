"""The Runtime contract, and the runtimes built in: ONNX Runtime, ExecuTorch and PyTorch.

A runtime loads an artifact, makes inputs it takes and runs one inference; the agent times
it. Every method the agent calls is on :class:`Runtime`, with a default. A third-party
runtime subclasses it and registers through the ``vitbench.runtimes`` entry point
(targets/agent/registry.py); the runtime's own package is imported in :meth:`Runtime.setup`
or later, never at module import, so listing runtimes stays cheap.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from targets.agent.probes import usable_cores
from targets.agent.protocol import AgentError

# ExecuTorch delegates whose kernels ship in the stock executorch wheel
STOCK_DELEGATES: tuple[str | None, ...] = (None, "", "xnnpack", "portable")


class Runtime:
    """Load an artifact, make inputs, run one inference.

    ``name`` is what requests and profiles call it; ``formats`` the artifact formats it runs
    (manifest ``format``); ``package`` what to install for it (its distribution and module
    name; default ``name``). An instance is made once per agent run with the request's
    ``threads`` (None: all usable cores), runtime ``options`` (the profile settings' options)
    and ``artifact_options`` (the options the artifact was exported with, from its manifest).
    """

    name: str = ""
    formats: tuple[str, ...] = ()
    package: str = ""

    def __init__(
        self,
        threads: int | None,
        options: dict[str, Any],
        artifact_options: dict[str, Any] | None = None,
    ):
        self.threads = threads or usable_cores()
        self.options = dict(options or {})
        self.artifact_options = dict(artifact_options or {})
        self.setup()

    @classmethod
    def requirement(cls) -> str:
        """The package to install for this runtime."""
        return cls.package or cls.name

    @classmethod
    def installed(cls) -> bool:
        """Whether this Python can import the runtime (without importing it)."""
        try:
            return importlib.util.find_spec(cls.requirement()) is not None
        except (ImportError, ValueError):
            return False

    def setup(self) -> None:
        """Import and configure the runtime; an ImportError here is reported as a package
        to install on the agent's host."""

    def version(self) -> str:
        return ""

    def check(self, path: str) -> None:
        """Refuse (AgentError) an artifact this runtime cannot run here, before timing starts."""

    def load(self, path: str) -> Any:
        raise NotImplementedError(f"runtime {self.name!r} does not load artifacts")

    def to_native(self, array: Any) -> Any:
        """A numpy input as the runtime takes it."""
        return array

    def run(self, handle: Any, inputs: list[Any]) -> list[Any]:
        raise NotImplementedError(f"runtime {self.name!r} does not run")

    def to_numpy(self, out: Any) -> Any:
        import numpy as np

        return np.asarray(out)

    def facts(self, path: str, handle: Any) -> dict[str, Any]:
        """Runtime-specific numbers recorded beside the measurement."""
        return {}


class OrtRuntime(Runtime):
    name, formats, package = "ort", ("onnx",), "onnxruntime"

    def setup(self) -> None:
        import onnxruntime as ort

        self.ort = ort
        self._names: list[str] = []

    def version(self) -> str:
        return self.ort.__version__

    def load(self, path: str) -> Any:
        ort = self.ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = self.options.get("graph_optimization", "all")
        so.graph_optimization_level = {
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        providers = self.options.get("providers") or ["CPUExecutionProvider"]
        sess = ort.InferenceSession(path, sess_options=so, providers=providers)
        self._names = [i.name for i in sess.get_inputs()]
        return sess

    def run(self, handle, inputs):
        return handle.run(None, dict(zip(self._names, inputs, strict=True)))

    def facts(self, path, handle):
        return {
            "providers": handle.get_providers(),
            "graph_optimization": self.options.get("graph_optimization", "all"),
            "intra_op_threads": self.threads,
        }


class ExecuTorchRuntime(Runtime):
    name, formats, package = "executorch", ("executorch",), "executorch"

    def setup(self) -> None:
        import torch  # the pybindings take torch tensors

        try:  # the extension itself: portable_lib and executorch.runtime import all of exir
            from executorch.extension.pybindings import _C
        except ImportError:  # a build that only offers the wrapper module
            from executorch.extension.pybindings import portable_lib as _C

        self.torch = torch
        self._C = _C
        _C._unsafe_reset_threadpool(self.threads)
        self._threads_used = _C._threadpool_get_thread_count()
        self._plans: dict[str, Any] = {}

    def version(self) -> str:
        from importlib.metadata import version

        return version("executorch")

    def backends(self) -> list[str]:
        return sorted(self._C._get_registered_backend_names())

    def load(self, path):
        # what executorch.runtime.Runtime.load_program and Program.load_method do
        program = self._C._load_program(
            path, program_verification=self._C.Verification.InternalConsistency
        )
        method = program.load_method("forward")
        return (program, method)

    def to_native(self, array):
        return self.torch.from_numpy(array)

    def run(self, handle, inputs):
        return handle[1](inputs)  # executorch.runtime's Method.execute

    def to_numpy(self, out):
        if isinstance(out, self.torch.Tensor):
            return out.detach().numpy()
        return super().to_numpy(out)

    def _plan(self, path: str) -> Any:
        """The program's first execution plan (delegates, planned memory), read once."""
        if path not in self._plans:
            from targets.agent.pte import read_plan_file

            self._plans[path] = read_plan_file(path)
        return self._plans[path]

    def check(self, path):
        """A program delegated to a backend this runtime was built without (Core ML, MPS,
        QNN...) is refused by name instead of failing inside load_method."""
        try:
            delegates = set(self._plan(path).delegates)
        except Exception:  # noqa: BLE001 - unreadable here: let the runtime itself say why
            return
        have = set(self.backends())
        missing = sorted(delegates - have)
        if missing:
            has = ", ".join(sorted(have)) or "no backends"
            raise AgentError(
                f"the program is delegated to {', '.join(missing)}, which this ExecuTorch "
                f"runtime ({self.version()}) lacks (it has {has}); install an executorch "
                f"build with {' and '.join(missing)} on this host",
                "model",
            )

    def facts(self, path, handle):
        facts: dict[str, Any] = {
            "threadpool_threads": self._threads_used,
            "backends_registered": self.backends(),
        }
        try:  # planned (non-constant) memory the program declares
            plan = self._plan(path)
            facts["planned_memory_bytes"] = plan.planned_memory_bytes
            facts["delegates"] = list(plan.delegates)
        except Exception as exc:  # noqa: BLE001 - a fact we could not read is recorded as such
            facts["planned_memory_error"] = f"{type(exc).__name__}: {exc}"[:200]
        return facts


class TorchRuntime(Runtime):
    """PyTorch eager: the baseline, from a saved ExportedProgram (.pt2)."""

    name, formats, package = "torch", ("pt2",), "torch"

    def setup(self) -> None:
        import torch

        self.torch = torch
        torch.set_num_threads(self.threads)

    def version(self) -> str:
        return self.torch.__version__

    def load(self, path):
        return self.torch.export.load(path).module()

    def to_native(self, array):
        return self.torch.from_numpy(array)

    def run(self, handle, inputs):
        with self.torch.inference_mode():
            out = handle(*inputs)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    def to_numpy(self, out):
        return out.detach().numpy()

    def facts(self, path, handle):
        return {"torch_threads": self.torch.get_num_threads()}
