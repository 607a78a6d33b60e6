"""NATS over WebSocket: a :class:`~memphis_sync.nats.transport.Stream` that frames the bytes of
another stream (plain TCP, or TLS for ``wss://``) as RFC 6455 binary messages.

nats-server (and so the Memphis broker, port 7770) carries the ordinary NATS text protocol
inside WebSocket binary frames; either side may split one NATS frame across WebSocket frames or
put several in one. The framing is done by wsproto, a sans-IO library: it owns no socket, so the
stream underneath keeps every property the connection relies on (writes bounded by the caller's
deadline with the unsent bytes queued in order, reads only by the reader thread, Ctrl-C safety).

Thread rules are those of :class:`~memphis_sync.nats.transport.Stream`: the reader thread calls
:meth:`WebSocketStream.read`, the holder of the connection's send lock calls
:meth:`WebSocketStream.write`. The wsproto state is shared by both, so every call into it takes
``_ws_lock``, a short lock never held during socket I/O (the :class:`TlsStream` pattern).

* Each :meth:`~WebSocketStream.write` sends its bytes as **one** masked binary message: the
  outbox hands over every queued NATS frame at once, so many publishes cost one WebSocket
  header and one mask, not one each.
* Control frames from the server: a PING is answered with a PONG (queued, then written by the
  next writer: ``wakeup`` asks the connection's flusher to come), a CLOSE with a CLOSE, after
  which :meth:`~WebSocketStream.read` reports the end of the stream. Fragmented messages and
  text frames are delivered as the bytes they carry.
* A server that answers the upgrade with an HTTP error fails the connect with
  :class:`~memphis_sync.errors.WebSocketUpgradeError` naming the status (the dialer then tries
  the next server of the pool).
"""

from __future__ import annotations

import http
import logging
import socket
import threading
import time
from typing import Callable, List, Optional, Union

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError as WsLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from ..errors import ConnectTimeout, MemphisConnectError, ReadError, RemoteProtocolError, WebSocketUpgradeError, WriteError
from .servers import ServerAddress
from .transport import Stream

__all__ = ["WebSocketStream", "open_websocket"]

logger = logging.getLogger("memphis_sync.transport")

#: Close codes after which the end of the stream is an ordinary disconnect (RFC 6455 §7.4.1:
#: normal closure, going away, no status); any other code is logged as the server's complaint.
_ORDINARY_CLOSE = frozenset({1000, 1001, 1005, 1006})
#: How much of an HTTP error body goes into the connect error.
_BODY_QUOTE = 200
_READ_SIZE = 65536


class WebSocketStream(Stream):
    """NATS bytes as WebSocket binary messages over ``inner`` (see the module docstring).

    The constructor performs the HTTP upgrade (``GET path`` with ``Host: host``), bounded by
    ``deadline`` (``time.monotonic()``).

    Raises:
        WebSocketUpgradeError: the server answered the upgrade with an HTTP status other
            than 101 (``status_code`` holds it).
        ConnectTimeout: no answer to the upgrade before ``deadline``.
        MemphisConnectError: the answer was not HTTP, or the server closed the connection.
    """

    def __init__(
        self,
        inner: Stream,
        *,
        host: str,
        path: str,
        url: str,
        deadline: float,
        wakeup: Optional[Callable[[], None]] = None,
    ) -> None:
        self._inner = inner
        self._url = url
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._ws_lock = threading.Lock()
        self._write_lock = threading.Lock()  # writers (send-lock holder) vs close()'s last frame
        self._control = b""  # control frames (PONG, CLOSE) waiting for the next writer
        self._ready: List[Union[bytes, bytearray]] = []  # data that arrived with the upgrade answer
        self._eof = False
        self._error: Optional[BaseException] = None
        self._closed = False
        #: close code and reason the server sent (None until a CLOSE frame arrived)
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None
        self.wakeup = wakeup
        self._upgrade(host, path, deadline)

    # -- the upgrade -------------------------------------------------------------------------

    def _upgrade(self, host: str, path: str, deadline: float) -> None:
        what = f"websocket upgrade with {self._url}"
        request = self._ws.send(Request(host=host, target=path))
        try:
            sent = self._inner.write(request, deadline)
        except WriteError as exc:
            raise MemphisConnectError(f"{what}: {exc}") from exc
        if not sent:
            raise ConnectTimeout(f"{what}: the server took no upgrade request in time")
        head = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConnectTimeout(f"{what}: no answer in time")
            try:
                data = self._inner.read(_READ_SIZE, timeout=left)
            except ReadError as exc:
                if isinstance(exc.__cause__, socket.timeout):
                    raise ConnectTimeout(f"{what}: no answer in time") from exc
                raise MemphisConnectError(f"{what}: {exc}") from exc
            if not data:
                raise MemphisConnectError(f"{what}: the server closed the connection before answering")
            head += data
            if not b"HTTP/".startswith(head[:5]):  # e.g. the INFO of a plain NATS port
                raise MemphisConnectError(f"{what}: the answer is not a websocket upgrade (it starts with {head[:40]!r})")
            try:
                self._ws.receive_data(data)
                events = list(self._ws.events())
            except WsRemoteProtocolError as exc:
                raise MemphisConnectError(f"{what}: the answer is not a websocket upgrade ({exc})") from exc
            for index, event in enumerate(events):
                if isinstance(event, RejectConnection):
                    body = b"".join(e.data for e in events[index + 1:] if isinstance(e, RejectData))
                    raise _rejected(self._url, event.status_code, body)
                if isinstance(event, AcceptConnection):
                    # frames that came in the same read as the 101 (the server's INFO)
                    self._handle(events[index + 1:])
                    logger.debug("websocket upgrade with %s accepted", self._url)
                    return

    # -- reading (the reader thread) -----------------------------------------------------------

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._ready:
                data = b"".join(self._ready)
                self._ready.clear()
                return data
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            left = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ReadError("read: timed out")
            raw = self._inner.read(max(max_bytes, _READ_SIZE), left)
            with self._ws_lock:
                try:
                    self._ws.receive_data(raw or None)  # None: the TCP connection ended
                except WsLocalProtocolError:  # bytes after the close handshake: ignored
                    self._eof = True
                    continue
                events = list(self._ws.events())
            self._handle(events)

    def _handle(self, events: List[Event]) -> None:
        """Queue the data of ``events``, answer their control frames."""
        ready = self._ready
        wake = False
        for event in events:
            if isinstance(event, BytesMessage):
                ready.append(event.data)
            elif isinstance(event, TextMessage):  # nats-server sends binary; accept text too
                ready.append(event.data.encode("utf-8"))
            elif isinstance(event, Ping):
                self._queue_control(event.response())
                wake = True
            elif isinstance(event, CloseConnection):
                wake = self._on_close(event) or wake
        if wake and self.wakeup is not None:
            self.wakeup()

    def _on_close(self, event: CloseConnection) -> bool:
        """The server closed (or wsproto found its frames malformed). Returns True when a
        CLOSE frame was queued for the next writer."""
        self._eof = True
        state = self._ws.state
        if state is ConnectionState.OPEN:  # wsproto's verdict on a malformed frame: we close
            self._error = RemoteProtocolError(f"websocket: bad frame from {self._url}: {event.reason} (code {event.code})")
            self._queue_control(CloseConnection(code=event.code, reason=None))
            return True
        self.close_code, self.close_reason = event.code, event.reason
        if event.code not in _ORDINARY_CLOSE:
            logger.warning("websocket: %s closed the connection: code %s %s", self._url, event.code, event.reason or "")
        if state is ConnectionState.REMOTE_CLOSING:  # answer the close handshake
            self._queue_control(event.response())
            return True
        return False

    def _queue_control(self, event: Event) -> None:
        with self._ws_lock:
            try:
                frame = self._ws.send(event)
            except WsLocalProtocolError:  # the connection is already closing: nothing to send
                return
            self._control += frame

    # -- writing (the send-lock holder) ----------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._inner.pending + len(self._control)

    @property
    def last_progress(self) -> float:
        return self._inner.last_progress

    @last_progress.setter
    def last_progress(self, value: float) -> None:
        self._inner.last_progress = value

    def write(self, data: bytes, deadline: Optional[float] = None) -> bool:
        with self._write_lock:
            return self._write(data, deadline)

    def _write(self, data: bytes, deadline: Optional[float]) -> bool:
        out = b""
        if self._control or data:
            with self._ws_lock:
                out, self._control = self._control, b""
                if data:
                    try:
                        frame = self._ws.send(BytesMessage(data=data))
                    except WsLocalProtocolError as exc:
                        raise WriteError(f"write: the websocket to {self._url} is closing") from exc
                    out = out + frame if out else frame  # no copy in the common case
        return self._inner.write(out, deadline)

    def close(self, *, shutdown: bool = True) -> None:
        if shutdown and not self._closed and self._write_lock.acquire(False):
            # best effort, without waiting: our CLOSE (or the answer to the server's)
            try:
                if self._ws.state is ConnectionState.OPEN:
                    self._queue_control(CloseConnection(code=1000))
                if self._control:
                    self._write(b"", time.monotonic())
            except Exception:  # the socket is going away anyway
                logger.debug("websocket: could not send the close frame", exc_info=True)
            finally:
                self._write_lock.release()
        self._closed = True
        self._inner.close(shutdown=shutdown)


def _rejected(url: str, status: int, body: bytes) -> WebSocketUpgradeError:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "unknown status"
    text = body[:_BODY_QUOTE].decode("utf-8", "replace").strip()
    detail = f": {text}" if text else ""
    return WebSocketUpgradeError(
        f"websocket upgrade with {url} refused: HTTP {status} {phrase}{detail}", status_code=status,
    )


def open_websocket(inner: Stream, server: ServerAddress, deadline: float, wakeup: Optional[Callable[[], None]] = None) -> WebSocketStream:
    """Upgrade ``inner`` (connected to ``server``, TLS already done for ``wss://``) to NATS over
    WebSocket; bounded by ``deadline``. Raises as :class:`WebSocketStream`."""
    host = f"[{server.host}]" if ":" in server.host else server.host
    if server.port != (443 if server.tls else 80):
        host = f"{host}:{server.port}"
    return WebSocketStream(inner, host=host, path=server.path, url=server.url, deadline=deadline, wakeup=wakeup)
