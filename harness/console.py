"""What reaches the terminal: vitbench's own lines. Everything else goes to the log file.

Third-party libraries write to the terminal three ways, each kept out here:

- Python warnings (torch's FutureWarnings, coremltools' deprecations): captured into the
  ``py.warnings`` logger (vitbench's own, :class:`harness.errors.VitbenchWarning`, are also
  printed as ``warning: ...``);
- Python loggers of other packages ("torchvision is not installed", torchao's failed loads):
  their records go to the log file only, never to the last-resort stderr handler;
- native runtimes that print through Python's ``sys.stderr`` (ExecuTorch's
  ``[cpuinfo_utils.cpp:71] ...`` lines, glog-style ``W1203 08:37:19 ...`` lines from torch):
  a line filter on ``sys.stderr`` moves lines of those shapes to the ``vitbench.native`` logger.

``vitbench -v`` shows all of it on stderr as well; ``--log-file`` (or $VITBENCH_LOG) says where
the log goes (default: ``vitbench.log`` in the cache folder, ~/.cache/vitbench).
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import warnings
from pathlib import Path

LOG_ENV = "VITBENCH_LOG"
_HANDLER_NAME = "vitbench-log-file"
# a native library's log line: "[file.cpp:71] ...", "[W1203 08:37:19.57 ...]", "I1203 08:37:19 ..."
_NATIVE = re.compile(
    r"^(\[[\w./-]+\.(cpp|cc|c|h|hpp|mm):\d+\]|\[?[IWEF]\d{4} \d\d:\d\d:\d\d[.\d]*\s)"
)


def default_log_path() -> Path:
    env = os.environ.get(LOG_ENV)
    if env:
        return Path(env).expanduser()
    from harness.export import cache_root

    return cache_root() / "vitbench.log"


class NativeLineFilter(io.TextIOBase):
    """A text stream in front of ``stream`` that passes every line on except native log
    lines, which go to ``logger`` (whole lines are judged: text is held until its newline)."""

    def __init__(self, stream, logger: logging.Logger, show: bool = False):
        self.stream, self.logger, self.show, self._partial = stream, logger, show, ""

    def write(self, text: str) -> int:
        data = self._partial + text
        lines = data.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._emit(line + "\n")
        if self._partial and not _NATIVE.match(self._partial):
            # a progress bar redraws with "\r" and no newline: pass it on at once
            if "\r" in self._partial or len(self._partial) > 4096:
                self.stream.write(self._partial)
                self._partial = ""
        return len(text)

    def _emit(self, line: str) -> None:
        if _NATIVE.match(line):
            self.logger.info("%s", line.rstrip("\n"))
            if not self.show:
                return
        self.stream.write(line)

    def flush(self) -> None:
        if self._partial:
            self._emit(self._partial)
            self._partial = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self):  # the wrapped stream's
        return getattr(self.stream, "encoding", "utf-8")


def setup(verbose: bool = False, log_file: str | Path | None = None) -> Path | None:
    """Route third-party output to the log file (and, with ``verbose``, to stderr too).
    Returns the log file's path, or None when it cannot be written (then nothing is logged
    to a file, and the terminal still stays clean)."""
    path = Path(log_file).expanduser() if log_file else default_log_path()
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME or h.get_name() == _HANDLER_NAME + "-stderr":
            root.removeHandler(h)
            h.close()
    handler: logging.Handler
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    except OSError:
        handler, path = logging.NullHandler(), None
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        shown = logging.StreamHandler(sys.stderr)
        shown.set_name(_HANDLER_NAME + "-stderr")
        shown.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(shown)
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # every warning reaches the log once per place
    warnings.showwarning = _own_warnings_shown(warnings.showwarning)
    if not isinstance(sys.stderr, NativeLineFilter):
        plain = sys.stderr
        sys.stderr = NativeLineFilter(plain, logging.getLogger("vitbench.native"), verbose)
        _reroute_handlers(plain, sys.stderr)
    return path


def _own_warnings_shown(to_log):
    """``warnings.showwarning`` that also prints vitbench's own warnings as one line."""
    from harness.errors import VitbenchWarning

    if getattr(to_log, "_vitbench", False):
        return to_log

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, VitbenchWarning):
            sys.stderr.write(f"warning: {message}\n")
        to_log(message, category, filename, lineno, file, line)

    show._vitbench = True
    return show


def _reroute_handlers(old, new) -> None:
    """Stream handlers other packages set up on stderr (torch's glog-style handler) write
    through the filter, so their lines reach the log and not the terminal."""
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]
    for lg in loggers:
        for h in getattr(lg, "handlers", ()):
            if isinstance(h, logging.StreamHandler) and h.stream is old:
                h.setStream(new)
