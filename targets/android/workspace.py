"""Files on the phone: what one target has put on each phone (hash-addressed artifacts and
runners, kept across cells with ``keep_on_device``), and one cell's run folder, from which a
runner is launched under a wrapper that watches its peak memory."""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.artifact import sha256_path
from harness.target import TargetError
from targets.android.adb import AdbError
from targets.android.device import cpu_mask
from targets.android.etdump import BackendTimes
from targets.android.phone import Phone, PhoneLost, PhoneTimeout
from targets.android.runners import Runner, RunnerOutput, help_flags, parse_output, shell_join

WORK_DIR = "/data/local/tmp/vitbench"
MARK = "vitbench-"

# Launches the runner in the background, samples its peak resident set (VmHWM, kB) until it
# exits, then prints the marks vitbench reads. POSIX sh (Android's mksh), and of the phone's
# userland only `sleep`: vendor toyboxes differ (some have no sed; some greps know no POSIX
# bracket classes), so /proc/PID/status is parsed with the shell's own `read` and `case`. Each
# sample reads the file in a subshell: a failed open (the runner is gone, or the shell user may
# not read it) ends that subshell, never this script. `vitbench-vmhwm-reads` says how many
# samples read the file, so vitbench can tell "not readable" from "no VmHWM line".
WRAPPER = """\
#!/system/bin/sh
# vitbench: run a benchmark program and watch its peak memory (VmHWM of /proc/PID/status)
cd "$(dirname "$0")" || exit 127
"$@" &
pid=$!
echo "$pid" > pid
echo "vitbench-pid $pid"
hwm=0
reads=0
while :; do
  s=$(exec 2>/dev/null; state=; kb=
    while read -r key value rest; do
      case "$key" in (State:) state=$value ;; (VmHWM:) kb=$value ;; esac
    done < "/proc/$pid/status" && echo "$state $kb")
  case "$s" in ""|Z*|X*) break ;; esac
  reads=$((reads + 1))
  kb=${s#* }
  [ -n "$kb" ] && hwm=$kb
  sleep 0.02
done
wait "$pid"
rc=$?
echo "vitbench-vmhwm-kb $hwm"
echo "vitbench-vmhwm-reads $reads"
echo "vitbench-exit $rc"
"""

DSP_PATHS = "/vendor/dsp/cdsp;/vendor/lib/rfsa/adsp;/system/lib/rfsa/adsp;/dsp"


@dataclass(frozen=True)
class RunResult:
    """One runner process on the phone: what it reported, how it ended, its peak memory."""

    output: RunnerOutput
    exit_code: int
    peak_kb: int | None  # VmHWM; None when the wrapper could not read it
    pid: int | None
    text: str
    etdump: BackendTimes | None = None
    status_reads: int = 0  # samples in which the wrapper could read /proc/PID/status


class PhoneFiles:
    """What one target knows about files across cells: content hashes of local files, the
    hash-addressed files it keeps on each phone, the flags each runner build accepts, and one
    lock per phone (two measurements at once would bias each other)."""

    def __init__(self, work_dir: str = WORK_DIR):
        self.work_dir = work_dir.rstrip("/")
        self._hashes: dict[tuple[str, float, int], str] = {}
        self._kept: dict[str, set[str]] = {}  # serial -> hash-addressed files kept there
        self._flags: dict[tuple[str, str], set[str]] = {}  # (serial, runner sha256) -> gflags
        self._locks: dict[str, threading.Lock] = {}

    def sha(self, path: Path) -> str:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime, st.st_size)
        if key not in self._hashes:
            self._hashes[key] = sha256_path(path)
        return self._hashes[key]

    def kept(self, serial: str) -> set[str]:
        return self._kept.setdefault(serial, set())

    def runner_flags(self, phone: Phone, runner: Runner, remote_runner: str) -> set[str]:
        """Flags an executor_runner build accepts (gflags --help), so optional ones
        (cpu_threads, print_output, etdump_path) are passed only where they exist."""
        if runner.kind != "executorch":
            return set()
        key = (phone.serial, self.sha(runner.path))
        if key not in self._flags:
            command = f"{shell_join([remote_runner])} --help 2>&1 | head -200"
            self._flags[key] = help_flags(phone.sh(command, timeout=60).stdout)
        return set(self._flags[key])

    @contextmanager
    def workspace(self, phone: Phone, keep: bool) -> Iterator[Workspace]:
        """A run folder on the phone for one cell, one cell per phone at a time; what an
        earlier cell left (the phone dropped before it could clean up) is removed first."""
        with self._locks.setdefault(phone.serial, threading.Lock()):
            ws = Workspace(self, phone, f"{self.work_dir}/runs/{uuid.uuid4().hex[:12]}")
            phone.sh(f"rm -rf {self.work_dir}/runs; mkdir -p {ws.run_dir}")
            try:
                yield ws
            finally:
                ws.cleanup(keep)

    def forget(self) -> dict[str, list[str]]:
        """The folders of kept files, per phone, to remove; this target keeps none after."""
        out = {
            serial: sorted({r.rsplit("/", 1)[0] for r in remotes})
            for serial, remotes in self._kept.items()
        }
        self._kept.clear()
        return out


class Workspace:
    """One cell's files on one phone: a run folder, plus hash-addressed artifact and runner."""

    def __init__(self, files: PhoneFiles, phone: Phone, run_dir: str):
        self.files, self.phone, self.run_dir = files, phone, run_dir
        self.pushed: list[str] = []  # hash-addressed files this cell put on the phone
        self.wrapper: str | None = None

    def push_cached(self, local: Path, executable: bool = False, next_to: str | None = None) -> str:
        """Put ``local`` on the phone under its content hash unless it is there already."""
        sha = self.files.sha(local)
        folder = next_to.rsplit("/", 1)[0] if next_to else f"{self.files.work_dir}/files/{sha[:16]}"
        remote = f"{folder}/{local.name}"
        if remote in self.files.kept(self.phone.serial) or remote in self.pushed:
            return remote
        if self.phone.remote_size(remote) == local.stat().st_size:
            have = self.phone.sh(f"sha256sum {shell_join([remote])}").stdout.split()
            if have and have[0] == sha:
                self.pushed.append(remote)
                return remote
        self.phone.sh(f"mkdir -p {shell_join([folder])}")
        self.phone.push(local, remote, 0o755 if executable else 0o644)
        self.pushed.append(remote)
        return remote

    def runner_flags(self, runner: Runner, remote_runner: str) -> set[str]:
        return self.files.runner_flags(self.phone, runner, remote_runner)

    def _wrapper(self) -> str:
        if self.wrapper is None:
            with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as fh:
                fh.write(WRAPPER)
            try:
                self.wrapper = f"{self.run_dir}/run.sh"
                self.phone.push(Path(fh.name), self.wrapper, 0o755)
            finally:
                os.unlink(fh.name)
        return self.wrapper

    def launch(
        self,
        runner: Runner,
        remote_runner: str,
        args: list[str],
        timeout: float,
        pin: list[int] | None = None,
        env: dict[str, str] | None = None,
    ) -> RunResult:
        """Run the runner under the wrapper. A loss of the phone midway is raised with what
        the runner had reported (:attr:`PhoneLost.partial`)."""
        wrapper = self._wrapper()
        lib_dir = remote_runner.rsplit("/", 1)[0]
        exports = {
            "LD_LIBRARY_PATH": f"{lib_dir}:$LD_LIBRARY_PATH",
            "ADSP_LIBRARY_PATH": f"{lib_dir};{DSP_PATHS}",
        }
        exports |= env or {}
        prefix = " ".join(f'export {k}="{v}";' for k, v in exports.items())
        pin_words = ["taskset", cpu_mask(pin)] if pin else []
        command = f"{prefix} sh {wrapper} " + shell_join([*pin_words, remote_runner, *args])
        try:
            res = self.phone.sh(command, timeout=timeout)
        except PhoneTimeout:
            self.phone.sh(f"kill -9 $(cat {self.run_dir}/pid) 2>/dev/null")
            raise TargetError(
                f"{runner.name} on {self.phone.serial} did not finish within {timeout:.0f} s",
                kind="measurement",
            ) from None
        except PhoneLost as exc:
            raise exc.with_partial(parse_output(runner.kind, split_marks(exc.output)[0])) from None
        return self._result(runner, res.stdout + "\n" + res.stderr, res.exit_code)

    def _result(self, runner: Runner, printed: str, shell_exit: int) -> RunResult:
        text, marks = split_marks(printed)
        output = parse_output(runner.kind, text)
        pid = int(marks["pid"]) if marks.get("pid", "").isdigit() else None
        if runner.kind == "executorch" and not output.samples_ms and output.load_ms is None and pid:
            # android PAL: ET_LOG went to logcat, not to stderr
            text += "\n" + self.phone.sh(f"logcat -d -v raw --pid={pid} 2>/dev/null").stdout
            output = parse_output(runner.kind, text)
        code = int(marks["exit"]) if marks.get("exit", "").lstrip("-").isdigit() else shell_exit
        hwm, reads = marks.get("vmhwm-kb", ""), marks.get("vmhwm-reads", "")
        peak = int(hwm) if hwm.isdigit() and int(hwm) else None
        return RunResult(
            output, code, peak, pid, text, status_reads=int(reads) if reads.isdigit() else 0
        )

    def cleanup(self, keep: bool) -> None:
        kept = self.files.kept(self.phone.serial)
        doomed = [self.run_dir]
        if keep:
            kept.update(self.pushed)
        else:
            doomed += sorted({r.rsplit("/", 1)[0] for r in self.pushed if r not in kept})
        try:
            self.phone.sh("rm -rf " + shell_join(doomed))
        except (PhoneLost, AdbError):
            pass  # the phone is gone: nothing to clean until it is back


def split_marks(text: str) -> tuple[str, dict[str, str]]:
    """The runner's own lines, and the wrapper's ``vitbench-KEY value`` marks."""
    keep, marks = [], {}
    for line in text.splitlines():
        if line.startswith(MARK):
            key, _, value = line[len(MARK) :].partition(" ")
            marks[key] = value.strip()
        else:
            keep.append(line)
    return "\n".join(keep), marks
