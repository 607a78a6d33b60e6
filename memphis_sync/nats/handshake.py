"""The connect handshake on a fresh stream: read INFO, then (after CONNECT + PING) wait for PONG.

These run on the connecting thread, before the reader thread exists, with the per-attempt
deadline of ``connect_timeout``; an ``-ERR`` during the handshake becomes the error the server
meant (an authorization failure stays an :class:`~memphis_sync.errors.AuthorizationError`, so
wrong credentials are not retried as if the network had failed).

A peer that is not a NATS server (an HTTP or TLS server on the port, a peer sending garbage
or an endless line, one that closes at once) fails the attempt with a
:class:`~memphis_sync.errors.MemphisConnectError` that shows a short, printable excerpt of
what it sent, so the dialer moves on to the next server of the pool. The first bytes must
spell ``INFO``: anything else fails as soon as it arrives, without waiting for a line end; an
``INFO`` line without its CRLF fails once it passes the parser's bound for JSON lines.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Final

from ..errors import (
    AuthorizationError,
    ConnectTimeout,
    MemphisConnectError,
    ReadError,
    RemoteProtocolError,
    error_from_server,
)
from .protocol import EOF, NEED_DATA, PONG, Err, Info, Parser, Ping, Pong
from .transport import Stream

__all__ = ["read_info", "await_pong", "excerpt"]

#: Bytes of a peer's first words kept to show in the error when it is not a NATS server.
EXCERPT_BYTES: Final = 48
_NOT_NATS: Final = "is not a NATS server"


def excerpt(data: bytes, limit: int = EXCERPT_BYTES) -> str:
    """``data[:limit]`` as short printable text: ASCII kept, anything else (CR, LF, binary)
    escaped, ``...`` when cut."""
    text = data[:limit].decode("ascii", "backslashreplace")
    text = "".join(c if " " <= c <= "~" else repr(c)[1:-1] for c in text)
    return f"'{text}{'...' if len(data) > limit else ''}'"


class _Handshake:
    """One server's handshake: the stream, the parser, the deadline and what the peer sent."""

    def __init__(self, stream: Stream, parser: Parser, deadline: float, connect_timeout: float, server: str) -> None:
        self.stream, self.parser, self.deadline = stream, parser, deadline
        self.connect_timeout, self.server = connect_timeout, server
        self.seen = b""  # the first EXCERPT_BYTES + 1 bytes received (in this phase)

    def not_nats(self, why: str, show: bool = True) -> MemphisConnectError:
        got = "" if not show else f"; received {excerpt(self.seen)}" if self.seen else "; received nothing"
        return MemphisConnectError(f"{self.server} {_NOT_NATS} ({why}{got})")

    def timed_out(self, waiting_for: str) -> ConnectTimeout:
        hint = f" ({_NOT_NATS}? received {excerpt(self.seen)})" if self.seen else ""
        if waiting_for == "INFO" and not self.seen:
            hint = " (a NATS server sends INFO at once: is this a TLS-only or non-NATS port?)"
        return ConnectTimeout(f"no {waiting_for} from {self.server} within {self.connect_timeout} s{hint}")

    def next_event(self, waiting_for: str) -> Any:
        while True:
            try:
                event = self.parser.next_event()
            except RemoteProtocolError as exc:  # its message shows the offending bytes
                raise self.not_nats(f"{exc.args[0]}, while we waited for {waiting_for}", show=False) from exc
            if event is not NEED_DATA:
                if event is EOF:
                    if waiting_for == "INFO":
                        raise self.not_nats("it closed the connection before sending INFO")
                    raise MemphisConnectError(f"{self.server} closed the connection while we waited for {waiting_for}")
                return event
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise self.timed_out(waiting_for)
            try:
                data = self.stream.read(65536, timeout=left)
            except ReadError as exc:
                if isinstance(exc.__cause__, socket.timeout):
                    raise self.timed_out(waiting_for) from None
                raise MemphisConnectError(f"handshake with {self.server} failed: {exc}") from exc
            if len(self.seen) <= EXCERPT_BYTES:
                self.seen += data[: EXCERPT_BYTES + 1 - len(self.seen)]
                if waiting_for == "INFO" and not _could_be_info(self.seen):
                    raise self.not_nats("a NATS server starts with INFO")
            self.parser.receive_data(data)


def _could_be_info(first: bytes) -> bool:
    """False once the first bytes cannot start an INFO line (``INFO`` then a space or tab)."""
    head = first[:5].upper()
    return b"INFO "[: len(head)] == head or head == b"INFO\t"


def read_info(stream: Stream, parser: Parser, deadline: float, connect_timeout: float, server: str = "the server") -> Info:
    """Return the server's first INFO.

    Raises:
        ConnectTimeout: nothing in time.
        MemphisConnectError: the peer sent something else (it is not a NATS server: the
            message shows what it sent), or closed the connection.
    """
    shake = _Handshake(stream, parser, deadline, connect_timeout, server)
    event = shake.next_event("INFO")
    if isinstance(event, Info):
        return event
    raise shake.not_nats(f"expected INFO, got {type(event).__name__}")


def await_pong(stream: Stream, parser: Parser, deadline: float, connect_timeout: float, server: str = "the server") -> None:
    """Wait for the PONG that answers the PING sent after CONNECT (answering server PINGs).

    Raises:
        AuthorizationError: the server refused the credentials.
        MemphisConnectError: any other ``-ERR``, bytes that break the protocol, or the server
            closed the connection.
        ConnectTimeout: no PONG in time.
    """
    shake = _Handshake(stream, parser, deadline, connect_timeout, server)
    while True:
        event = shake.next_event("PONG")
        if isinstance(event, Pong):
            return
        if isinstance(event, Err):
            exc = error_from_server(event.message)
            if isinstance(exc, AuthorizationError):
                raise exc
            raise MemphisConnectError(f"handshake refused by {server}: {event.message}") from exc
        if isinstance(event, Ping):
            stream.write(PONG)
        # INFO / +OK during the handshake are harmless
