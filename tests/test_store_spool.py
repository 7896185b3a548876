"""Nothing measured is lost when the store goes away: the spool keeps every finished cell
until the store has committed it, the run measures on while the store is away, and the
next run of it writes what was left. The network is dropped by a TCP proxy between vitbench
and a real PostgreSQL server."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.dispatch import Dispatcher
from harness.plan import load_plan
from harness.store import CellOutcome, CellRecord, open_store
from harness.store.spool import Spool, orphans, read_spool
from tests.support.lanes_target import LANES, LanesTarget, lanes_plan
from tests.support.postgres import postgres_server, postgres_url  # noqa: F401 - fixtures
from tests.support.tcp_proxy import TcpProxy

PLAN = lanes_plan("away", groups=1)


def _rec(key: str) -> CellRecord:
    return CellRecord(key, "tiny", "m" * 8, "onnx", {"format": "onnx"}, "lanes", "lane-0")


def test_spool_keeps_what_is_not_committed_and_goes_when_all_is(tmp_path):
    spool = Spool(tmp_path / "spool", "run/1 x", (2, 3))
    a = spool.add("run/1 x", _rec("a"), CellOutcome("done", samples_ms=[1.0, 2.0]))
    b = spool.add("run/1 x", _rec("b"), CellOutcome("failed", failure_kind="model"))
    spool.committed(a)
    assert [c.record.cell_key for c in read_spool(spool.path)] == ["b"]
    assert orphans(tmp_path / "spool", "run/1 x") == []  # its shard still holds it
    with open(spool.path, "a") as f:
        f.write('{"put": "torn", "run_id": "run/1 x", "rec')  # a kill mid-write
    spool.close()
    assert spool.path.exists()  # b is not in the store
    (orphan,) = orphans(tmp_path / "spool", "run/1 x")
    assert [c.record.cell_key for c in orphan.cells] == ["b"]
    assert orphan.cells[0].outcome == b.outcome
    assert orphans(tmp_path / "spool", "run/1") == []  # another run's files are not its
    orphan.committed(orphan.cells[0])
    orphan.close()
    assert not spool.path.exists()
    done = Spool(tmp_path / "spool", "r2")
    done.committed(done.add("r2", _rec("c"), CellOutcome("done")))
    done.close()
    assert not (tmp_path / "spool").exists()


@pytest.fixture
def lanes(tmp_path, monkeypatch, shared_cache, register_plugin):
    monkeypatch.setenv("VITBENCH_CACHE", str(shared_cache))
    monkeypatch.setenv("VITBENCH_COMMIT", "abc123def456")
    register_plugin("vitbench.targets", "lanes", "tests.support.lanes_target:LanesTarget")
    (tmp_path / "plan.toml").write_text(PLAN)
    yield tmp_path / "plan.toml"
    LanesTarget.before_profile = None


@pytest.fixture
def proxy(postgres_url):  # noqa: F811
    port = int(postgres_url.rsplit(":", 1)[1].split("/")[0])
    p = TcpProxy(port)
    yield p, p.url(postgres_url), postgres_url
    p.close()


def _profiles(on: dict[int, object]) -> list[int]:
    """Count profiles; at the Nth, call ``on[N]`` (cut or restore the network)."""
    seen = [0]
    lock = threading.Lock()

    def hook(device) -> None:
        with lock:
            seen[0] += 1
            action = on.get(seen[0])
        if action is not None:
            action()

    LanesTarget.before_profile = hook
    return seen


def _stored(url: str, run_id: str) -> tuple[list[dict], dict[int, list[float]]]:
    st = open_store(url, readonly=True)
    cells = st.cells([run_id])
    return cells, st.samples([c["id"] for c in cells])


def test_a_run_measures_on_while_the_store_is_away_and_stores_all_when_it_is_back(
    lanes, proxy, tmp_path
):
    p, url, direct = proxy
    seen = _profiles({2: p.cut, 5: p.restore})
    logged: list[str] = []
    summary = Dispatcher(
        load_plan(lanes),
        open_store(url),
        quiet=True,
        log=logged.append,
        spool_dir=tmp_path / "spool",
        store_patience_s=60,
    ).run("away-1")
    assert seen[0] == LANES and summary.done == LANES and summary.finished, summary
    assert not summary.spooled and not summary.store_error
    assert any("unavailable" in line and "spool" in line for line in logged), logged
    assert any("is back" in line for line in logged), logged
    cells, samples = _stored(direct, "away-1")
    assert len(cells) == LANES and all(c["status"] == "done" for c in cells)
    for c in cells:  # every sample taken is stored
        assert len(samples[c["id"]]) == c["details"]["profile_details"]["samples_taken"] >= 30
    assert not (tmp_path / "spool").exists()


def _cli(*args) -> tuple[int, str]:
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output


def test_a_store_that_stays_away_keeps_the_cells_and_the_next_run_writes_them(
    lanes, proxy, tmp_path
):
    p, url, direct = proxy
    out = tmp_path / "out"
    _profiles({3: p.cut})
    code, text = _cli(
        "run",
        lanes,
        "--store",
        url,
        "--run-id",
        "gone",
        "--store-patience",
        "1",
        "--out",
        out,
        "--quiet",
    )
    lines = text.strip().splitlines()
    assert code == 1, text
    assert lines[-1].startswith("vitbench: error: store ") and "unavailable" in lines[-1]
    assert f"measured cells are kept in {out / 'spool'}" in lines[-1]
    assert "--run-id gone" in lines[-1]
    reports = [line.removeprefix("report: ") for line in lines if line.startswith("report: ")]
    assert reports and all(Path(r).exists() for r in reports)  # from the cells it measured
    (spooled,) = (out / "spool").glob("gone.*.jsonl")
    kept = read_spool(spooled)
    assert len(kept) >= LANES - 3  # the cells finished after the cut, at least
    stored_before, _ = _stored(direct, "gone")
    assert sum(c["status"] == "done" for c in stored_before) < LANES

    p.restore()
    seen = _profiles({})
    code, text = _cli("run", lanes, "--store", url, "--run-id", "gone", "--out", out, "--json")
    assert code == 0, text
    summary = json.loads(text[text.index("{") :])
    assert summary["replayed"] == len(kept) and summary["finished"], summary
    assert seen[0] == summary["done"] == LANES - summary["skipped"]  # none measured twice
    cells, samples = _stored(direct, "gone")
    assert len(cells) == LANES and all(c["status"] == "done" for c in cells)
    by_key = {c["cell_key"]: c for c in cells}
    for cell in kept:  # the spooled cells' samples, exactly as measured
        assert samples[by_key[cell.record.cell_key]["id"]] == list(cell.outcome.samples_ms)
    assert not list((out / "spool").glob("gone.*"))
