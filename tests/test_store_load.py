"""A team's nightly on one store: four shards of a twelve-cell plan started at the same
instant, five times; then one shard killed with SIGKILL at a random moment and run again;
then (PostgreSQL) the server restarted once mid-run. Every time: each of the plan's cells
exactly once, every measured sample stored, the run finished, and the gate's verdict that
of an undisturbed run. Against SQLite and a real PostgreSQL server, loopback only.

Shards are real processes, forked from a server that has imported vitbench once (so four
of them start in milliseconds, not seconds each) and released together by a barrier; each
measures its cells on the in-process ``lanes`` target."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cells import expand
from harness.cli import main
from harness.plan import load_plan
from harness.store import open_store
from tests.support.lanes_target import lanes_plan
from tests.support.postgres import (  # noqa: F401 - fixtures
    create_database,
    postgres_server,
    private_postgres,
)

SHARDS = 4
PLAN = lanes_plan("team", groups=2)


def _shard(args: dict, barrier) -> None:
    """One shard, in a process of its own: ``vitbench run --shard I/4 --run-id R``."""
    sys.path.insert(0, args["site"])
    import importlib

    importlib.invalidate_caches()
    os.environ.update(args["env"])
    from harness.dispatch import Dispatcher
    from harness.plan import load_plan
    from harness.store import open_store

    store = open_store(args["url"], patience_s=60)
    barrier.wait(60)
    Path(args["result"] + ".started").touch()
    summary = Dispatcher(
        load_plan(args["plan"]),
        store,
        shard=(args["shard"], SHARDS),
        quiet=True,
        spool_dir=args["spool"],
        store_patience_s=60,
    ).run(args["run_id"])
    Path(args["result"]).write_text(json.dumps(summary.__dict__, default=str))


class Team:
    """Starts the shards of one run together and checks what the store holds after."""

    def __init__(self, tmp_path: Path, url: str, site: str, env: dict[str, str]):
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(
            ["torch", "torch.fx.experimental.symbolic_shapes", "onnxruntime", "scipy.stats"]
            + ["harness.dispatch", "harness.model", "harness.export"]
        )
        self.tmp, self.url, self.site, self.env = tmp_path, url, site, env
        self.plan = tmp_path / "plan.toml"
        self.plan.write_text(PLAN)
        self._barriers: list = []
        from harness.export import export_artifact
        from harness.model import load_model

        # exported once here, so that the shards find it in the cache rather than all
        # exporting it at once
        model = load_plan(self.plan).models[0]
        export_artifact(
            load_model(model.source, **model.overrides()), load_plan(self.plan).exports[0].spec()
        )
        self.keys = sorted(c.key for c in expand(load_plan(self.plan))[0])
        assert len(self.keys) == 12 and not any(c.problem for c in expand(load_plan(self.plan))[0])

    def start(self, run_id: str, shards=range(1, SHARDS + 1)) -> dict[int, multiprocessing.Process]:
        barrier = self.ctx.Barrier(len(list(shards)))
        self._barriers.append(barrier)  # alive until the children have taken it up
        procs = {}
        for i in shards:
            args = {
                "url": self.url,
                "plan": str(self.plan),
                "run_id": run_id,
                "shard": i,
                "spool": str(self.tmp / "spool"),
                "site": self.site,
                "env": self.env,
                "result": str(self.tmp / f"{run_id}.{i}.json"),
            }
            procs[i] = self.ctx.Process(target=_shard, args=(args, barrier))
            procs[i].start()
        return procs

    @staticmethod
    def wait(procs: dict[int, multiprocessing.Process]) -> dict[int, int | None]:
        for p in procs.values():
            p.join(180)
        return {i: p.exitcode for i, p in procs.items()}

    def check(self, run_id: str) -> str:
        """Assert the run is whole; its gate verdict."""
        st = open_store(self.url, readonly=True)
        try:
            assert st.run(run_id)["status"] == "finished", run_id
            cells = st.cells([run_id])
            assert sorted(c["cell_key"] for c in cells) == self.keys  # each cell exactly once
            assert all(c["status"] == "done" for c in cells), [c["failure_reason"] for c in cells]
            samples = st.samples([c["id"] for c in cells])
            for c in cells:
                taken = c["details"]["profile_details"]["samples_taken"]
                assert len(samples[c["id"]]) == taken >= 30, c["cell_key"]
        finally:
            st.close()
        res = CliRunner().invoke(main, ["gate", run_id, "--store", self.url, "--json"])
        assert res.exit_code in (0, 1, 3), res.output
        return json.loads(res.output)["verdict"]


def _poll(what, timeout: float = 120.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(every)


def _done_cells(url: str, run_id: str) -> int:
    try:
        st = open_store(url, readonly=True)
    except Exception:  # noqa: BLE001 - the run has not created its tables yet
        return 0
    try:
        return sum(s == "done" for s in st.cell_status(run_id).values())
    except Exception:  # noqa: BLE001 - nor its run
        return 0
    finally:
        st.close()


@pytest.fixture
def team(tmp_path, shared_cache, register_plugin, monkeypatch):
    register_plugin("vitbench.targets", "lanes", "tests.support.lanes_target:LanesTarget")
    site = str(tmp_path / "plugin-site")
    env = {"VITBENCH_CACHE": str(shared_cache), "VITBENCH_COMMIT": "abc123def456"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return lambda url: Team(tmp_path, url, site, env)


def _load(team: Team, kill_seed: int) -> None:
    reference = None
    for n in range(5):  # all four shards at the same instant, five times
        run_id = f"night-{n}"
        codes = Team.wait(team.start(run_id))
        assert set(codes.values()) == {0}, codes
        verdict = team.check(run_id)
        reference = reference or verdict
        assert verdict == reference == "pass"
    # one shard killed at a random moment, then run again
    rng = random.Random(kill_seed)
    victim = rng.randint(1, SHARDS)
    procs = team.start("killed")
    _poll(lambda: len(list(team.tmp.glob("killed.*.json.started"))) == SHARDS)
    time.sleep(rng.uniform(0.0, 1.0))  # the moment is the point: random, not a condition
    os.kill(procs[victim].pid, signal.SIGKILL)
    codes = Team.wait(procs)
    assert codes[victim] == -signal.SIGKILL or codes[victim] == 0, codes
    assert all(codes[i] == 0 for i in procs if i != victim), codes
    assert Team.wait(team.start("killed", shards=[victim])) == {victim: 0}
    assert team.check("killed") == reference


def test_four_shards_at_once_on_sqlite(team, tmp_path):
    _load(team(str(tmp_path / "team.db")), kill_seed=1)


def test_four_shards_at_once_on_postgresql(team, postgres_server):  # noqa: F811
    _load(team(create_database(postgres_server)), kill_seed=2)


def test_a_postgresql_restart_mid_run_loses_nothing(team, private_postgres):  # noqa: F811
    t = team(create_database(private_postgres.url))
    procs = t.start("restarted")
    _poll(lambda: _done_cells(t.url, "restarted") >= 1)
    private_postgres.restart(mode="immediate")  # as after a crash: recovery from the WAL
    assert set(Team.wait(procs).values()) == {0}
    assert t.check("restarted") == "pass"
    results = [json.loads(p.read_text()) for p in t.tmp.glob("restarted.*.json")]
    assert len(results) == SHARDS and sum(r["done"] for r in results) == 12
