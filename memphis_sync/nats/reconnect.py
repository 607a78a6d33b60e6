"""The reconnect policy and the one place that builds tenacity objects from it.

Why tenacity: the reconnect loop is "try the next server; on a network failure wait (fixed or
exponential, plus jitter) and try again, up to N attempts or forever; log before each sleep".
That is exactly a ``tenacity.Retrying``; writing it by hand would duplicate a well-tested
library. The connection calls :func:`build_retrying` once per disconnect and runs its attempt
function inside it. Tests inject ``tenacity.wait_none()`` through :attr:`ReconnectPolicy.wait`
overrides (``wait=0``) so they never sleep.

One attempt = one connect try to one server of the pool (servers rotate between attempts).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

import attrs
import tenacity

from .. import _defaults
from .._timeouts import check_wait
from ..errors import AuthorizationError, ConnectTimeout, NetworkError
from .protocol import check_int

__all__ = ["ReconnectPolicy", "build_retrying"]

logger = logging.getLogger("memphis_sync.connection")


def _non_negative(instance: object, attribute: "attrs.Attribute[float]", value: float) -> None:
    check_wait(value, attribute.name)


def _attempts(instance: object, attribute: "attrs.Attribute[int]", value: int) -> None:
    check_int(value, f"{attribute.name} (-1 = forever)", -1)


def _retryable(exc: BaseException) -> bool:
    # ``final`` marks an error after which no server is left to try
    return isinstance(exc, (NetworkError, ConnectTimeout, AuthorizationError)) and not getattr(exc, "final", False)


@attrs.frozen(kw_only=True)
class ReconnectPolicy:
    """How a connection reconnects after losing its server.

    Raises:
        LocalProtocolError: (also a ``ValueError``) a count that is not an int >= -1, or a
            wait that is not a number of seconds >= 0.

    Attributes:
        enabled: reconnect at all; when False a lost connection is closed.
        max_attempts: connect attempts before giving up; -1 = forever, 0 = never retry.
            Honoured as given (no silent cap). Default: ``_defaults.MAX_RECONNECT``.
        wait: seconds between attempts (``_defaults.RECONNECT_WAIT``); the first attempt after a
            disconnect is immediate.
        wait_max: cap of the wait when ``backoff`` > 1 (``_defaults.RECONNECT_WAIT_MAX``).
        backoff: multiplier of the wait after each failed attempt; 1 = fixed wait.
        jitter: up to this many random seconds added to each wait (``_defaults.RECONNECT_JITTER``).
    """

    enabled: bool = True
    max_attempts: int = attrs.field(default=_defaults.MAX_RECONNECT, validator=_attempts)
    wait: float = attrs.field(default=_defaults.RECONNECT_WAIT, validator=_non_negative)
    wait_max: float = attrs.field(default=_defaults.RECONNECT_WAIT_MAX, validator=_non_negative)
    backoff: float = attrs.field(default=1.0, validator=_non_negative)
    jitter: float = attrs.field(default=_defaults.RECONNECT_JITTER, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        # inf or a huge wait: the longest wait a threading primitive takes (the checks passed)
        for name in ("wait", "wait_max", "jitter"):
            object.__setattr__(self, name, check_wait(getattr(self, name), name))


def _log_retry(what: str, next_server: Optional[Callable[[], str]]) -> Callable[[tenacity.RetryCallState], None]:
    """The ``before_sleep`` hook: one WARNING per failed attempt naming the attempt, what
    failed, the server tried next and the wait (tenacity's own says "Retrying <unknown>")."""

    def log(state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        target = next_server() if next_server is not None else "the server"
        logger.warning("%s attempt %d failed: %s; next attempt to %s in %.2f s",
                       what, state.attempt_number, error, target, wait)

    return log


def build_retrying(
    policy: ReconnectPolicy,
    stop_event: Optional[threading.Event] = None,
    *,
    what: str = "reconnect",
    next_server: Optional[Callable[[], str]] = None,
) -> tenacity.Retrying:
    """Build the ``tenacity.Retrying`` that drives one reconnect episode.

    Network failures and authorization failures are retried (the connection itself drops a
    server whose credentials are refused twice); anything else propagates at once. Sleeping
    uses ``stop_event.wait`` so ``close()`` interrupts a reconnect wait immediately. Each failed
    attempt is logged (``what`` names the episode: ``"connect"`` or ``"reconnect"``;
    ``next_server`` gives the server tried next, credentials hidden).
    """
    if policy.max_attempts < 0:
        stop: tenacity.stop.stop_base = tenacity.stop_never
    else:
        stop = tenacity.stop_after_attempt(max(1, policy.max_attempts))
    if stop_event is not None:
        stop = stop | tenacity.stop_when_event_set(stop_event)
    if policy.backoff > 1:
        wait: tenacity.wait.wait_base = tenacity.wait_exponential(
            multiplier=policy.wait, exp_base=policy.backoff, max=policy.wait_max
        )
    else:
        wait = tenacity.wait_fixed(policy.wait)
    if policy.jitter:
        wait = wait + tenacity.wait_random(0, policy.jitter)
    sleep: Callable[[float], None] = tenacity.nap.sleep if stop_event is None else tenacity.nap.sleep_using_event(stop_event)
    return tenacity.Retrying(
        stop=stop,
        wait=wait,
        sleep=sleep,
        retry=tenacity.retry_if_exception(_retryable),
        before_sleep=_log_retry(what, next_server),
        reraise=True,
    )
