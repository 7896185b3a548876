"""The agent ends with the process that started it: a measuring worker whose vitbench was
killed (``kill -9``, a CI job cancelled) must not keep competing for the CPU.

Three lines, each enough on its own:

* Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so the kernel kills the agent when its parent
  goes. The signal fires when the parent *thread* that forked the agent ends, not the
  process: ``run_agent`` is called from a thread that waits for the agent's answer, so that
  thread lives as long as the agent is wanted.
* Every platform (and a second line on Linux): a daemon thread that polls ``os.getppid()``
  and ends the agent when it changes (the parent died: the agent was handed to init or a
  subreaper). ``$VITBENCH_PARENT_PID`` (set by the client for an agent on this machine) names
  the parent the agent must have; one already gone at start-up (it died between the fork and
  the prctl) ends the agent at once.
* A caller that asks for it (``"hold_stdin": true`` in the request) keeps the agent's stdin
  open while it waits and closes it when done: end of input means the caller is gone. That
  is the line that reaches an agent on another host, whose parent is sshd's session there:
  the local ``ssh`` reads end of input when vitbench dies, passes it on and exits once the
  agent does.

Standard library only: this module travels in the agent's zipapp.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

PARENT_ENV = "VITBENCH_PARENT_PID"
EXIT_ORPHANED = 4  # the agent's caller went away; nobody reads this code but a test
POLL_S = 0.25
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent (thread) ends; False elsewhere or
    when libc cannot be reached."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (ImportError, OSError, AttributeError):  # a Python without ctypes, a libc without prctl
        return False


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not count on Linux)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # there, but another user's
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:  # gone since the kill, or a system without /proc (macOS)
        return not os.path.exists("/proc/self")
    except (OSError, IndexError):
        return True
    return state != b"Z"


def _expected_parent(environ: dict[str, str]) -> int | None:
    """The parent the client named (removed from the environment, so that nothing this
    process starts inherits a pid that is not its parent)."""
    value = environ.pop(PARENT_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _orphaned() -> None:
    os._exit(EXIT_ORPHANED)


def _watch_parent(parent: int, named: int | None, poll_s: float) -> None:
    while True:
        time.sleep(poll_s)
        if os.getppid() != parent or (named is not None and not alive(named)):
            _orphaned()


def hold_to_parent(environ: dict[str, str] | None = None, poll_s: float = POLL_S) -> None:
    """Tie this process's life to its parent's (call it first thing): the parent-death
    signal on Linux, then a thread that ends the process when the parent goes. A parent named
    in ``$VITBENCH_PARENT_PID`` that is already gone ends it now. One that is alive but is not
    the direct parent (the interpreter was started through a wrapper that forks) is watched
    beside the direct one."""
    named = _expected_parent(os.environ if environ is None else environ)
    _parent_death_signal()
    parent = os.getppid()
    if named is not None and named != parent:
        if not alive(named):
            _orphaned()  # died between the fork and the prctl: nobody waits for this agent
    else:
        named = None
    threading.Thread(
        target=_watch_parent, args=(parent, named, poll_s), name="lifeline", daemon=True
    ).start()


# -- the request, and stdin held open -----------------------------------------------------


def read_request(fd: int = 0) -> tuple[bytes, bool]:
    """The request's bytes from ``fd``: its first line, or all of it up to end of input when
    it is not one line of JSON; and whether the input has ended. Raw reads (no ``sys.stdin``
    buffer), so a thread can keep reading after it without sharing a lock with shutdown."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return data, True
        data += chunk
    line = data.split(b"\n", 1)[0]
    try:
        json.loads(line)
    except ValueError:  # JSON over several lines: the caller closes stdin after it
        return data + _read_to_end(fd), True
    return line, False


def _read_to_end(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 1 << 16):
        parts.append(chunk)
    return b"".join(parts)


def _watch_input(fd: int) -> None:
    try:
        while os.read(fd, 1 << 16):
            pass
    except OSError:
        pass
    _orphaned()


def end_with_input(fd: int = 0) -> None:
    """End this process when ``fd`` reaches end of input (the caller closed it, or died)."""
    threading.Thread(target=_watch_input, args=(fd,), name="stdin-lifeline", daemon=True).start()
