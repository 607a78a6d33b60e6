"""A thread-safe, blocking NATS connection: one socket, a reader thread and a flusher thread.

:class:`Connection` is the public face: its options, state, ``publish``, ``subscribe``,
``request``, ``flush``, ``drain``, ``close`` and the small internal API for the layers above.
Its work is done by one module per thread or role, each a mixin of the class that owns the
instance attributes its docstring names:

* ``outbox`` - the outbound frame list, the ``memphis-sync-flusher-<n>`` thread, back-pressure,
  the PONG FIFO and the liveness check;
* ``reader`` - the ``memphis-sync-reader-<n>`` thread: read loop, disconnects, reconnecting;
* ``dial`` - the server pool, the handshake, CONNECT and INFO;
* ``interest`` - the sid -> subscription table; ``request`` - the reply mux;
* ``callbacks`` - the ``memphis-sync-events-<n>`` thread (started on first use), which runs
  the user's connection callbacks; ``shutdown`` - closing, and the interpreter-exit hook;
* ``status`` - the status table; ``fork`` - what a forked child does with an inherited
  connection;
* ``_core`` - ``_ConnectionCore``, the one base of every mixin: the instance attributes (and,
  for the type checker only, the methods) they use across modules, as annotations only.

Callback subscriptions each have a worker thread (see ``subscription``). ``<n>`` is a
per-process connection number.

Theory of operation
-------------------
Locks, in the only order they are ever nested: ``_state_lock`` → ``_send_lock`` → ``_out_lock``
(the last two are the outbox's, and its docstring says what each guards).

* ``_state_lock`` guards status, the subscription table, the pending-PONG queue and the reconnect
  buffer accounting. No socket I/O and no user code runs while it is held... except the reconnect
  re-subscription, which takes ``_send_lock`` inside it so that no publish can slip between the
  new CONNECT and the re-sent SUBs (see ``reader``).

Invariants:

* Frames are complete ``bytes`` objects before they are queued; validation happens before that,
  so a bad subject or header raises in the caller and nothing is written. A call that raises
  never queued its frame (no "sent, then raised").
* After a reconnect the SUBs are written before any buffered publish.
* User callbacks never run on the reader thread, and never with a lock held.
* Only the reader thread replaces the socket (the first connect happens before it starts).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import random
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from .. import _defaults
from .._html import fields_table
from .._timeouts import deadline_after, describe
from ..errors import ConnectionClosedError, FlushTimeout, MemphisConnectError
from ._waiter import _Waiter
from .above import _LayersAbove
from .callbacks import _Callbacks
from .dial import _Dialer
from .fork import _fork_generation, _ForkGuard, _live_connections
from .interest import _Interest
from .options import check_options
from .outbox import _WRITE_HIGH_WATER, HeadersLike, _Outbox
from .protocol import Info, Msg
from .protocol.encoder import _PUB_PREFIXES
from .reader import _Reader
from .reconnect import ReconnectPolicy
from .request import _Replies
from .servers import ServerAddress, TlsOptions, parse_servers
from .shutdown import _flush_at_exit, _Shutdown
from .states import (
    CLOSED,
    CONNECTED,
    CONNECTING,
    RECONNECTING,
    TRANSITIONS,  # noqa: F401 (its documented path: memphis_sync.nats.connection.TRANSITIONS)
    ConnectionStatus,
)
from .status import _Status
from .subscription import MessageHandler, Subscription

__all__ = ["Connection", "ConnectionStatus", "TlsOptions", "ServerAddress", "connect"]

#: A connection callback: ``callback(conn)`` (run on the connection's events thread).
Callback = Callable[["Connection"], None]
#: The error callback: ``callback(conn, error)``.
ErrorCallback = Callable[["Connection", BaseException], None]

logger = logging.getLogger("memphis_sync.connection")  # the name users configure (kept from the flat layout)

_conn_ids = itertools.count(1)

#: Seconds the interpreter-exit hook spends, over all connections, writing what is queued and
#: confirming pipelined publishes (nonblocking produces) a script left behind. Settable; the
#: hook (see ``shutdown``) reads it from this module at exit.
exit_flush_timeout: float = _defaults.EXIT_FLUSH_TIMEOUT
atexit.register(lambda: _flush_at_exit(exit_flush_timeout))  # the value at exit, not now


class Connection(_Outbox, _Reader, _Dialer, _Interest, _Replies, _Callbacks, _Shutdown, _Status, _ForkGuard, _LayersAbove):
    """A thread-safe connection to a NATS server (or cluster). Share one between threads.

    Create it with :func:`connect` (or construct and call :meth:`connect`). Every blocking method
    takes a ``timeout`` in seconds.

    Args:
        servers: one address or a list (``nats://host:port``, ``tls://host:port``, ``host:port``),
            or a comma-separated string. More are learned from the server's INFO.
        name: client name shown by the server's monitoring.
        token: token credential (exclusive with ``user``/``password``). Credentials in a URL
            (``nats://token@host``, ``nats://user:pass@host``) work too.
        user: user name, given together with ``password``.
        password: password of ``user``.
        tls: :class:`TlsOptions` to use TLS (also used when the server requires TLS).
        connect_timeout: seconds for TCP connect plus handshake (``_defaults.CONNECT_TIMEOUT``).
        reconnect: a :class:`ReconnectPolicy` (``ReconnectPolicy(enabled=False)`` disables it).
        reconnect_buffer_size: bytes of publishes kept while disconnected; 0 = fail at once.
        outbound_buffer_size: bytes queued for a connected socket that has not taken them (a
            slow or stalled link) beyond which a publish waits for room
            (``_defaults.OUTBOUND_BUFFER_SIZE``).
        max_block: longest a publish waits for room in the outbound buffer, in seconds
            (``_defaults.MAX_BLOCK``; None = no limit), then raises
            :class:`~memphis_sync.errors.MaxBlockTimeout` with nothing queued. JetStream's
            publish window uses the same bound by default.
        ping_interval: seconds between client PINGs (liveness check).
        max_pings_outstanding: unanswered PINGs after which the connection is stale.
        no_echo: do not receive our own publishes.
        randomize: shuffle the server pool (cluster load spreading).
        ignore_discovered_servers: do not add servers learned from INFO ``connect_urls``.
        inbox_prefix: prefix of request reply subjects.
        retry_on_failed_connect: apply the reconnect policy to the first connect too.
        on_disconnected: ``callback(conn)`` when the connection to a server is lost.
        on_reconnected: ``callback(conn)`` after a reconnect succeeded.
        on_closed: ``callback(conn)`` when the connection is closed for good.
        on_error: ``callback(conn, exc)`` for asynchronous errors (server -ERR, slow consumers).
        on_discovered_server: ``callback(conn)`` when INFO adds servers.
        on_lame_duck: ``callback(conn)`` when the server enters lame duck mode.

    Raises:
        LocalProtocolError: a bad option or server address (its type or value; see
            :mod:`memphis_sync.nats.options`; credentials are redacted): nothing is dialled.
        MemphisConnectError: a bad TLS file, checked here before any server is dialed.
    """

    def __init__(
        self,
        servers: Union[str, Sequence[str]] = f"nats://127.0.0.1:{_defaults.NATS_PORT}",
        *,
        name: Optional[str] = None,
        token: Optional[str] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        tls: Optional[TlsOptions] = None,
        connect_timeout: float = _defaults.CONNECT_TIMEOUT,
        reconnect: Optional[ReconnectPolicy] = None,
        reconnect_buffer_size: int = _defaults.RECONNECT_BUFFER_SIZE,
        outbound_buffer_size: int = _defaults.OUTBOUND_BUFFER_SIZE,
        max_block: Optional[float] = _defaults.MAX_BLOCK,
        ping_interval: float = _defaults.PING_INTERVAL,
        max_pings_outstanding: int = _defaults.MAX_PINGS_OUTSTANDING,
        no_echo: bool = False,
        randomize: bool = False,
        ignore_discovered_servers: bool = False,
        inbox_prefix: str = _defaults.INBOX_PREFIX,
        retry_on_failed_connect: bool = False,
        on_disconnected: Optional[Callback] = None,
        on_reconnected: Optional[Callback] = None,
        on_closed: Optional[Callback] = None,
        on_error: Optional[ErrorCallback] = None,
        on_discovered_server: Optional[Callback] = None,
        on_lame_duck: Optional[Callback] = None,
    ) -> None:
        checked = check_options(dict(locals()))  # every option but servers, before anything else
        self.max_block = checked["max_block"]
        self._id = next(_conn_ids)
        self._pool = parse_servers(servers)
        if randomize:
            random.shuffle(self._pool)
        self.name = name
        self._token, self._user, self._password = token, user, password
        self._tls = tls
        self._tls_context = tls.build_context() if tls is not None else None  # bad files fail here, not after dialing
        self.connect_timeout = checked["connect_timeout"]
        self.reconnect_policy = reconnect or ReconnectPolicy()
        self.reconnect_buffer_size = reconnect_buffer_size
        self.outbound_buffer_size = outbound_buffer_size
        self.ping_interval = checked["ping_interval"]
        self.max_pings_outstanding = max_pings_outstanding
        self.no_echo = no_echo
        self.ignore_discovered_servers = ignore_discovered_servers
        self.inbox_prefix = inbox_prefix
        self.retry_on_failed_connect = retry_on_failed_connect
        self._callbacks: Dict[str, Any] = {
            "disconnected": on_disconnected,
            "reconnected": on_reconnected,
            "closed": on_closed,
            "error": on_error,
            "discovered_server": on_discovered_server,
            "lame_duck": on_lame_duck,
        }
        self._init_runtime_state()

    def _init_runtime_state(self) -> None:
        """(Re)create every lock, queue and table (also used in a forked child); each part of
        the connection makes its own."""
        self._status = CONNECTING
        self._fast = False  # True only while CONNECTED in the creating process: publish fast path
        self._state_lock = threading.RLock()
        self.last_error: Optional[BaseException] = None
        self.stats = {"in_msgs": 0, "out_msgs": 0, "reconnects": 0}
        self._init_fork_state()
        self._init_link_state()
        self._init_outbox_state()
        self._init_reader_state()
        self._init_interest_state()
        self._init_reply_state()
        self._init_events_state()
        self._init_shutdown_state()

    # -- public state ----------------------------------------------------------------------

    @property
    def status(self) -> ConnectionStatus:
        """The current :class:`ConnectionStatus`."""
        return self._status

    def is_connected(self) -> bool:
        """True while connected (not reconnecting, draining or closed, and not a connection
        inherited by a forked child: there it is closed)."""
        return self._status is CONNECTED and self._fork_gen == _fork_generation[0]

    def is_reconnecting(self) -> bool:
        """True while the connection is trying to get a server back."""
        return self._status is RECONNECTING

    def is_closed(self) -> bool:
        """True after ``close()``/``drain()`` or after reconnecting gave up."""
        return self._status is CLOSED

    @property
    def server_info(self) -> Optional[Info]:
        """The INFO of the server we are connected to (None before connecting)."""
        return self._info

    @property
    def connected_url(self) -> Optional[str]:
        """URL of the current server, or None when not connected."""
        return self._current.url if self._current is not None and self._status is CONNECTED else None

    @property
    def servers(self) -> List[str]:
        """URLs of the server pool (given plus discovered)."""
        with self._state_lock:
            return [s.url for s in self._pool]

    @property
    def max_payload(self) -> int:
        """The server's ``max_payload`` in bytes (headers plus payload of one message)."""
        return self._max_payload

    def __repr__(self) -> str:
        url = self._current.url if self._current is not None else self._pool[0].url
        return f"<Connection {url} {self._status.value} subs={len(self._subs)}>"

    def _repr_html_(self) -> str:
        url = self._current.url if self._current is not None else self._pool[0].url
        return fields_table("NATS connection", [
            ("server", url), ("status", self._status.value), ("subscriptions", len(self._subs)),
            ("servers known", len(self._pool)), ("reconnects", self.stats["reconnects"]),
            ("sent", f"{self.stats['out_msgs']} msgs"), ("received", f"{self.stats['in_msgs']} msgs"),
        ])

    def __enter__(self) -> "Connection":
        if self._status is CONNECTING and self._stream is None:
            self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connecting ------------------------------------------------------------------------

    def connect(self) -> "Connection":
        """Connect to the first server of the pool that answers, then start the threads.

        Raises:
            AuthorizationError: the server refused the credentials.
            ConnectTimeout: no server completed the handshake in ``connect_timeout``.
            MemphisConnectError: no server could be reached.
        """
        if self._status is not CONNECTING or self._stream is not None:
            raise MemphisConnectError(f"connection is {self._status.value}; connect() may be called once")
        self._dial_first()
        self._set_status(CONNECTED)
        self._start_threads()
        return self

    def _start_threads(self) -> None:
        _live_connections.add(self)
        self._reader = threading.Thread(target=self._reader_main, name=f"memphis-sync-reader-{self._id}", daemon=True)
        self._flusher = threading.Thread(target=self._flusher_main, name=f"memphis-sync-flusher-{self._id}", daemon=True)
        self._reader.start()
        self._flusher.start()

    # -- publishing ------------------------------------------------------------------------

    def publish(self, subject: str, payload: bytes = b"", reply: Optional[str] = None, headers: HeadersLike = None) -> None:
        """Publish a message (buffered; written by the flusher within a moment).

        Args:
            subject: where to publish; a literal subject (no wildcards, no whitespace).
            payload: the message body (``bytes``, ``bytearray`` or ``memoryview``).
            reply: optional reply subject.
            headers: optional :class:`Headers` or dict.

        Raises:
            LocalProtocolError: bad subject, reply or header (nothing was sent).
            PayloadTooLargeError: headers plus payload exceed the server's ``max_payload``.
            OutboundBufferFullError: disconnected and the reconnect buffer is full.
            MaxBlockTimeout: the outbound buffer stayed full for ``max_block`` seconds (a
                stalled link); nothing was queued.
            ConnectionClosedError: the connection is closed.
        """
        if self._fast and reply is None and headers is None and type(payload) is bytes:
            # hot path: connected, and a subject validated before (cached as b"PUB <subject> ")
            try:
                prefix = _PUB_PREFIXES[subject]
            except (KeyError, TypeError):
                pass
            else:
                size = len(payload)
                if size <= self._max_payload:
                    if self._out_bytes > _WRITE_HIGH_WATER:
                        self._make_room(size, None)
                    self._out.append(b"%b%d\r\n%b\r\n" % (prefix, size, payload))
                    self._out_bytes += size
                    if not self._flush_kicked:
                        self._flush_kicked = True
                        self._kick.set()
                    return
        self._queue_frame(self._encode(subject, payload, reply, headers))

    def flush(self, timeout: Optional[float] = _defaults.FLUSH_TIMEOUT) -> None:
        """Write everything queued and wait until the server has processed it (PING/PONG).

        Args:
            timeout: seconds (None or ``inf``: no limit). The wait for the socket (a stalled
                link, another thread's write) counts against it too.

        Raises:
            LocalProtocolError: a bad ``timeout`` (nothing was sent).
            FlushTimeout: no PONG within ``timeout`` seconds.
            ConnectionClosedError: the connection closed meanwhile.
        """
        deadline = deadline_after(timeout)
        self._check_usable()
        waiter = _Waiter()
        with self._state_lock:
            if self._status is CLOSED:
                raise ConnectionClosedError("connection is closed")
            self._queue_ping(waiter)
        self._write_pending(deadline)
        if not waiter.wait(deadline):
            with self._state_lock:
                self._forget_pong(waiter)
            raise FlushTimeout(f"flush: no PONG from {self._server_name()} within {describe(timeout)}{self._write_state()}")
        if waiter.error is not None:
            raise waiter.error

    # -- subscribing -----------------------------------------------------------------------

    def subscribe(
        self,
        subject: str,
        queue: Optional[str] = None,
        callback: Optional[MessageHandler] = None,
        *,
        max_msgs: int = 0,
        pending_msgs_limit: int = _defaults.SUB_PENDING_MSGS,
        pending_bytes_limit: int = _defaults.SUB_PENDING_BYTES,
    ) -> Subscription:
        """Subscribe to ``subject`` (wildcards allowed), optionally in a queue group.

        Without ``callback`` the returned :class:`Subscription` is a blocking queue
        (``next_msg(timeout)``, iteration); with one, ``callback(msg)`` runs on the
        subscription's own worker thread.

        Raises:
            LocalProtocolError: bad subject or queue name.
            ConnectionClosedError: the connection is closed.
        """
        return self._subscribe(subject, queue, callback, None, max_msgs, pending_msgs_limit, pending_bytes_limit)

    # -- for the layers above: see ``above.py``; the per-message one stays here -------------

    def request_async(self, subject: str, payload: bytes, headers: HeadersLike, slot: Any, deadline: Optional[float] = None) -> str:
        """Publish a request whose reply goes to ``slot`` (anything with ``set(msg, error=None)``,
        run on the reader thread); return the reply subject. Nothing is registered if the
        publish raises. One call on the pipelined-publish hot path (no per-step calls)."""
        prefix = self._resp_prefix or self._ensure_resp_sub()
        token = format(next(self._resp_tokens), "x")
        reply = prefix + token
        frame = self._encode_request(subject, payload, reply, headers)  # validates; may raise
        self._resp_map[token] = slot
        try:
            self._queue_frame(frame, True, deadline)
        except BaseException:
            self._resp_map.pop(token, None)
            raise
        return reply

    def drop_reply(self, reply: str) -> None:
        """Forget the reply slot of ``reply`` (a request given up on; for the layers above)."""
        self._resp_map.pop(reply[len(self._resp_prefix):], None)

    def publish_trusted(self, subject: str, payload: bytes) -> None:
        """Publish to a subject the server handed us (an ack subject): it arrived as one token
        of a control line, so it holds no whitespace; skip validation and the subject cache."""
        self._queue_frame(b"PUB %b %d\r\n%b\r\n" % (subject.encode(), len(payload), payload))

    # -- request / reply -------------------------------------------------------------------

    def new_inbox(self) -> str:
        """Return a new unique inbox subject (``<inbox_prefix>.<nuid>``)."""
        return f"{self.inbox_prefix}.{self._nuid.next()}"

    def request(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: Optional[float] = _defaults.REQUEST_TIMEOUT,
        headers: HeadersLike = None,
    ) -> Msg:
        """Publish a request and wait for the first reply.

        Args:
            timeout: seconds to wait for the reply (None or ``inf``: no limit), counted from the
                call: a wait for room in the outbound buffer counts against it.

        Raises:
            NoRespondersError: nobody is subscribed to ``subject`` (status 503).
            RequestTimeout: no reply within ``timeout`` seconds.
            MaxBlockTimeout: the outbound buffer stayed full until the deadline (nothing sent).
            LocalProtocolError: bad subject, reply or header (nothing sent).
            PayloadTooLargeError: headers plus payload exceed ``max_payload`` (nothing sent).
            ConnectionClosedError: the connection is closed.
        """
        return self._request(subject, payload, deadline_after(timeout), timeout, headers)

    # -- closing ---------------------------------------------------------------------------

    def drain(self, timeout: Optional[float] = _defaults.DRAIN_TIMEOUT) -> None:
        """Unsubscribe everything, let subscribers finish what arrived, flush, then close.

        Raises:
            LocalProtocolError: a bad ``timeout`` (nothing was drained).
            DrainTimeout: pending messages were not processed in time (the connection is
                closed anyway).
        """
        self._drain(deadline_after(timeout), timeout)

    def close(self, timeout: Optional[float] = _defaults.CLOSE_TIMEOUT) -> None:
        """Flush what is queued, close the socket and stop every thread. Idempotent.

        Returns within ``timeout`` seconds (``_defaults.CLOSE_TIMEOUT``) plus a moment: the
        final flush gets half of it (what the server has not confirmed by then is dropped,
        with a log line), stopping the threads the rest. A thread still busy in a user
        callback after that is left to finish on its own (daemon) and logged.

        Raises:
            LocalProtocolError: a bad ``timeout`` (nothing was closed).
        """
        self._close(deadline_after(timeout))


def connect(servers: Union[str, Sequence[str]] = f"nats://127.0.0.1:{_defaults.NATS_PORT}", **options: Any) -> Connection:
    """Create a :class:`Connection` and connect it. Takes the same options as the class.

    Raises:
        LocalProtocolError: a bad option or server address (nothing is dialled).
        AuthorizationError: the server refused the credentials.
        ConnectTimeout: no server completed the handshake in ``connect_timeout``.
        MemphisConnectError: no server could be reached.
    """
    return Connection(servers, **options).connect()
