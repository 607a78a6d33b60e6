"""The whole exception hierarchy of memphis-sync, and the tables that map server replies to it.

Every exception raised on purpose by this package derives from :class:`MemphisError`, whose
``str()`` starts with ``"memphis: "``. Server strings (``-ERR`` lines) and JetStream error codes
are mapped to classes through tables, looked up by :func:`error_from_server` and
:func:`jetstream_error`, never through if-ladders.
"""

from __future__ import annotations

import builtins
from typing import Any, Final, List, Mapping, Optional, Type

__all__ = [
    "MemphisError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "PayloadTooLargeError",
    "NetworkError",
    "MemphisConnectError",
    "WebSocketUpgradeError",
    "ReadError",
    "WriteError",
    "ConnectionClosedError",
    "StaleConnectionError",
    "OutboundBufferFullError",
    "ForkedConnectionError",
    "MemphisTimeoutError",
    "ConnectTimeout",
    "RequestTimeout",
    "FlushTimeout",
    "MessageTimeout",
    "DrainTimeout",
    "MaxBlockTimeout",
    "UnconfirmedPublishWarning",
    "SubscriptionClosedError",
    "AuthorizationError",
    "PermissionViolationError",
    "ServerError",
    "SlowConsumerError",
    "NoRespondersError",
    "JetStreamError",
    "JetStreamNotEnabledError",
    "StreamNotFoundError",
    "StreamNameInUseError",
    "ConsumerNotFoundError",
    "ConsumerNameInUseError",
    "WrongLastSequenceError",
    "MessageNotFoundError",
    "MessageAlreadyAckedError",
    "NoStreamResponseError",
    "HeartbeatTimeout",
    "MemphisRequestError",
    "MemphisHeaderError",
    "MemphisSchemaError",
    "BrokerError",
    "RestError",
    "RestAuthError",
    "RestSchemaError",
    "RestServerError",
    "SERVER_ERRORS",
    "JETSTREAM_ERRORS",
    "error_from_server",
    "jetstream_error",
]


class MemphisError(Exception):
    """Root of every error raised by memphis-sync."""

    def __str__(self) -> str:
        # one prefix, also when the message quotes another memphis-sync error ("...: memphis: ...")
        text = super().__str__().replace(": memphis: ", ": ")
        return text if text.startswith("memphis: ") else "memphis: " + text


# -- protocol ------------------------------------------------------------------------------


class ProtocolError(MemphisError):
    """Abstract: something broke the NATS protocol (ours or the server's fault)."""


class LocalProtocolError(ProtocolError, ValueError):
    """We were about to send something illegal (a bad subject, header or name); nothing was sent."""


class RemoteProtocolError(ProtocolError):
    """The server sent bytes we cannot parse, or an over-long line or payload."""


class PayloadTooLargeError(LocalProtocolError):
    """A message is larger than the server's ``max_payload``; nothing was sent."""

    def __init__(self, size: int, max_payload: int) -> None:
        super().__init__(f"payload of {size} bytes exceeds the server's max_payload of {max_payload} bytes")
        self.size = size
        self.max_payload = max_payload


# -- network -------------------------------------------------------------------------------


class NetworkError(MemphisError):
    """Abstract: the socket failed or is not usable."""


class MemphisConnectError(NetworkError):
    """Could not connect or complete the handshake with any server."""


class WebSocketUpgradeError(MemphisConnectError):
    """A ``ws://``/``wss://`` server answered the WebSocket upgrade with an HTTP error.

    Attributes:
        status_code: the HTTP status of the answer (403, 404, ...).
    """

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ReadError(NetworkError):
    """Reading from the socket failed."""


class WriteError(NetworkError):
    """Writing to the socket failed."""


class ConnectionClosedError(NetworkError):
    """The connection was closed (by ``close()``, ``drain()`` or after giving up reconnecting)."""


class SubscriptionClosedError(MemphisError):
    """The subscription was unsubscribed, reached its message limit or its connection closed."""


class StaleConnectionError(NetworkError):
    """Too many PINGs went unanswered; the connection is considered dead."""


class OutboundBufferFullError(NetworkError):
    """A publish made while disconnected would overflow the bounded reconnect buffer."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"reconnect buffer full: {size} bytes buffered while disconnected, limit is {limit} bytes"
        )
        self.size = size
        self.limit = limit


class ForkedConnectionError(NetworkError):
    """A connection created in one process was used in a forked child process."""


# -- timeouts ------------------------------------------------------------------------------


class MemphisTimeoutError(MemphisError, builtins.TimeoutError):
    """Abstract: a blocking call ran out of time (also a builtin ``TimeoutError``)."""


class ConnectTimeout(MemphisTimeoutError):
    """Connecting (TCP, TLS or the CONNECT/PING handshake) took longer than the timeout."""


class RequestTimeout(MemphisTimeoutError):
    """No reply to a request arrived in time."""


class FlushTimeout(MemphisTimeoutError):
    """The PING/PONG round trip of ``flush()`` did not complete in time."""


class MessageTimeout(MemphisTimeoutError):
    """No message arrived on a subscription within the timeout."""


class DrainTimeout(MemphisTimeoutError):
    """``drain()`` could not finish processing pending messages in time."""


class UnconfirmedPublishWarning(RuntimeWarning):
    """The interpreter exited while a connection still had publishes (nonblocking produces)
    that the server had not confirmed; the warning gives their count."""


class MaxBlockTimeout(MemphisTimeoutError):
    """A publish waited ``max_block`` seconds for room and got none: JetStream's ack window
    stayed full (the broker is slow, paused or unreachable) or the socket took nothing (a
    stalled link). Nothing of that message was sent; it is safe to retry it."""


# -- server-reported -----------------------------------------------------------------------


class AuthorizationError(MemphisError):
    """The server refused our credentials (``-ERR 'Authorization Violation'`` and kin)."""

    #: Set by the dialer when it dropped the last server of the pool for refusing our
    #: credentials: the reconnect policy then stops retrying.
    final: bool = False


class PermissionViolationError(MemphisError):
    """The server refused a publish or subscribe for lack of permission."""


class ServerError(MemphisError):
    """The server sent an ``-ERR`` that has no more specific class."""


class SlowConsumerError(MemphisError):
    """A subscription's pending limit overflowed and messages were dropped."""

    def __init__(self, subject: str, sid: int, dropped: int) -> None:
        super().__init__(f"slow consumer on subject {subject!r} (sid {sid}): {dropped} message(s) dropped")
        self.subject = subject
        self.sid = sid
        self.dropped = dropped


class NoRespondersError(MemphisError):
    """A request reached no subscriber (the server answered with status 503)."""

    def __init__(self, subject: str) -> None:
        super().__init__(f"no responders on subject {subject!r}")
        self.subject = subject


# -- JetStream -----------------------------------------------------------------------------


class JetStreamError(MemphisError):
    """A JetStream API request failed; carries the server's ``code``, ``err_code`` and ``description``."""

    def __init__(self, description: str = "", *, code: int = 0, err_code: int = 0) -> None:
        super().__init__(
            f"{description} (code={code}, err_code={err_code})" if (code or err_code) else description
        )
        self.code = code
        self.err_code = err_code
        self.description = description


class JetStreamNotEnabledError(JetStreamError):
    """JetStream is not enabled on the server or for the account."""


class StreamNotFoundError(JetStreamError):
    """The named stream does not exist."""


class StreamNameInUseError(JetStreamError):
    """A stream with that name exists with a different configuration."""


class ConsumerNotFoundError(JetStreamError):
    """The named consumer does not exist."""


class ConsumerNameInUseError(JetStreamError):
    """A consumer with that name exists with a different configuration."""


class WrongLastSequenceError(JetStreamError):
    """An expected-last-sequence/msg-id header did not match the stream."""


class MessageNotFoundError(JetStreamError):
    """No message is stored at the requested sequence."""


class NoStreamResponseError(JetStreamError):
    """A JetStream publish got no answer from any stream (none bound to the subject, or JetStream unavailable)."""


class HeartbeatTimeout(MemphisTimeoutError):
    """A pull request's idle heartbeats stopped arriving: the server or the route is gone."""


class MessageAlreadyAckedError(MemphisError):
    """A JetStream message was already acknowledged (ack, nak or term may be sent once)."""


# -- Memphis -------------------------------------------------------------------------------


class MemphisRequestError(MemphisError):
    """A Memphis control-plane request was answered with an error string."""


class MemphisHeaderError(MemphisError, ValueError):
    """A message header is not allowed (reserved ``$memphis`` key, CR/LF, bad type)."""


class MemphisSchemaError(MemphisError):
    """A message failed schema validation, or a schema is invalid."""


# -- tables --------------------------------------------------------------------------------

#: ``-ERR`` texts (lower-cased, quotes stripped; matched as prefixes) → exception class.
SERVER_ERRORS: Final[Mapping[str, Type[MemphisError]]] = {
    "authorization violation": AuthorizationError,
    "authentication timeout": AuthorizationError,
    "authorization timeout": AuthorizationError,
    "user authentication expired": AuthorizationError,
    "user authentication revoked": AuthorizationError,
    "account authentication expired": AuthorizationError,
    "permissions violation": PermissionViolationError,
    "stale connection": StaleConnectionError,
    "maximum payload violation": ServerError,
    "slow consumer": ServerError,
}

#: JetStream ``err_code`` → exception class (nats-server's error codes).
JETSTREAM_ERRORS: Final[Mapping[int, Type[JetStreamError]]] = {
    10039: JetStreamNotEnabledError,
    10076: JetStreamNotEnabledError,
    10059: StreamNotFoundError,
    10058: StreamNameInUseError,
    10014: ConsumerNotFoundError,
    10013: ConsumerNameInUseError,
    10105: ConsumerNameInUseError,
    10148: ConsumerNameInUseError,
    10149: ConsumerNotFoundError,
    10071: WrongLastSequenceError,
    10070: WrongLastSequenceError,
    10037: MessageNotFoundError,
}


def error_from_server(text: str) -> MemphisError:
    """Build the exception for an ``-ERR`` line's text (without the ``-ERR`` and quotes)."""
    key = text.strip().strip("'").strip().lower()
    for prefix, cls in SERVER_ERRORS.items():
        if key.startswith(prefix):
            return cls(f"server error: {text.strip()}")
    return ServerError(f"server error: {text.strip()}")


def jetstream_error(error: Optional[Mapping[str, Any]]) -> JetStreamError:
    """Build the exception for a JetStream API ``{"error": {...}}`` object."""
    error = dict(error or {})
    code = int(error.get("code") or 0)
    err_code = int(error.get("err_code") or 0)
    description = str(error.get("description") or "JetStream API error")
    cls: Type[JetStreamError] = JETSTREAM_ERRORS.get(err_code, JetStreamError)
    if cls is JetStreamError and code == 503:
        cls = JetStreamNotEnabledError
    return cls(description, code=code, err_code=err_code)


# -- local broker --------------------------------------------------------------------------


class BrokerError(MemphisError):
    """The local broker (a ``nats-server`` run by :mod:`memphis_sync.broker`) could not start or stop."""


# -- REST gateway (memphis_sync.rest) ------------------------------------------------------


class RestError(MemphisError):
    """A Memphis REST gateway answered with an HTTP error; also the base of the typed ones below.

    Attributes:
        status: The HTTP status code.
        reply: The decoded JSON reply (or its text when it was not JSON).
        results: Per-message outcomes of a batch produce (``None`` for a message that was
            stored, its error text otherwise), when the gateway sent them; else None.
    """

    def __init__(self, message: str, *, status: int, reply: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.reply = reply
        found = reply.get("results") if isinstance(reply, dict) else None
        self.results: Optional[List[Optional[str]]] = (
            [None if item.get("success") else str(item.get("error")) for item in found if isinstance(item, dict)]
            if isinstance(found, list) else None
        )


class RestAuthError(RestError, AuthorizationError):
    """401 from the REST gateway: wrong credentials, or a token that is bad or expired."""


class RestSchemaError(RestError, MemphisSchemaError):
    """400 from the REST gateway because a message failed the station's schema validation."""


class RestServerError(RestError, ServerError):
    """5xx from the REST gateway: it or the broker behind it failed (a retry may succeed)."""


# -- Memphis API arguments -----------------------------------------------------------------


class MemphisValueError(MemphisError, ValueError):
    """An argument of a Memphis call is invalid (a name, a size, an enum value); nothing was sent."""


class MemphisMessageTypeError(MemphisSchemaError, TypeError):
    """``produce()`` got a message of a type it cannot encode (also a ``TypeError``); nothing was sent."""
