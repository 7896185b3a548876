"""Android target on the loopback fake adb server: what pushing once per content hash saves,
and how fast vitbench's own sync client moves bytes.

    python bench/bench_android.py [--artifact-mb 48] [--repeats 3]

Prints, measured side by side in this run:
- cell wall time with the artifact and runner already on the phone / with a fresh push
  (keep_on_device; below 1 when the hash check saves the transfer);
- adb sync push throughput / local file copy throughput, for the same file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.measure import LoopSettings  # noqa: E402
from harness.target import ProfileSettings  # noqa: E402
from targets.android.adb import AdbClient  # noqa: E402
from targets.android.etdump import flatc_and_schema  # noqa: E402
from targets.android.target import AndroidTarget  # noqa: E402
from tests.support.android_runners import install_runners  # noqa: E402
from tests.support.artifacts import exported, without_reference  # noqa: E402
from tests.support.fake_adb import FakeAdbServer, mediatek_phone  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact-mb", type=int, default=48, help="size of the artifact pushed")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    flatc, schema = flatc_and_schema()
    os.environ["VITBENCH_FLATC"], os.environ["VITBENCH_ETDUMP_SCHEMA"] = flatc, str(schema)
    tmp = Path(tempfile.mkdtemp(prefix="bench-android-"))
    art = without_reference(exported(tmp / "art", "executorch"))
    # pad the program to the wanted size (the loader reads only what its header names)
    with open(art.path, "ab") as fh:
        fh.write(os.urandom(args.artifact_mb << 20))
    from harness.artifact import Artifact, sha256_path

    art = Artifact(
        art.path, art.manifest | {"sha256": sha256_path(art.path), "size": art.path.stat().st_size}
    )
    art.write_manifest()
    runners = install_runners(tmp / "runners")
    settings = ProfileSettings(
        loop=LoopSettings(warmup_iterations=1, warmup_seconds=0, min_iterations=5, min_seconds=0),
        options={"poll_s": 0.01, "keep_on_device": True},
    )
    with FakeAdbServer() as srv:
        phone = srv.add(mediatek_phone(tmp / "phones", physics={"base_ms": 5.0, "linger_s": 0.0}))
        cold, warm = [], []
        for _ in range(args.repeats):
            target = AndroidTarget(
                srv.address, runners={"executorch": str(runners["executor_runner"])}
            )
            dev = target.device(phone.serial)
            t0 = time.perf_counter()
            target.profile(art, dev, settings)
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            target.profile(art, dev, settings)
            warm.append(time.perf_counter() - t0)
            target.close()  # removes the kept files: the next repeat pushes again
        pushes = [p for p in phone.sends if p.endswith("model.pte")]
        assert len(pushes) == args.repeats, pushes

        client = AdbClient(srv.address)
        push_s, copy_s = [], []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            client.push(phone.serial, art.path, f"/data/local/tmp/bench-{i}.bin")
            push_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            shutil.copyfile(art.path, tmp / f"copy-{i}.bin")
            copy_s.append(time.perf_counter() - t0)

    mb = art.path.stat().st_size / 2**20
    c, w = statistics.median(cold), statistics.median(warm)
    p, k = statistics.median(push_s), statistics.median(copy_s)
    print(f"artifact {mb:.0f} MB, {args.repeats} repeats, medians")
    print(f"cell with a fresh push        {c:7.3f} s")
    print(
        f"cell with files on the phone  {w:7.3f} s   ratio {w / c:.2f} "
        f"(pushes saved: {args.repeats})"
    )
    print(f"adb sync push                 {mb / p:7.0f} MB/s")
    print(
        f"local file copy               {mb / k:7.0f} MB/s   "
        f"push/copy throughput ratio {(mb / p) / (mb / k):.2f}"
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
