"""The agent's own .pte reader against exir's deserializer, and the runtime's refusal of a
program delegated to a backend it lacks."""

from __future__ import annotations

import shutil
import subprocess
import sys

import flatbuffers
import pytest
from click.testing import CliRunner
from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

from harness.artifact import Artifact
from harness.cli import main
from targets.agent.pte import PteError, read_plan, read_plan_file
from tests.support.artifacts import exported, replace_model


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pte")
    return {
        "xnnpack-fp32": exported(root / "fp32", "executorch", precision="fp32"),
        "xnnpack-int8": exported(root / "int8", "executorch", precision="int8"),
        "portable": exported(root / "portable", "executorch", delegate="portable"),
    }


@pytest.mark.parametrize("which", ["xnnpack-fp32", "xnnpack-int8", "portable"])
def test_reader_agrees_with_exir(programs, which):
    path = programs[which].path
    want = deserialize_pte_binary(path.read_bytes()).program.execution_plan[0]
    got = read_plan_file(str(path))
    assert got.name == want.name == "forward"
    assert list(got.delegates) == [d.id for d in want.delegates]
    assert list(got.non_const_buffer_sizes) == list(want.non_const_buffer_sizes)
    assert got.planned_memory_bytes == sum(want.non_const_buffer_sizes) > 0
    assert ("XnnpackBackend" in got.delegates) == which.startswith("xnnpack")


def test_reader_refuses_what_is_not_a_program(tmp_path):
    for content in (b"", b"PK\x03\x04 not a flatbuffer", b"\x0c\x00\x00\x00ET11" + b"\0" * 64):
        (tmp_path / "x.pte").write_bytes(content)
        with pytest.raises(PteError, match="not an ExecuTorch program"):
            read_plan_file(str(tmp_path / "x.pte"))
    with pytest.raises(PteError, match="malformed"):
        read_plan(b"\xff\xff\x00\x00ET12" + b"\0" * 16)  # a root offset past the end
    b = flatbuffers.Builder(64)  # a well-formed Program with a version and no plan
    b.StartObject(2)
    b.PrependUint32Slot(0, 1, 0)
    b.Finish(b.EndObject(), file_identifier=b"ET12")
    with pytest.raises(PteError, match="no execution plan"):
        read_plan(bytes(b.Output()))


def test_agent_imports_no_exir(programs):
    """The point of the reader: a profile's ExecuTorch round does not import exir."""
    code = (
        "import sys; from targets.agent.runtimes import ExecuTorchRuntime as R; r = R(1, {}); "
        f"r.check({str(programs['xnnpack-fp32'].path)!r}); "
        f"h = r.load({str(programs['xnnpack-fp32'].path)!r}); "
        f"f = r.facts({str(programs['xnnpack-fp32'].path)!r}, h); "
        "print(f['planned_memory_bytes'] > 0, 'executorch.exir' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"], out.stderr[-2000:]


def test_a_backend_the_runtime_lacks_is_named(programs, tmp_path):
    """A program delegated to Core ML (built on a Mac) refused on this host by name, before
    load_method fails somewhere inside the runtime."""
    art = programs["xnnpack-fp32"]
    pte = deserialize_pte_binary(art.path.read_bytes())
    for d in pte.program.execution_plan[0].delegates:
        d.id = "CoreMLBackend"
    copy = Artifact.load(shutil.copytree(art.folder, tmp_path / "coreml-program"))
    copy = replace_model(copy, bytes(serialize_pte_binary(pte)))  # a manifest that matches
    assert read_plan_file(str(copy.path)).delegates[0] == "CoreMLBackend"
    res = CliRunner().invoke(main, ["profile", str(copy.folder), "--quick"])
    assert res.exit_code != 0
    assert "delegated to CoreMLBackend, which this ExecuTorch runtime" in res.output
    assert "XnnpackBackend" in res.output  # what it has
