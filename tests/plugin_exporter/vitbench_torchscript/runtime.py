"""The runtime for TorchScript artifacts, registered through the ``vitbench.runtimes`` entry
point: the profiling agent loads the ``.ts`` file with torch.jit and runs it."""

from __future__ import annotations

from targets.agent.runtimes import Runtime


class TorchScriptRuntime(Runtime):
    """Option ``output_offset`` (an export option, from the artifact's manifest) shifts its
    outputs: a runtime that disagrees with PyTorch, to exercise failed parity."""

    name, formats, package = "torchscript", ("torchscript",), "torch"

    def setup(self):
        import torch

        self.torch = torch
        torch.set_num_threads(self.threads)
        self.offset = float(self.artifact_options.get("output_offset", 0.0))

    def version(self):
        return self.torch.__version__

    def load(self, path):
        return self.torch.jit.load(path)

    def to_native(self, array):
        return self.torch.from_numpy(array)

    def run(self, handle, inputs):
        with self.torch.no_grad():
            return [handle(*inputs) + self.offset]

    def to_numpy(self, out):
        return out.detach().numpy()
