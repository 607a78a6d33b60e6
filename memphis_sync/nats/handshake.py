"""The connect handshake on a fresh stream: read INFO, then (after CONNECT + PING) wait for PONG.

These run on the connecting thread, before the reader thread exists, with the per-attempt
deadline of ``connect_timeout``; an ``-ERR`` during the handshake becomes the error the server
meant (an authorization failure stays an :class:`~memphis_sync.errors.AuthorizationError`, so
wrong credentials are not retried as if the network had failed).
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import AuthorizationError, ConnectTimeout, MemphisConnectError, ReadError, error_from_server
from .protocol import EOF, NEED_DATA, PONG, Err, Info, Parser, Ping, Pong
from .transport import Stream

__all__ = ["read_info", "await_pong"]


def read_info(stream: Stream, parser: Parser, deadline: float, connect_timeout: float) -> Info:
    """Return the server's first INFO.

    Raises:
        ConnectTimeout: nothing in time.
        MemphisConnectError: the server sent something else, or closed the connection.
    """
    event = _next_event(stream, parser, deadline, "INFO", connect_timeout)
    if isinstance(event, Info):
        return event
    raise MemphisConnectError(f"expected INFO from the server, got {event!r}")


def await_pong(stream: Stream, parser: Parser, deadline: float, connect_timeout: float) -> None:
    """Wait for the PONG that answers the PING sent after CONNECT (answering server PINGs).

    Raises:
        AuthorizationError: the server refused the credentials.
        MemphisConnectError: any other ``-ERR``, or the server closed the connection.
        ConnectTimeout: no PONG in time.
    """
    while True:
        event = _next_event(stream, parser, deadline, "PONG", connect_timeout)
        if isinstance(event, Pong):
            return
        if isinstance(event, Err):
            exc = error_from_server(event.message)
            if isinstance(exc, AuthorizationError):
                raise exc
            raise MemphisConnectError(f"handshake refused: {event.message}") from exc
        if isinstance(event, Ping):
            stream.write(PONG)
        # INFO / +OK during the handshake are harmless


def _next_event(stream: Stream, parser: Parser, deadline: float, waiting_for: str, connect_timeout: float) -> Any:
    while True:
        event = parser.next_event()
        if event is not NEED_DATA:
            if event is EOF:
                raise MemphisConnectError(f"server closed the connection while we waited for {waiting_for}")
            return event
        left = deadline - time.monotonic()
        if left <= 0:
            raise ConnectTimeout(f"no {waiting_for} from the server within {connect_timeout} s")
        try:
            data = stream.read(65536, timeout=left)
        except ReadError as exc:
            raise MemphisConnectError(f"handshake failed: {exc}") from exc
        parser.receive_data(data)
