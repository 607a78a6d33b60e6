"""The REST ingress's HTTP server: werkzeug's threaded WSGI server, bounded and stoppable.

werkzeug parses HTTP/1.1 (chunked bodies, ``Expect: 100-continue``) and answers each request on
a connection of its own (``Connection: close``). On top of it, :class:`HttpServer`:

* binds the listening socket itself (a taken port is a :class:`~memphis_sync.errors.BrokerError`,
  never werkzeug's ``sys.exit``);
* serves at most ``max_connections`` connections at once (one thread each, named
  ``memphis-sync-rest-<n>``); one more gets ``503`` at once;
* gives every connection a socket timeout (a silent client is dropped);
* keeps the raw request headers (names as sent, underscores included) for the application, in
  ``environ["memphis_sync.headers"]``;
* stops cleanly: no new connections, the read side of waiting connections shut, and every
  thread joined.
"""

from __future__ import annotations

import errno
import itertools
import logging
import socket
import threading
from typing import Any, Callable, Iterable, List, Optional, Set, Tuple

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from ...errors import BrokerError

__all__ = ["HttpServer", "RAW_HEADERS_KEY"]

logger = logging.getLogger("memphis_sync.broker.rest")

#: WSGI environ key of the request's headers as sent: a list of (name, value).
RAW_HEADERS_KEY = "memphis_sync.headers"

WsgiApp = Callable[[Any, Any], Iterable[bytes]]

_BUSY_BODY = b'{"success":false,"error":"too many connections, try again shortly"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


class _Handler(WSGIRequestHandler):
    server: "_Server"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.request_timeout)  # every read and write of it

    def make_environ(self) -> Any:
        environ = super().make_environ()
        environ[RAW_HEADERS_KEY] = list(self.headers.items())
        return environ

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        # the path without its query: ?authorization= carries a token
        path = str(getattr(self, "path", "")).split("?", 1)[0]
        logger.debug("REST ingress: %s %s %s %s", self.address_string(), getattr(self, "command", ""), path, code)

    def log_error(self, format: str, *args: Any) -> None:
        logger.info("REST ingress: " + format, *args)


class _Server(ThreadedWSGIServer):
    """werkzeug's server, with bounded, named, joined threads."""

    daemon_threads = False

    def __init__(self, host: str, port: int, app: WsgiApp, fd: int, *, request_timeout: float, max_connections: int) -> None:
        self.request_timeout = request_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._active: Set[Tuple[threading.Thread, socket.socket]] = set()
        self._active_lock = threading.Lock()
        self._numbers = itertools.count(1)
        super().__init__(host, port, app, handler=_Handler, fd=fd)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._serve, args=(request, client_address), name=f"memphis-sync-rest-{next(self._numbers)}"
        )
        entry = (thread, request)
        with self._active_lock:
            self._active.add(entry)
        try:
            thread.start()
        except BaseException:
            with self._active_lock:
                self._active.discard(entry)
            self._slots.release()
            self.shutdown_request(request)
            raise

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # werkzeug answered what it could; a dropped client is no error
            logger.debug("REST ingress: connection from %s failed", client_address, exc_info=True)
        finally:
            self.shutdown_request(request)
            with self._active_lock:
                self._active.discard((threading.current_thread(), request))
            self._slots.release()

    def stop_connections(self, timeout: float) -> None:
        """Shut the read side of every connection (a request not read yet ends), then join."""
        with self._active_lock:
            active = list(self._active)
        for _, sock in active:
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        for thread, _ in active:
            thread.join(timeout)
        with self._active_lock:
            left = [t for t, _ in self._active if t.is_alive()]
        if left:
            logger.warning("REST ingress: %d request(s) still running after %.1f s", len(left), timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("REST ingress: error on a connection from %s", client_address, exc_info=True)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BrokerError(f"REST port {port} on {host} is already in use") from exc
        raise BrokerError(f"cannot listen for REST on {host}:{port}: {exc}") from exc
    return sock


class HttpServer:
    """Serves a WSGI application on ``host:port`` from a thread of its own.

    Args:
        app: The WSGI application.
        host: Address to listen on.
        port: Port; 0 picks a free one (see :attr:`port`).
        request_timeout: Socket timeout of every connection, in seconds.
        max_connections: Connections served at once.
    """

    def __init__(self, app: WsgiApp, host: str, port: int, *, request_timeout: float, max_connections: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._request_timeout = request_timeout
        self._max_connections = max_connections
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        """The port listened on (the real one once started)."""
        return self._server.server_address[1] if self._server is not None else self._port

    def start(self) -> None:
        """Listen and serve. Raises :class:`BrokerError` if the port cannot be bound."""
        if self._server is not None:
            return
        sock = _listen(self._host, self._port)
        try:
            server = _Server(
                self._host, self._port, self._app, sock.fileno(),
                request_timeout=self._request_timeout, max_connections=self._max_connections,
            )
        finally:
            sock.close()  # the server holds a duplicate of it
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="memphis-sync-rest-accept")
        self._thread.start()

    def stop(self, timeout: float = 5.0, then: Optional[Callable[[], None]] = None) -> None:
        """Stop accepting, call ``then()`` (e.g. to make requests in progress fail fast), end
        connections still reading their request, wait for the others (up to ``timeout``
        seconds each), and close the socket."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return
        server.shutdown()  # serve_forever returns (and closes the listening socket)
        if thread is not None:
            thread.join()
        if then is not None:
            then()
        server.stop_connections(timeout)
        server.server_close()

    def active(self) -> List[str]:
        """Names of the threads serving a connection now."""
        server = self._server
        if server is None:
            return []
        with server._active_lock:
            return sorted(t.name for t, _ in server._active)
