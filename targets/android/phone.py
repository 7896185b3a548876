"""One phone through the adb client, with every way its link can drop turned into one
exception, :class:`PhoneLost`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.target import TargetError
from targets.android.adb import (
    AdbClient,
    AdbServerUnreachable,
    DeviceGone,
    DeviceNotFound,
    ShellResult,
)
from targets.android.device import (
    PhoneInfo,
    PhoneState,
    device_info_command,
    parse_device_info,
    parse_state,
    state_command,
)
from targets.android.runners import RunnerOutput


class PhoneTimeout(TargetError):
    """A command on the phone ran past its deadline (a hung ``dumpsys``, a runner that never
    ends). The link itself may be fine: an infrastructure failure, worth a retry."""

    def __init__(self, serial: str, command: str, timeout_s: float):
        words = command.split()
        name = next((w for w in words if "=" not in w and not w.startswith("export")), "shell")
        super().__init__(
            f"phone {serial}: `{name.rsplit('/', 1)[-1][:60]}` did not finish within "
            f"{timeout_s:g} s",
            kind="infrastructure",
        )
        self.serial, self.command, self.timeout_s = serial, command, timeout_s


class PhoneLost(Exception):
    """The phone dropped off the bus (unplugged, rebooted, adbd restarted). ``output`` is
    what a shell command printed before; ``partial`` what a runner had reported by then."""

    def __init__(
        self, serial: str, detail: str, output: str = "", partial: RunnerOutput | None = None
    ):
        super().__init__(f"phone {serial} disconnected ({detail})")
        self.serial, self.detail, self.output, self.partial = serial, detail, output, partial

    def with_partial(self, partial: RunnerOutput) -> PhoneLost:
        """The same loss, with what the runner had reported before it."""
        return PhoneLost(self.serial, self.detail, self.output, partial)


class Phone:
    """One phone through the adb client; failures of the link become :class:`PhoneLost`."""

    def __init__(self, client: AdbClient, serial: str):
        self.client, self.serial = client, serial

    @contextmanager
    def _link(self) -> Iterator[None]:
        try:
            yield
        except DeviceGone as exc:
            raise PhoneLost(self.serial, str(exc), exc.stdout + exc.stderr) from None
        except DeviceNotFound as exc:
            raise PhoneLost(self.serial, str(exc).split(" (")[0]) from None
        except AdbServerUnreachable as exc:
            raise PhoneLost(self.serial, str(exc)) from None

    def sh(self, command: str, timeout: float | None = None) -> ShellResult:
        """``command`` on the phone, within ``timeout`` (default: the client's) for all of it;
        :class:`PhoneTimeout` past it."""
        limit = self.client.timeout if timeout is None else timeout
        with self._link():
            try:
                return self.client.shell(self.serial, command, timeout=limit)
            except TimeoutError:
                raise PhoneTimeout(self.serial, command, limit) from None

    def info(self) -> PhoneInfo:
        return parse_device_info(self.serial, self.sh(device_info_command()).stdout)

    def state(self) -> PhoneState:
        return parse_state(self.sh(state_command()).stdout)

    def push(self, local: Path, remote: str, mode: int = 0o644) -> None:
        with self._link():
            self.client.push(self.serial, local, remote, mode)

    def pull(self, remote: str, local: Path) -> None:
        with self._link():
            self.client.pull(self.serial, remote, local)

    def remote_size(self, remote: str) -> int | None:
        with self._link():
            st = self.client.stat(self.serial, remote)
        return st.size if st.exists else None
