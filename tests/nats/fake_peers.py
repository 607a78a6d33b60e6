"""Small socket servers that are not NATS servers, for the handshake tests.

A :class:`FakePeer` listens on a free loopback port and runs ``behave(conn, stop)`` for every
connection it accepts, each in its own thread. :meth:`FakePeer.close` stops accepting, shuts
every accepted socket down (so a behaviour blocked in I/O returns) and joins every thread.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from typing import Callable, Iterator, List

Behaviour = Callable[[socket.socket, threading.Event], None]


class FakePeer:
    """A loopback listener that answers every connection with ``behave``."""

    def __init__(self, behave: Behaviour) -> None:
        self._behave = behave
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self.accepted = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self._acceptor = threading.Thread(target=self._serve, name=f"fake-peer-{self.port}", daemon=True)
        self._acceptor.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(10)
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
                thread = threading.Thread(target=self._handle, args=(conn,), name=f"fake-peer-{self.port}-conn", daemon=True)
                self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._behave(conn, self._stop)
        except (OSError, ssl.SSLError):
            pass  # the client hung up: expected
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(5)
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)
        self._sock.close()
        alive = [t.name for t in [self._acceptor, *threads] if t.is_alive()]
        assert not alive, f"fake peer threads still running: {alive}"


@contextlib.contextmanager
def fake_peer(behave: Behaviour) -> Iterator[FakePeer]:
    peer = FakePeer(behave)
    try:
        yield peer
    finally:
        peer.close()


# -- behaviours ---------------------------------------------------------------------------


def sends(data: bytes) -> Behaviour:
    """Send ``data`` at once, then wait (silently) until the client or the test hangs up."""

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(data)
        _wait_for_hangup(conn, stop)

    return behave


def closes_at_once(conn: socket.socket, stop: threading.Event) -> None:
    """Accept, then close without a word."""


def silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accept and say nothing (a server that waits for the client to speak first)."""
    _wait_for_hangup(conn, stop)


def endless_line(prefix: bytes) -> Behaviour:
    """Send ``prefix`` and then bytes without any CRLF until the client hangs up."""

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(prefix)
        chunk = b"x" * 4096
        while not stop.is_set():
            conn.sendall(chunk)

    return behave


def tls_server(context: ssl.SSLContext) -> Behaviour:
    """A TLS server: waits for the client's ClientHello (which a plain client never sends)."""

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            _wait_for_hangup(tls, stop)

    return behave


def _wait_for_hangup(conn: socket.socket, stop: threading.Event) -> None:
    conn.settimeout(0.05)
    while not stop.is_set():
        try:
            if not conn.recv(4096):
                return
        except socket.timeout:
            continue
