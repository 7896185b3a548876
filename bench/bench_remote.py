"""Remote hosts: does measuring through SSH change the numbers, and what does the copy cost?

Starts a real sshd on loopback (as the tests do) and prints, measured side by side in one run
on one ONNX artifact, alternating the two ways round by round:
1. p50 through the remote target (ssh to this machine, agent copied there) over p50 through
   the host target (agent in a local worker). The samples are timed inside the agent in both,
   so the ratio should be about 1 (target 0.95-1.05): the transport adds wall time, not latency.
2. wall time of a whole profile: over SSH with a fresh copy, over SSH with the cache kept
   (no copy), and local; the ratios are what the transfer and the connection cost.

    python bench/bench_remote.py [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.target import ProfileSettings  # noqa: E402
from targets.host import HostTarget  # noqa: E402
from targets.remote.target import RemoteTarget  # noqa: E402
from tests.support.artifacts import exported  # noqa: E402
from tests.support.models import small_config  # noqa: E402
from tests.support.ssh_server import start_sshd, stop_sshd  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum measuring time per profile")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="vitbench-bench-remote-"))
    server = start_sshd(root / "sshd")
    try:
        cfg = small_config(
            img_size=64,
            embed_dim=192,
            head_dim=32,
            num_heads=(6, 6, 6, 6),
            mlp_dims=(768, 768, 768, 768),
        )
        art = exported(root / "onnx", "onnx", cfg=cfg)
        hosts = root / "hosts.toml"

        def configure(keep: bool) -> None:
            hosts.write_text(
                '[hosts.loopback]\ntarget = "remote"\nssh = "vb-host"\n'
                f'python = "{sys.executable}"\n'
                f'cache_dir = "{root / "cache"}"\nssh_config = "{server.client_config}"\n'
                f"keep_cache = {'true' if keep else 'false'}\n"
            )

        os.environ["VITBENCH_HOSTS"] = str(hosts)
        configure(keep=False)
        settings = ProfileSettings.quick(threads=1).with_loop(
            min_seconds=args.seconds, min_iterations=50
        )
        host, remote = HostTarget(), RemoteTarget()
        hdev, rdev = host.devices()[0], remote.devices()[0]

        p50 = {"ssh": [], "local": []}
        wall = {"ssh fresh copy": [], "ssh cached": [], "local": []}
        for r in range(args.rounds):
            order = (
                [("ssh", False), ("local", None)]
                if r % 2 == 0
                else [("local", None), ("ssh", False)]
            )
            for way, _ in order:
                t0 = time.monotonic()
                prof = (remote if way == "ssh" else host).profile(
                    art, rdev if way == "ssh" else hdev, settings
                )
                wall["ssh fresh copy" if way == "ssh" else "local"].append(time.monotonic() - t0)
                p50[way].append(prof.stats.p50)
        configure(keep=True)
        remote.profile(art, rdev, settings)  # fills the cache
        for _ in range(args.rounds):
            t0 = time.monotonic()
            remote.profile(art, rdev, settings)
            wall["ssh cached"].append(time.monotonic() - t0)

        med = {k: statistics.median(v) for k, v in p50.items()}
        print(
            f"artifact: ONNX, {art.manifest['size'] / 1e6:.1f} MB; {args.rounds} rounds, "
            f">= {args.seconds:g} s each, 1 thread"
        )
        print(
            f"p50 local  {med['local']:.3f} ms   p50 over ssh {med['ssh']:.3f} ms   "
            f"ratio ssh/local {med['ssh'] / med['local']:.3f}  (target 0.95-1.05)"
        )
        w = {k: statistics.median(v) for k, v in wall.items()}
        print(
            f"wall per profile: local {w['local']:.2f} s, ssh cached {w['ssh cached']:.2f} s, "
            f"ssh fresh copy {w['ssh fresh copy']:.2f} s"
        )
        print(
            f"wall ratios: ssh cached/local {w['ssh cached'] / w['local']:.2f}, "
            f"ssh fresh/ssh cached {w['ssh fresh copy'] / w['ssh cached']:.2f}"
        )
        load = os.getloadavg()[0]
        print(f"load average during the run: {load:.1f} on {os.cpu_count()} cores")
    finally:
        stop_sshd(server)


if __name__ == "__main__":
    main()
