"""Errors a user can cause. The CLI turns them into one line and a non-zero exit."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a path, a plan, a flag, a missing SDK.

    The message is one line that says what is wrong and, where it helps, what to do.
    ``exit_code`` is 2 for usage errors unless a command documents another.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


class ConfigError(UserError):
    """A model configuration with unknown, missing or invalid fields."""
