"""Talking to Qualcomm AI Hub through its own client (``qai_hub``): the token, and what a
failed call means for vitbench.

The token comes from the client's own configuration (``~/.qai_hub/client.ini``, written by
``qai-hub configure --api_token ...``, or the file named by ``QAIHUB_CLIENT_INI``) or from
``QAI_HUB_API_TOKEN``, which vitbench hands to the client. It is never printed, logged or
stored: vitbench keeps only the client object.
"""

from __future__ import annotations

import configparser
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from harness.errors import UserError
from harness.target import TargetError

TOKEN_ENV = "QAI_HUB_API_TOKEN"
TOKEN_HELP = (
    f"get a token from your AI Hub account page and run `qai-hub configure --api_token TOKEN` "
    f"(or set {TOKEN_ENV})"
)

T = TypeVar("T")


class HubAuthError(UserError):
    """No token, or a token the hub rejects."""


def _sdk():
    try:
        import qai_hub
    except ImportError:  # pragma: no cover - qai-hub is a dependency
        raise UserError(
            "the AI Hub target needs the qai-hub package: pip install 'qai-hub>=0.56'"
        ) from None
    return qai_hub


def load_config():
    """The client's configuration, with the token from the environment when it is set."""
    from qai_hub import api_utils
    from qai_hub.public_rest_api import DEFAULT_HUB_API_URL, DEFAULT_HUB_WEB_URL, ClientConfig

    path = api_utils.get_config_path()
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        api_url, web_url = DEFAULT_HUB_API_URL, DEFAULT_HUB_WEB_URL
        if os.path.exists(path):
            ini = configparser.ConfigParser()
            ini.read(path)
            if ini.has_section("api"):
                api_url = ini["api"].get("api_url", api_url)
                web_url = ini["api"].get("web_url", web_url)
        return ClientConfig(api_token=token, api_url=api_url, web_url=web_url, verbose=False)
    if not os.path.exists(path):
        raise HubAuthError(f"no AI Hub token: {path} does not exist; {TOKEN_HELP}")
    try:
        config = api_utils.load_api_config_from_file(path)
    except Exception:  # noqa: BLE001 - the client raises a bare APIException for missing fields
        raise HubAuthError(f"no AI Hub token in {path}; {TOKEN_HELP}") from None
    if not config.api_token:
        raise HubAuthError(f"no AI Hub token in {path}; {TOKEN_HELP}")
    config.verbose = False  # no progress bars or prints in vitbench's output
    return config


def connect():
    """A ``qai_hub.Client`` configured as above (no network traffic yet)."""
    hub = _sdk()
    return hub.Client(config=load_config())


def one_line(text: str) -> str:
    """The hub's message without the client's boxes and line breaks."""
    lines = []
    for raw in str(text).splitlines():
        s = raw.strip().strip("│|┌┐└┘─").strip()
        if s:
            lines.append(s)
    return " ".join(lines)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for rate limiting (HTTP 429) and hub-side errors (5xx, connection lost),
    on top of the client's own short retries."""

    attempts: int = 6
    base_s: float = 5.0
    max_s: float = 120.0

    def delay(self, attempt: int) -> float:
        d = min(self.max_s, self.base_s * (2**attempt))
        return d * (0.5 + random.random() / 2)


def translate(exc: BaseException, what: str) -> Exception:
    """A client exception as a vitbench error: auth failures stop the run (HubAuthError),
    everything else fails one cell (TargetError, classified)."""
    import requests
    from qai_hub.client import InternalError, RateLimitedError
    from qai_hub.client import UserError as HubUserError
    from qai_hub.public_rest_api import APIException

    msg = one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, HubUserError):
        if msg.startswith(("Failed to authenticate", "Failed to load configuration")):
            return HubAuthError(f"AI Hub rejected the API token; {TOKEN_HELP}")
        return TargetError(f"{what}: AI Hub refused it: {msg}", kind="model", retryable=False)
    if isinstance(exc, RateLimitedError):
        return TargetError(
            f"{what}: AI Hub kept rate-limiting the request: {msg}", kind="infrastructure"
        )
    if isinstance(exc, InternalError):
        return TargetError(f"{what}: AI Hub failed: {msg}", kind="infrastructure")
    if isinstance(exc, APIException):
        if exc.status_code == 401:
            return HubAuthError(f"AI Hub rejected the API token; {TOKEN_HELP}")
        retry = exc.status_code is None or exc.status_code == 429 or exc.status_code >= 500
        return TargetError(
            f"{what}: AI Hub answered {exc.status_code}: {msg}",
            kind="infrastructure" if retry else "model",
            retryable=retry,
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return TargetError(f"{what}: cannot reach AI Hub: {msg}", kind="infrastructure")
    if isinstance(exc, ValueError) and "Failed to create" in str(exc):
        return TargetError(f"{what}: {msg}", kind="model", retryable=False)
    raise exc  # a programming error keeps its traceback


def call(
    fn: Callable[..., T],
    *args: Any,
    what: str,
    retry: RetryPolicy | None = None,
    on_retry: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)`` with client errors translated and retryable ones retried."""
    retry = retry or RetryPolicy()
    attempt = 0
    while True:
        try:
            return fn(*args, **kwargs)
        except (HubAuthError, TargetError):
            raise
        except Exception as exc:  # noqa: BLE001 - translate() re-raises what it does not know
            err = translate(exc, what)
            if isinstance(err, TargetError) and err.retryable and attempt + 1 < retry.attempts:
                if on_retry is not None:
                    on_retry(f"{err} (retry {attempt + 1} of {retry.attempts - 1})")
                time.sleep(retry.delay(attempt))
                attempt += 1
                continue
            raise err from None
