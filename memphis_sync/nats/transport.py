"""Byte streams under the connection: plain TCP and TLS, with OS errors translated once.

A stream has exactly two users at a time: the connection's reader thread calls :meth:`read`,
and whoever holds the connection's send lock calls :meth:`write`. Plain sockets allow that
concurrency natively. For TLS we do not share one ``ssl.SSLSocket`` between a reading and a
writing thread (OpenSSL forbids concurrent use of one ``SSL`` object); instead the TLS state
lives in an :class:`ssl.SSLObject` over memory BIOs, guarded by a short lock that is never held
during socket I/O, so a blocked write can never stop the reader from draining the socket.

Writes are bounded: :meth:`Stream.write` sends with ``MSG_DONTWAIT`` and waits for the socket
with ``poll()`` until the caller's deadline. Bytes the socket did not take by then stay in the
stream, in order, and go out first on the next write, so the wire only ever carries whole
frames in order, whoever writes next and however long the link stalls. A signal handler that
raises in the middle (Ctrl-C in a script, an interrupted notebook cell) leaves the stream in
the same state: what was sent is counted exactly, the rest waits for the next writer.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from typing import Callable, Iterator, List, Optional

from ..errors import ConnectTimeout, MemphisConnectError, ReadError, WriteError

__all__ = ["Stream", "SocketStream", "TlsStream", "open_tcp", "map_exceptions", "WRITE_DEADLINE"]

logger = logging.getLogger("memphis_sync.transport")  # the name users configure (kept from the flat layout)

#: A stream whose socket takes no byte for this long is dead (nats.go's flusher timeout: 1 min).
WRITE_DEADLINE = 60.0
#: Longest single ``poll()`` of a waiting writer: it re-checks that the stream is still open.
_POLL_SLICE = 0.05
_DONTWAIT = (getattr(socket, "MSG_DONTWAIT", 0),)
_NO_WAIT = (BlockingIOError, InterruptedError)


@contextlib.contextmanager
def map_exceptions(cls: type, what: str) -> Iterator[None]:
    """Translate ``OSError``/``ssl.SSLError`` raised inside the block into ``cls``."""
    try:
        yield
    except socket.timeout as exc:  # before OSError: socket.timeout is a subclass
        raise (ConnectTimeout if cls is MemphisConnectError else cls)(f"{what}: timed out") from exc
    except (OSError, ssl.SSLError) as exc:
        raise cls(f"{what}: {exc}") from exc


class Stream:
    """Interface of a connected byte stream (see the module docstring for the thread rules)."""

    #: ``time.monotonic()`` of the last write that moved bytes (or of the stream's creation).
    last_progress: float = 0.0

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        """Block until some bytes arrive; ``b""`` means the peer closed. Raises ReadError."""
        raise NotImplementedError

    def write(self, data: bytes, deadline: Optional[float] = None) -> bool:
        """Send what earlier writes left, then ``data``, until ``deadline`` (``time.monotonic()``;
        None = until done). Returns True when everything went out; False when the deadline
        passed first (the rest stays buffered, in order, for the next write). Raises WriteError."""
        raise NotImplementedError

    @property
    def pending(self) -> int:
        """Bytes accepted by :meth:`write` that the socket has not taken yet."""
        return 0

    def close(self, *, shutdown: bool = True) -> None:
        """Close; ``shutdown=False`` only drops our file descriptor (used in a forked child)."""
        raise NotImplementedError


def open_tcp(host: str, port: int, timeout: float) -> socket.socket:
    """Connect a TCP socket with Nagle off and keepalive on.

    Raises:
        ConnectTimeout: the TCP connect took longer than ``timeout``.
        MemphisConnectError: the connect failed.
    """
    with map_exceptions(MemphisConnectError, f"connect to {host}:{port}"):
        sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except OSError:  # pragma: no cover - platform without these options
        logger.debug("could not set socket options", exc_info=True)
    return sock


class SocketStream(Stream):
    """A plain TCP stream."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout: Optional[float] = sock.gettimeout()
        self._unsent: memoryview = memoryview(b"")
        self._closed = False
        self._poller: Optional["select.poll"] = None
        self.last_progress = time.monotonic()

    def _set_timeout(self, timeout: Optional[float]) -> None:
        # settimeout() puts the socket in non-blocking mode plus poll(); only touch it on change
        if timeout != self._timeout:
            self._sock.settimeout(timeout)
            self._timeout = timeout

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        self._set_timeout(timeout)
        with map_exceptions(ReadError, "read"):
            return self._sock.recv(max_bytes)

    @property
    def pending(self) -> int:
        return len(self._unsent)

    def write(self, data: bytes, deadline: Optional[float] = None) -> bool:
        if self._unsent:
            if not self._send(deadline):
                if data:
                    self._unsent = memoryview(bytes(self._unsent) + data)
                return False
        if not data:
            return True
        # fast path: one send() takes it all (the count is recorded in C, see _send)
        counts: List[int] = []
        try:
            counts.extend(map(self._sock.send, (data,), _DONTWAIT))
        except _NO_WAIT:
            pass
        except OSError as exc:
            raise WriteError(f"write: {exc}") from exc
        except BaseException:  # a signal handler raised: keep what did not go out
            sent = counts[0] if counts else 0
            if sent < len(data):
                self._unsent = memoryview(data)[sent:]
            raise
        sent = counts[0] if counts else 0
        if sent:
            self.last_progress = time.monotonic()
            if sent == len(data):
                return True
        self._unsent = memoryview(data)[sent:]
        return self._send(deadline)

    def _send(self, deadline: Optional[float]) -> bool:
        """Send ``self._unsent`` until done or ``deadline``; keep what is left in it.

        Each ``send()`` result is appended to ``counts`` by C code (``list.extend(map(...))``),
        where no signal handler can run between the system call and the bookkeeping, so the
        ``finally`` knows exactly what went out even when a handler raised."""
        view = self._unsent
        total = len(view)
        counts: List[int] = []
        send = self._sock.send
        pos = 0
        try:
            while pos < total:
                try:
                    counts.extend(map(send, (view[pos:],), _DONTWAIT))
                except _NO_WAIT:
                    if not self._wait_writable(deadline):
                        break
                except OSError as exc:
                    raise WriteError(f"write: {exc}") from exc
                moved = sum(counts)
                if moved != pos:
                    pos = moved
                    self.last_progress = time.monotonic()  # read by the liveness check meanwhile
        finally:
            sent = sum(counts)
            if sent:
                self.last_progress = time.monotonic()
            self._unsent = view[sent:] if sent < total else memoryview(b"")
        return pos >= total

    def _wait_writable(self, deadline: Optional[float]) -> bool:
        """Wait until the socket takes bytes; False once ``deadline`` passed."""
        if self._closed:
            raise WriteError("write: the stream was closed")
        wait = _POLL_SLICE
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wait = min(left, wait)
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self._sock.fileno(), select.POLLOUT)
        poller.poll(wait * 1000.0)
        return True

    def close(self, *, shutdown: bool = True) -> None:
        self._closed = True
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
                    raise MemphisConnectError("TLS handshake: server closed the connection") from None
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
                chunks: List[bytes] = []
                try:
                    while True:
                        chunk = self._obj.read(max_bytes)
                        if not chunk:  # the peer's close_notify: the end of the stream
                            return b"".join(chunks)
                        chunks.append(chunk)
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

    @property
    def pending(self) -> int:
        return len(self._unsent) + self._outgoing.pending

    def write(self, data: bytes, deadline: Optional[float] = None) -> bool:
        with self._tls_lock:
            if data:
                try:
                    self._obj.write(data)
                except ssl.SSLError as exc:
                    raise WriteError(f"TLS write: {exc}") from exc
            records = self._outgoing.read() if not self._unsent else b""
        # records are encrypted in order; while older ones are unsent, new ones wait in the BIO
        return super().write(records, deadline) and (not self._outgoing.pending or self.write(b"", deadline))
