"""A loopback TCP proxy that records what clients send: the "nothing reached the wire" check.

``WireTap(host, port)`` listens on a free port of 127.0.0.1 and forwards every connection it
accepts to ``host:port``, both ways, keeping a copy of every byte a client sent. A test marks
the tap, makes a bad call, then a flush (a PING the server answers): when that PING has passed
the tap, everything the client wrote before it has too, so :meth:`WireTap.sent_since` minus the
PINGs and PONGs is exactly what the bad call put on the wire.

Threads are daemons named ``wire-tap-*`` (not ``memphis-sync-*``: they are not the library's);
every wait has a short timeout, so :meth:`WireTap.close` is bounded.
"""

from __future__ import annotations

import socket
import threading
from typing import List

__all__ = ["WireTap", "without_pings"]

#: Seconds a pump waits in recv before looking at the closed flag again.
POLL = 0.05


def without_pings(data: bytes) -> bytes:
    """``data`` without its ``PING``/``PONG`` frames (the keep-alive and the flush itself)."""
    return data.replace(b"PING\r\n", b"").replace(b"PONG\r\n", b"")


class WireTap:
    """Forward ``127.0.0.1:<port>`` to ``host:port`` and record the client-to-server bytes."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(POLL)
        self.port: int = self._listener.getsockname()[1]
        self._sent = bytearray()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self.accepted = 0
        self._start(self._accept_loop, "accept")

    def _start(self, target: object, what: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=f"wire-tap-{what}", daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            server = socket.create_connection(self._target, timeout=5)
            for sock in (client, server):
                sock.settimeout(POLL)
            with self._lock:
                self.accepted += 1
                self._sockets += [client, server]
            self._start(self._pump, "up", client, server, True)
            self._start(self._pump, "down", server, client, False)

    def _pump(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        while not self._closed.is_set():
            try:
                data = source.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if not data:
                for sock in (source, sink):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            if record:
                with self._lock:
                    self._sent += data
            try:
                sink.sendall(data)
            except OSError:
                return

    def mark(self) -> int:
        """A position in the record, for :meth:`sent_since`."""
        with self._lock:
            return len(self._sent)

    def sent_since(self, mark: int) -> bytes:
        """Every byte the clients sent since ``mark``."""
        with self._lock:
            return bytes(self._sent[mark:])

    def close(self) -> None:
        """Stop listening, close every socket and join every thread."""
        self._closed.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(5)
        with self._lock:
            for sock in self._sockets:
                sock.close()
