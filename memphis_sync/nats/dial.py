"""Getting on a server: try the servers of the pool in turn, complete the handshake (TLS
included), send CONNECT, and apply every INFO (the first and the ones that follow).

Used by ``connect()`` (once, or through the reconnect policy with
``retry_on_failed_connect``) and by the reader thread's reconnect loop; only one of them runs
at a time, so only one thread ever installs a stream.

:class:`_Dialer` (a mixin of :class:`~memphis_sync.nats.connection.Connection`) owns ``_pool``
(rotated and extended under ``_state_lock``), ``_tls_context``, ``_stream``, ``_parser``,
``_info``, ``_current`` and ``_max_payload``. It reads the connection options and emits the
``discovered_server`` and ``lame_duck`` callbacks.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, Dict, List, Optional

from .. import _defaults
from .._version import __version__
from ..errors import AuthorizationError, ConnectTimeout, LocalProtocolError, MemphisConnectError, NetworkError
from ._core import _ConnectionCore
from .handshake import await_pong, read_info
from .protocol import PING, Info, Parser, encode_connect
from .reconnect import build_retrying
from .servers import ServerAddress, TlsOptions, redact_url
from .transport import SocketStream, Stream, TlsStream, open_tcp

__all__: List[str] = []

logger = logging.getLogger("memphis_sync.connection")  # the name users configure (kept from the flat layout)


class _Dialer(_ConnectionCore):
    """Connect to one server of the pool; apply what its INFO says."""

    def _init_link_state(self) -> None:
        self._stream = None
        self._parser = None
        self._info = None
        self._current = None
        self._max_payload = 1024 * 1024

    def _server_name(self) -> str:
        return self._current.url if self._current is not None else self._pool[0].url if self._pool else "the server"

    def _next_server(self) -> str:
        """The server the next attempt dials (credentials hidden), for the retry log."""
        with self._state_lock:
            return self._pool[0].redacted_url if self._pool else "no server (the pool is empty)"

    def _dial_first(self) -> None:
        """The first connect: each server of the pool once (or through the reconnect policy
        with ``retry_on_failed_connect``), until one completes the handshake."""
        if self.retry_on_failed_connect:
            self._retry_connect()
        else:
            last: Optional[BaseException] = None
            for _ in range(len(self._pool)):
                server = self._pool[0]
                try:
                    self._attempt(server)
                    last = None
                    break
                except AuthorizationError:
                    raise
                except (NetworkError, ConnectTimeout) as exc:
                    last = exc
                    self._rotate()
            if last is not None:
                raise last

    def _rotate(self) -> None:
        with self._state_lock:
            if len(self._pool) > 1:
                self._pool.append(self._pool.pop(0))

    def _retry_connect(self) -> None:
        for attempt in build_retrying(self.reconnect_policy, self._closing, what="connect", next_server=self._next_server):
            with attempt:
                self._attempt_next()

    def _attempt_next(self) -> None:
        """Try the head of the pool once; rotate on failure and drop a server that refused
        our credentials twice (so wrong credentials end the retrying quickly)."""
        with self._state_lock:
            if not self._pool:
                raise MemphisConnectError("no servers left to connect to")
            server = self._pool[0]
        try:
            self._attempt(server)
        except AuthorizationError as exc:
            server.auth_failures += 1
            with self._state_lock:
                if server.auth_failures >= 2:
                    logger.error("%s refused our credentials twice; dropping it from the pool", server.url)
                    self._pool.remove(server)
                    if not self._pool:
                        exc.final = True  # read by the retry predicate
                        raise
                self._rotate()
            raise
        except (NetworkError, ConnectTimeout):
            self._rotate()
            raise

    def _attempt(self, server: ServerAddress) -> None:
        """Connect to one server and complete the handshake; on success install the stream."""
        deadline = time.monotonic() + self.connect_timeout
        logger.debug("connecting to %s", server.url)
        sock = open_tcp(server.host, server.port, self.connect_timeout)
        stream: Stream = SocketStream(sock)
        try:
            parser = Parser()
            if server.websocket:  # TLS first (wss), then the upgrade; INFO comes inside frames
                use_tls = server.tls or self._tls is not None
                if use_tls:
                    stream = self._tls_stream(sock, server, deadline)
                from .websocket import open_websocket  # wsproto only when a ws:// server is dialed (import time)

                stream = open_websocket(stream, server, deadline, self._kick_flusher)
                info = read_info(stream, parser, deadline, self.connect_timeout, server.url)
            else:
                info = read_info(stream, parser, deadline, self.connect_timeout, server.url)
                use_tls = server.tls or self._tls is not None or info.tls_required
                if use_tls:
                    stream = self._tls_stream(sock, server, deadline)
            if not stream.write(encode_connect(self._connect_options(server, info, use_tls)) + PING, deadline):
                raise ConnectTimeout(f"connect to {server.url}: the server took no CONNECT within {self.connect_timeout} s")
            await_pong(stream, parser, deadline, self.connect_timeout, server.url)
        except BaseException:
            stream.close()
            raise
        server.auth_failures = 0
        parser.max_payload = info.max_payload
        with self._state_lock:
            self._stream, self._parser, self._info, self._current = stream, parser, info, server
            self._max_payload = info.max_payload
            self._pings_out = 0
        self._absorb_info(info, initial=True)
        logger.info("connected to %s (server %s %s)", server.url, info.server_id, info.version)

    def _tls_stream(self, sock: socket.socket, server: ServerAddress, deadline: float) -> TlsStream:
        if self._tls_context is None:
            self._tls_context = (self._tls or TlsOptions()).build_context()
        hostname = (self._tls.hostname if self._tls else None) or server.tls_name or server.host
        return TlsStream(sock, self._tls_context, hostname, max(0.01, deadline - time.monotonic()), self._kick_flusher)

    def _connect_options(self, server: ServerAddress, info: Info, use_tls: bool) -> Dict[str, Any]:
        opts: Dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "tls_required": use_tls,
            "lang": _defaults.LANG,
            "version": __version__,
            "protocol": 1,
            "echo": not self.no_echo,
            "headers": True,
            "no_responders": True,
        }
        if self.name:
            opts["name"] = self.name
        user, password = self._user, self._password
        token = self._token
        if user is None and token is None:
            user, password, token = server.user, server.password, server.token
        if user is not None:
            opts["user"], opts["pass"] = user, password
        elif token is not None:
            opts["auth_token"] = token
        return opts

    def _absorb_info(self, info: Info, *, initial: bool = False) -> None:
        """Apply an INFO: payload limit, discovered servers, lame duck mode."""
        self._info = info
        self._max_payload = info.max_payload
        if self._parser is not None:
            self._parser.max_payload = info.max_payload
        added = False
        if not self.ignore_discovered_servers and info.connect_urls:
            use_tls = self._current.tls if self._current is not None else False
            with self._state_lock:
                known = {(s.host, s.port) for s in self._pool}
                for url in info.connect_urls:
                    try:
                        server = ServerAddress.parse(url, discovered=True)
                    except LocalProtocolError:
                        logger.warning("ignoring bad connect_url %r from the server", redact_url(str(url)))
                        continue
                    if (server.host, server.port) not in known:
                        server.tls = use_tls
                        if self._current is not None and self._current.websocket:  # ws connect_urls
                            server.websocket, server.path = True, self._current.path
                        if use_tls and self._current is not None:
                            server.tls_name = self._current.tls_name or self._current.host
                        self._pool.append(server)
                        known.add((server.host, server.port))
                        added = True
        if added and not initial:
            self._emit("discovered_server")
        if info.ldm:
            logger.warning("server %s entered lame duck mode", info.server_id)
            self._emit("lame_duck")
