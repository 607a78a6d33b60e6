"""A small threaded TCP proxy on loopback for fault injection: stall, resume and cut the link.

``StallProxy(target_port)`` listens on a free port of 127.0.0.1 and forwards every connection it
accepts to ``target_host:target_port``, both ways. Its controls act on every connection, open
or future:

* :meth:`StallProxy.stall`: stop reading from either side and stop forwarding. The client's
  socket send buffer fills and its writes block, as with a peer whose link went silent while
  the TCP connection stays up (no FIN, no RST). The proxy's accepted sockets have a small
  ``SO_RCVBUF`` (set on the listener, so the accepted sockets advertise the small window from
  the handshake on), so the proxy side holds only tens of KiB and the client blocks as soon as
  its own send buffer is full (about 2.5 MiB on Linux loopback, where the kernel grows it).
* :meth:`StallProxy.resume`: forward again; what was held is delivered in order.
* :meth:`StallProxy.cut`: close every open connection (the client sees a reset or EOF). New
  connections are still accepted afterwards: the client can reconnect.
* :meth:`StallProxy.close`: stop listening, close everything and join every thread.

Thread model: one accept thread, and one pump thread per connection that moves bytes both ways
with ``select`` on non-blocking sockets. A pump holds at most one ``recv`` chunk per direction,
so a stall is precise to ``CHUNK`` bytes. Every wait has a short timeout, so ``close()`` is
bounded (``JOIN_TIMEOUT`` per thread) and a pump notices a stall within ``POLL`` seconds.
Threads are daemons named ``stall-proxy-*`` (never ``memphis-sync-*``: they are not the
library's).
"""

from __future__ import annotations

import itertools
import logging
import select
import socket
import threading
import time
from typing import List, Optional, Set

__all__ = ["StallProxy"]

logger = logging.getLogger(__name__)

#: Bytes read from one side per recv; also the most a pump holds when a stall starts.
CHUNK = 64 * 1024
#: Receive buffer of the proxy's sockets (the kernel doubles it and keeps a floor).
RCVBUF = 16 * 1024
#: Seconds a pump or the acceptor waits before looking at the controls again.
POLL = 0.02
#: Seconds ``close()`` waits for each thread.
JOIN_TIMEOUT = 5.0

_proxy_ids = itertools.count(1)


class _Link:
    """One proxied connection: the accepted client socket, the socket to the server, a pump."""

    def __init__(self, proxy: "StallProxy", client: socket.socket, number: int) -> None:
        self.proxy = proxy
        self.client = client
        self.number = number
        self.server: Optional[socket.socket] = None
        self.closed = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"stall-proxy-{proxy.id}-link-{number}", daemon=True
        )
        #: bytes forwarded client → server and server → client
        self.up = 0
        self.down = 0

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.server):
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass

    def _run(self) -> None:
        proxy = self.proxy
        try:
            try:
                server = socket.create_connection((proxy.target_host, proxy.target_port), timeout=5)
            except OSError as exc:
                logger.warning("proxy %s: cannot reach %s:%s: %s", proxy.id, proxy.target_host, proxy.target_port, exc)
                return
            self.server = server
            if self.closed.is_set():  # cut or closed while connecting
                server.close()
                return
            server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            server.setblocking(False)
            self.client.setblocking(False)
            self._pump(self.client, server)
        except OSError as exc:
            if not self.closed.is_set():
                logger.debug("proxy %s link %s: %s", proxy.id, self.number, exc)
        finally:
            self.close()
            proxy._forget(self)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        proxy = self.proxy
        to_server = b""  # read from the client, not yet written to the server
        to_client = b""
        client_open = server_open = True  # the side still sends (no EOF seen)
        up_shut = down_shut = False  # EOF passed on to the other side
        while not self.closed.is_set():
            if proxy._stalled.is_set():
                # a silent link: read nothing, write nothing
                proxy._resumed.wait(POLL)
                continue
            readers = []
            if client_open and not to_server:
                readers.append(client)
            if server_open and not to_client:
                readers.append(server)
            writers = []
            if to_server:
                writers.append(server)
            if to_client:
                writers.append(client)
            readable, writable, _ = select.select(readers, writers, [], POLL)
            if proxy._stalled.is_set():
                continue
            if server in writable:
                sent = _send(server, to_server)
                self.up += sent
                to_server = to_server[sent:]
            if client in writable:
                sent = _send(client, to_client)
                self.down += sent
                to_client = to_client[sent:]
            if client in readable:
                data = _recv(client)
                if data:
                    to_server = data
                elif data is not None:
                    client_open = False
            if server in readable:
                data = _recv(server)
                if data:
                    to_client = data
                elif data is not None:
                    server_open = False
            # half-close: pass an EOF on once what came before it was delivered
            if not client_open and not to_server and not up_shut:
                _shutdown_write(server)
                up_shut = True
            if not server_open and not to_client and not down_shut:
                _shutdown_write(client)
                down_shut = True
            if up_shut and down_shut:
                return


def _send(sock: socket.socket, data: bytes) -> int:
    try:
        return sock.send(data)
    except BlockingIOError:
        return 0


def _recv(sock: socket.socket) -> Optional[bytes]:
    """Up to ``CHUNK`` bytes; ``b""`` at EOF or reset, None when nothing is there after all."""
    try:
        return sock.recv(CHUNK)
    except BlockingIOError:
        return None
    except ConnectionResetError:
        return b""


def _shutdown_write(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class StallProxy:
    """A TCP proxy from a free loopback port to ``target_host:target_port``.

    Args:
        target_port: the server's port.
        target_host: the server's address.
        rcvbuf: ``SO_RCVBUF`` of the proxy's client-facing sockets (see :data:`RCVBUF`).

    Attributes:
        accepted: connections accepted so far (one per connect or reconnect of the client).
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *, rcvbuf: int = RCVBUF) -> None:
        self.id = next(_proxy_ids)
        self.target_host = target_host
        self.target_port = target_port
        self.rcvbuf = rcvbuf
        self.accepted = 0
        self._stalled = threading.Event()
        self._resumed = threading.Event()
        self._resumed.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._links: Set[_Link] = set()
        self._threads: List[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # set before listen(): accepted sockets inherit it and advertise the small window
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(POLL * 5)
        self.host, self.port = self._listener.getsockname()[:2]
        self._acceptor = threading.Thread(target=self._accept_main, name=f"stall-proxy-{self.id}-accept", daemon=True)
        self._acceptor.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else ("stalled" if self._stalled.is_set() else "forwarding")
        return f"<StallProxy 127.0.0.1:{self.port} -> {self.target_host}:{self.target_port} {state} links={len(self._links)}>"

    def __enter__(self) -> "StallProxy":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def is_stalled(self) -> bool:
        return self._stalled.is_set()

    @property
    def open_connections(self) -> int:
        """Connections currently proxied."""
        with self._lock:
            return len(self._links)

    def stall(self) -> None:
        """Stop reading and forwarding on every connection, open and future."""
        self._resumed.clear()
        self._stalled.set()

    def resume(self) -> None:
        """Forward again (held bytes are delivered in order)."""
        self._stalled.clear()
        self._resumed.set()

    def cut(self) -> None:
        """Close every open connection; later connections are accepted and proxied as usual."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        for link in links:
            link.thread.join(JOIN_TIMEOUT)

    def close(self) -> None:
        """Stop accepting, close every connection and join every thread. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()  # a stalled pump stays silent: cut() below ends it within POLL
        try:
            self._listener.close()
        except OSError:
            pass
        self._acceptor.join(JOIN_TIMEOUT)
        self.cut()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(JOIN_TIMEOUT)

    def threads_alive(self) -> List[str]:
        """Names of this proxy's threads still running (empty after :meth:`close`)."""
        with self._lock:
            threads = [self._acceptor, *self._threads]
        return [t.name for t in threads if t.is_alive()]

    def _accept_main(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._closed.is_set():
                    return
                time.sleep(POLL)
                continue
            try:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            except OSError:
                pass
            with self._lock:
                if self._closed.is_set():
                    client.close()
                    return
                self.accepted += 1
                link = _Link(self, client, self.accepted)
                self._links.add(link)
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(link.thread)
            link.thread.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
