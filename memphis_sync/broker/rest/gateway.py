"""The local broker's REST ingress: :class:`RestGateway` wires the tokens, the per-user
connections, the WSGI application and the HTTP server, and starts and stops them together."""

from __future__ import annotations

import logging
from typing import List, Optional

from ...nats.connection import TlsOptions
from .app import RestApp
from .server import HttpServer
from .sessions import Sessions
from .settings import RestSettings, UserDirectory
from .tokens import TokenIssuer

__all__ = ["RestGateway"]

logger = logging.getLogger("memphis_sync.broker.rest")


class RestGateway:
    """An HTTP ingress compatible with the Memphis REST gateway 1.2.8, for one broker.

    Args:
        broker_host: The broker's client host (the ingress connects to it as each user).
        broker_port: The broker's client port.
        users: Who may log in, with the broker's record of their credentials.
        host: Address the HTTP server listens on.
        port: HTTP port; 0 picks a free one (kept across :meth:`stop`/:meth:`start`).
        settings: Limits and token lifetimes.
        tls: TLS options for the connections to the broker's client port.

    Tokens stay valid across :meth:`stop` and :meth:`start` of one object (the secrets are its
    own), never for another one.
    """

    def __init__(
        self,
        broker_host: str,
        broker_port: int,
        users: UserDirectory,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: Optional[RestSettings] = None,
        tls: Optional[TlsOptions] = None,
    ) -> None:
        self._settings = settings or RestSettings()
        self._host = host
        self._sessions = Sessions(broker_host, broker_port, users, tls)
        self._app = RestApp(users, TokenIssuer(), self._sessions, self._settings)
        self._server = HttpServer(
            self._app, host, port,
            request_timeout=self._settings.request_timeout, max_connections=self._settings.max_connections,
        )
        self._running = False

    @property
    def port(self) -> int:
        """The HTTP port (the real one once started)."""
        return self._server.port

    @property
    def url(self) -> str:
        """``http://host:port`` of the ingress."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def settings(self) -> RestSettings:
        """The limits and lifetimes in force."""
        return self._settings

    def start(self) -> None:
        """Listen and serve (nothing if running).

        Raises:
            BrokerError: the port cannot be bound.
        """
        if self._running:
            return
        self._sessions.reopen()
        self._server.start()
        self._running = True
        logger.info("memphis REST ingress serving on %s", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop: no new requests, end connections still sending their request, close the
        users' connections (requests in progress fail), and wait for every thread."""
        if not self._running:
            return
        self._running = False
        self._server.stop(timeout, then=self._sessions.close)

    def is_running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    def active_requests(self) -> List[str]:
        """Names of the threads serving a connection now (for tests and diagnostics)."""
        return self._server.active()
