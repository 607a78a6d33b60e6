"""One Memphis connection per user, for the REST ingress (as the gateway keeps one per user).

The REST ingress produces and consumes as the user a token stands for, through memphis-sync's
own :class:`~memphis_sync.memphis.client.Memphis` client, so that messages are ordinary Memphis
messages (producer ``rest-gateway``, schema validation, consumer groups). The connection of a
user is opened on first use with the broker's own record of the user's credentials (tokens never
carry them) and kept until the ingress stops; a connection that was closed (it gave up
reconnecting) is replaced.
"""

from __future__ import annotations

import logging
import threading
from typing import Dict, Optional

from ...errors import MemphisError
from ...memphis.client import Memphis
from ...memphis.client import connect as memphis_connect
from ...nats.connection import TlsOptions
from .settings import UserDirectory

__all__ = ["Sessions"]

logger = logging.getLogger("memphis_sync.broker.rest")


class Sessions:
    """The per-user connections of one REST ingress. Thread-safe.

    Args:
        host: The broker's client host.
        port: The broker's client port.
        users: Whom to connect as, and with which credentials.
        tls: TLS files of the broker's client port (CA, and the client certificate if mutual).
    """

    def __init__(self, host: str, port: int, users: UserDirectory, tls: Optional[TlsOptions] = None) -> None:
        self._host = host
        self._port = port
        self._users = users
        self._tls = tls
        self._lock = threading.Lock()
        self._user_locks: Dict[str, threading.Lock] = {}
        self._conns: Dict[str, Memphis] = {}
        self._closed = False

    def get(self, username: str) -> Memphis:
        """The connection of ``username`` (a configured user name), opened if needed.

        Raises:
            MemphisError: the ingress is stopping, or the broker could not be reached.
        """
        with self._lock:
            if self._closed:
                raise MemphisError("the REST ingress is stopping")
            conn = self._conns.get(username)
            if conn is not None and _usable(conn):
                return conn
            user_lock = self._user_locks.setdefault(username, threading.Lock())
        with user_lock:  # one connect per user at a time; other users are not held up
            with self._lock:
                conn = self._conns.get(username)
                if conn is not None and _usable(conn):
                    return conn
            fresh = self._open(username)
            with self._lock:
                if self._closed:
                    fresh.close()
                    raise MemphisError("the REST ingress is stopping")
                stale, self._conns[username] = self._conns.get(username), fresh
        if stale is not None:
            stale.close()
        return fresh

    def _open(self, username: str) -> Memphis:
        kwargs = self._users.connect_kwargs(username)
        tls = self._tls
        if tls is not None:
            kwargs.update(ca_file=tls.ca_file or "", cert_file=tls.cert_file or "", key_file=tls.key_file or "")
        logger.debug("REST ingress: connecting as %s", username)
        return memphis_connect(self._host, port=self._port, reconnect=True, max_reconnect=-1, reconnect_interval_ms=100, **kwargs)

    def close(self) -> None:
        """Close every connection; :meth:`get` refuses from now on."""
        with self._lock:
            self._closed = True
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            try:
                conn.close(timeout=5.0)
            except MemphisError as exc:
                logger.warning("REST ingress: closing a connection: %s", exc)

    def reopen(self) -> None:
        """Allow :meth:`get` again after :meth:`close` (a restarted ingress)."""
        with self._lock:
            self._closed = False


def _usable(conn: Memphis) -> bool:
    try:
        return not conn.connection.is_closed()
    except MemphisError:
        return False
