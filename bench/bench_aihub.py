"""AI Hub target on the loopback fake hub with injected latency: does profiling on 5 devices
cost about as much wall time as on 1 (jobs submitted together, waited for together), and
does a resumed run submit no new jobs?

    python bench/bench_aihub.py [--job-seconds 2] [--request-ms 30]

Prints time(5 devices) / time(1 device) (target <= 1.3) and the number of jobs a re-run of
the 5-device plan submits (target 0), measured side by side in this run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.target import Profile, ProfileSettings  # noqa: E402
from targets.aihub import AIHubTarget  # noqa: E402
from targets.aihub.connection import RetryPolicy  # noqa: E402
from tests.support.artifacts import exported  # noqa: E402
from tests.support.fake_aihub import FakeAIHub  # noqa: E402

FIVE = [
    "Samsung Galaxy S24 (Family)",
    "Samsung Galaxy S24 (Family)@14",
    "Samsung Galaxy S23 (Family)",
    "Snapdragon 8 Elite QRD",
    "QCS8550 (Proxy)",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--job-seconds", type=float, default=2.0, help="how long each fake job runs")
    ap.add_argument(
        "--request-ms", type=float, default=30.0, help="latency added to every HTTP request"
    )
    ap.add_argument("--poll", type=float, default=0.2, help="vitbench's poll interval (s)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-aihub-"))
    artifact = exported(tmp / "artifact", "onnx")
    settings = replace(ProfileSettings.quick(compute_unit="npu"), timeout_s=120.0)
    with FakeAIHub(job_seconds=args.job_seconds, request_latency_s=args.request_ms / 1000) as hub:
        hub.write_client_ini(tmp / "client.ini")
        os.environ["QAIHUB_CLIENT_INI"] = str(tmp / "client.ini")

        def run(selectors: list[str], state: str) -> tuple[float, list]:
            target = AIHubTarget(
                cache_dir=tmp / "cache",
                journal=tmp / f"{state}.json",
                poll_interval_s=args.poll,
                retry=RetryPolicy(attempts=3, base_s=0.1),
            )
            devices = target.pick(selectors)
            t0 = time.perf_counter()
            results = target.profile_many(artifact, devices, settings)
            elapsed = time.perf_counter() - t0
            assert all(isinstance(r, Profile) for r in results), results
            return elapsed, results

        run(FIVE[:1], "warmup")  # uploads the model once, warms imports and connections
        t1, _ = run(FIVE[:1], "one")
        t5, _ = run(FIVE, "five")
        jobs_before = len(hub.jobs)
        t_resume, resumed = run(FIVE, "five")
        new_jobs = len(hub.jobs) - jobs_before
        picked = sum(j["resumed"] for r in resumed for j in r.details["jobs"].values())

    print(
        f"fake hub: each job {args.job_seconds:g} s, each request +{args.request_ms:g} ms, "
        f"poll {args.poll:g} s"
    )
    print(f"profile on 1 device : {t1:6.2f} s")
    print(f"profile on 5 devices: {t5:6.2f} s")
    print(f"ratio 5/1           : {t5 / t1:6.2f}  (target <= 1.3)")
    print(
        f"resumed 5-device run: {t_resume:6.2f} s, {new_jobs} new jobs submitted (target 0), "
        f"{picked} jobs picked up"
    )


if __name__ == "__main__":
    main()
