"""Byte streams under the connection: plain TCP and TLS, with OS errors translated once.

A stream has exactly two users at a time: the connection's reader thread calls :meth:`read`,
and whoever holds the connection's send lock calls :meth:`write`. Plain sockets allow that
concurrency natively. For TLS we do not share one ``ssl.SSLSocket`` between a reading and a
writing thread (OpenSSL forbids concurrent use of one ``SSL`` object); instead the TLS state
lives in an :class:`ssl.SSLObject` over memory BIOs, guarded by a short lock that is never held
during socket I/O, so a blocked ``sendall`` can never stop the reader from draining the socket.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from typing import Callable, Iterator, Optional

from .errors import ConnectTimeout, MemphisConnectError, ReadError, WriteError

__all__ = ["Stream", "SocketStream", "TlsStream", "open_tcp", "map_exceptions"]

logger = logging.getLogger(__name__)

#: A write that makes no progress for this long is a dead peer (nats.go flusher timeout: 1 min).
WRITE_DEADLINE = 60.0


@contextlib.contextmanager
def map_exceptions(cls: type, what: str) -> Iterator[None]:
    """Translate ``OSError``/``ssl.SSLError`` raised inside the block into ``cls``."""
    try:
        yield
    except socket.timeout as exc:  # before OSError: socket.timeout is a subclass
        raise (ConnectTimeout if cls is MemphisConnectError else cls)(f"{what}: timed out") from exc
    except (OSError, ssl.SSLError) as exc:
        raise cls(f"{what}: {exc}") from exc


def _send_all(sock: socket.socket, data: bytes) -> None:
    """Send every byte of ``data``, even if a signal handler raises in the middle.

    ``socket.sendall`` gives up half-way when a signal handler raises (Ctrl-C in a script, an
    interrupted Jupyter cell), leaving part of a frame on the shared socket: every later frame
    would then be garbage to the server. We track progress with ``send`` instead, finish the
    buffer (whole frames only ever reach the wire), then re-raise what the handler raised.

    Raises:
        WriteError: the socket failed (the stream must then be dropped).
    """
    view = memoryview(data)
    total = len(view)
    sent = 0
    interrupted: Optional[BaseException] = None
    while sent < total:
        try:
            sent += sock.send(view[sent:])
        except OSError as exc:
            raise WriteError(f"write: {exc}") from exc
        except BaseException as exc:  # raised by a signal handler, e.g. KeyboardInterrupt
            if interrupted is None:
                interrupted = exc
    if interrupted is not None:
        raise interrupted


class Stream:
    """Interface of a connected byte stream (see the module docstring for the thread rules)."""

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        """Block until some bytes arrive; ``b""`` means the peer closed. Raises ReadError."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Send all of ``data``. Raises WriteError."""
        raise NotImplementedError

    def close(self, *, shutdown: bool = True) -> None:
        """Close; ``shutdown=False`` only drops our file descriptor (used in a forked child)."""
        raise NotImplementedError


def open_tcp(host: str, port: int, timeout: float) -> socket.socket:
    """Connect a TCP socket with Nagle off and a kernel-side write deadline.

    Raises:
        ConnectTimeout: the TCP connect took longer than ``timeout``.
        MemphisConnectError: the connect failed.
    """
    with map_exceptions(MemphisConnectError, f"connect to {host}:{port}"):
        sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        secs = int(WRITE_DEADLINE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", secs, 0))
    except OSError:  # pragma: no cover - platform without these options
        logger.debug("could not set socket options", exc_info=True)
    return sock


class SocketStream(Stream):
    """A plain TCP stream."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout: Optional[float] = sock.gettimeout()

    def _set_timeout(self, timeout: Optional[float]) -> None:
        # settimeout() puts the socket in non-blocking mode plus poll(); only touch it on change
        if timeout != self._timeout:
            self._sock.settimeout(timeout)
            self._timeout = timeout

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        self._set_timeout(timeout)
        with map_exceptions(ReadError, "read"):
            return self._sock.recv(max_bytes)

    def write(self, data: bytes) -> None:
        _send_all(self._sock, data)

    def close(self, *, shutdown: bool = True) -> None:
        if shutdown:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()


class TlsStream(SocketStream):
    """TLS over a TCP socket, using an ``SSLObject`` on memory BIOs (see the module docstring)."""

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        server_hostname: Optional[str],
        timeout: float,
        wakeup: Optional[Callable[[], None]] = None,
    ) -> None:
        super().__init__(sock)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls_lock = threading.Lock()
        self._obj = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        #: called when reading produced TLS records that must be sent (post-handshake messages)
        self.wakeup = wakeup
        self._handshake(timeout)

    def _handshake(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_outgoing()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ConnectTimeout("TLS handshake timed out") from None
                self._set_timeout(left)
                with map_exceptions(MemphisConnectError, "TLS handshake"):
                    data = self._sock.recv(65536)
                if not data:
                    raise MemphisConnectError("TLS handshake: server closed the connection")
                self._incoming.write(data)
            except ssl.SSLError as exc:
                raise MemphisConnectError(f"TLS handshake failed: {exc}") from exc
        self._send_outgoing()

    def _send_outgoing(self) -> None:
        data = self._outgoing.read()
        if data:
            with map_exceptions(WriteError, "write"):
                self._sock.sendall(data)

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        while True:
            with self._tls_lock:
                chunks = []
                try:
                    while True:
                        chunks.append(self._obj.read(max_bytes))
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLZeroReturnError:
                    return b"".join(chunks)
                except ssl.SSLError as exc:
                    raise ReadError(f"TLS read: {exc}") from exc
                has_output = self._outgoing.pending > 0
            if has_output and self.wakeup is not None:
                self.wakeup()
            data = b"".join(chunks)
            if data:
                return data
            raw = super().read(max_bytes, timeout)
            if not raw:
                return b""
            with self._tls_lock:
                self._incoming.write(raw)

    def write(self, data: bytes) -> None:
        with self._tls_lock:
            if data:
                try:
                    self._obj.write(data)
                except ssl.SSLError as exc:
                    raise WriteError(f"TLS write: {exc}") from exc
            out = self._outgoing.read()
        if out:
            _send_all(self._sock, out)
