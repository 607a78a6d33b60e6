"""The checks of :class:`~memphis_sync.nats.connection.Connection`'s options, once, before
anything is dialled: a wrong type or value raises :class:`~memphis_sync.errors.LocalProtocolError`
naming the option, never a raw ``TypeError`` later, nor a CONNECT the server cannot read.

:func:`check_bool` and :func:`check_str` take an ``error`` class so the Memphis layer raises its
own :class:`~memphis_sync.errors.MemphisValueError` with the same checks.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .._timeouts import check_timeout, check_wait
from ..errors import LocalProtocolError
from .outbox import _WRITE_HIGH_WATER
from .protocol import check_int, validate_publish_subject
from .reconnect import ReconnectPolicy
from .servers import TlsOptions

__all__ = ["check_bool", "check_str", "check_options"]


def check_bool(value: Any, what: str, *, error: type = LocalProtocolError) -> bool:
    """Return ``value`` if it is a ``bool``.

    Raises:
        LocalProtocolError: (or ``error``) naming ``what``.
    """
    if not isinstance(value, bool):
        raise error(f"{what} must be a bool, got {type(value).__name__}: {value!r}")
    return value


def check_str(value: Any, what: str, *, or_none: bool = False, secret: bool = False, error: type = LocalProtocolError) -> Optional[str]:
    """Return ``value`` if it is a ``str`` (or None with ``or_none``); a ``secret`` is not shown.

    Raises:
        LocalProtocolError: (or ``error``) naming ``what`` and the type given.
    """
    if value is None and or_none:
        return None
    if not isinstance(value, str):
        shown = type(value).__name__ if secret else f"{type(value).__name__}: {value!r}"
        raise error(f"{what} must be a str{' or None' if or_none else ''}, got {shown}")
    return value


def check_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """Check the keyword options of ``Connection.__init__`` (a dict of them) and return the
    normalised ones: ``connect_timeout``, ``ping_interval`` and ``max_block`` in seconds.

    Raises:
        LocalProtocolError: a bad option (nothing was sent).
    """
    token, user, password = options["token"], options["user"], options["password"]
    check_str(options["name"], "name", or_none=True)
    for value, what in ((token, "token"), (user, "user"), (password, "password")):
        check_str(value, what, or_none=True, secret=what != "user")
    if token is not None and (user is not None or password is not None):
        raise LocalProtocolError("give either token or user/password, not both")
    if (user is None) != (password is None):
        raise LocalProtocolError("user and password must be given together")
    for what in ("no_echo", "randomize", "ignore_discovered_servers", "retry_on_failed_connect"):
        check_bool(options[what], what)
    if options["tls"] is not None and not isinstance(options["tls"], TlsOptions):
        raise LocalProtocolError(f"tls must be TlsOptions (a ready context: TlsOptions(context=...)), got {type(options['tls']).__name__}")
    if options["reconnect"] is not None and not isinstance(options["reconnect"], ReconnectPolicy):
        raise LocalProtocolError(f"reconnect must be a ReconnectPolicy or None, got {type(options['reconnect']).__name__}")
    for what, value in options.items():
        if what.startswith("on_") and value is not None and not callable(value):
            raise LocalProtocolError(f"{what} must be callable or None, got {value!r}")
    check_int(options["reconnect_buffer_size"], "reconnect_buffer_size", 0)
    check_int(options["outbound_buffer_size"], "outbound_buffer_size", _WRITE_HIGH_WATER)
    check_int(options["max_pings_outstanding"], "max_pings_outstanding", 1)
    validate_publish_subject(options["inbox_prefix"])
    return {
        "connect_timeout": check_wait(options["connect_timeout"], "connect_timeout", above_zero=True),
        "ping_interval": check_wait(options["ping_interval"], "ping_interval", above_zero=True),
        "max_block": check_timeout(options["max_block"], "max_block"),
    }
