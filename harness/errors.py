"""The one error family of vitbench. The CLI turns any of them into one line and a non-zero
exit; the dispatcher stores a failed cell with the error's ``kind``.

Every error carries its failure class as an attribute, never in its wording:

=================  =============================================================================
configuration      the user can fix it: a bad path, plan, flag, credential, a missing SDK
infrastructure     a device gone, a service down, a connection lost: worth retrying
model              the artifact or model cannot be built or run
measurement        it ran, but the numbers cannot be trusted
=================  =============================================================================
"""

from __future__ import annotations

KINDS = ("configuration", "infrastructure", "model", "measurement")


class VitbenchError(Exception):
    """Base of every error vitbench raises on purpose.

    The message is one line that says what is wrong and, where it helps, what to do.
    ``exit_code`` is what the CLI exits with; ``kind`` is one of :data:`KINDS`.
    """

    exit_code = 2
    kind = "configuration"

    def __init__(self, message: str, exit_code: int | None = None, kind: str | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        if kind is not None:
            if kind not in KINDS:
                raise ValueError(f"unknown failure kind {kind!r}")
            self.kind = kind


class UserError(VitbenchError):
    """Bad input from the user: a path, a plan, a flag, a missing SDK (``configuration``
    unless said otherwise)."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


class ConfigError(UserError):
    """A model configuration with unknown, missing or invalid fields."""


class VitbenchWarning(UserWarning):
    """A warning vitbench gives its user (a value an import had to guess): shown on the
    terminal as ``warning: ...`` and kept in the log, unlike third-party warnings, which
    only reach the log (harness.console)."""
