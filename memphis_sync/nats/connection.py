"""A thread-safe, blocking NATS connection: one socket, a reader thread and a flusher thread.

Theory of operation
-------------------
Threads (``<n>`` is a per-process connection number):

* ``memphis-sync-reader-<n>`` owns the read side of the socket and the sans-IO parser. It routes
  each message to its subscription (which only enqueues it, or runs a non-blocking internal
  handler such as the request mux), answers server PINGs, matches PONGs to ``flush()`` waiters
  and handles INFO and -ERR. When the socket fails it runs the reconnect loop itself (driven by
  tenacity, see ``_retry``), so exactly one thread ever replaces the socket.
* ``memphis-sync-flusher-<n>`` writes what publishers queued and runs the liveness check (client
  PINGs). Publishing threads append complete frames to a list (an atomic operation) and wake
  the flusher once per batch, so many small publishes become few socket writes; a publisher
  that finds more than ``WRITE_HIGH_WATER`` bytes queued writes them itself (back-pressure), and
  beyond ``outbound_buffer_size`` it waits for the socket at most ``max_block`` seconds, then
  raises :class:`~memphis_sync.errors.MaxBlockTimeout` without queueing. Calls that wait for an
  answer (``request``, ``flush``) write inline to save the flusher's wake-up latency.
* ``memphis-sync-events-<n>`` (started on first use) runs the user's connection callbacks.
* Callback subscriptions each have a worker thread (see ``subscription``).

Locks, in the only order they are ever nested: ``_state_lock`` → ``_send_lock`` → ``_out_lock``.

* ``_send_lock`` serializes socket writes: every byte string written is a sequence of whole
  frames, so frames never interleave. Every wait for it, and every write under it, is bounded
  by the waiting caller's deadline (the stream keeps unsent bytes in order for the next
  writer, see ``transport``), so no caller waits behind another thread's stalled write for
  longer than its own timeout. The liveness check never takes it: it queues its PING and
  counts, so a stalled link is found within ``ping_interval * (max_pings_outstanding + 1)``.
* ``_out_lock`` makes "take the queued frames" atomic with the PING positions (publishers never
  take it: appending a frame is one atomic list operation).
* ``_state_lock`` guards status, the subscription table, the pending-PONG queue and the reconnect
  buffer accounting. No socket I/O and no user code runs while it is held... except the reconnect
  re-subscription, which takes ``_send_lock`` inside it so that no publish can slip between the
  new CONNECT and the re-sent SUBs.

Invariants:

* Frames are complete ``bytes`` objects before they are queued; validation happens before that,
  so a bad subject or header raises in the caller and nothing is written. A call that raises
  never queued its frame (no "sent, then raised").
* After a reconnect the SUBs are written before any buffered publish.
* User callbacks never run on the reader thread, and never with a lock held.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import os
import queue as queue_mod
import random
import ssl
import threading
import time
import warnings
import weakref
from enum import Enum
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union


from .. import _defaults
from ._nuid import Nuid
from .._timeouts import check_timeout, deadline_after, describe, left
from .reconnect import ReconnectPolicy, build_retrying
from .handshake import await_pong, read_info
from .servers import ServerAddress, TlsOptions, parse_servers
from .._version import __version__
from ..errors import (
    AuthorizationError,
    ConnectionClosedError,
    ConnectTimeout,
    DrainTimeout,
    FlushTimeout,
    ForkedConnectionError,
    LocalProtocolError,
    MaxBlockTimeout,
    MemphisConnectError,
    MemphisError,
    NetworkError,
    NoRespondersError,
    OutboundBufferFullError,
    PayloadTooLargeError,
    PermissionViolationError,
    ProtocolError,
    ReadError,
    RequestTimeout,
    StaleConnectionError,
    UnconfirmedPublishWarning,
    error_from_server,
)
from .protocol.headers import Headers
from .protocol.wire import (
    EOF,
    PING,
    PONG,
    _PUB_PREFIXES,
    Err,
    Info,
    Msg,
    Parser,
    Ping,
    Pong,
    encode_connect,
    encode_headers,
    encode_hpub,
    encode_pub,
    encode_sub,
    encode_unsub,
    validate_publish_subject,
)
from .subscription import MessageHandler, Subscription
from .transport import WRITE_DEADLINE, SocketStream, Stream, TlsStream, open_tcp

__all__ = ["Connection", "ConnectionStatus", "TlsOptions", "ServerAddress", "connect"]

logger = logging.getLogger("memphis_sync.connection")  # the name users configure (kept from the flat layout)

HeadersLike = Union[Headers, Mapping[str, str], None]
Callback = Callable[["Connection"], None]
ErrorCallback = Callable[["Connection", BaseException], None]

_conn_ids = itertools.count(1)
_WRITE_HIGH_WATER = _defaults.WRITE_HIGH_WATER

# Bumped in every forked child; a connection compares it with the value it was created under.
_fork_generation = [0]
# Live connections, so a forked child can switch their publish fast path off at once.
_live_connections: "weakref.WeakSet[Connection]" = weakref.WeakSet()


def _bump_fork_generation() -> None:
    """In a forked child (the only thread there): every inherited connection is closed at once,
    so ``is_connected()`` is False before anyone touches it."""
    _fork_generation[0] += 1
    for conn in list(_live_connections):
        conn._fast = False
        try:
            conn._drop_after_fork()
        except Exception:  # pragma: no cover - never let a fork hook raise
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_bump_fork_generation)

#: Seconds the interpreter-exit hook spends, over all connections, writing what is queued and
#: confirming pipelined publishes (nonblocking produces) a script left behind. Settable.
exit_flush_timeout: float = _defaults.EXIT_FLUSH_TIMEOUT


def _flush_at_exit() -> None:
    """At interpreter exit: finish what live connections of this process still owe the server.

    Daemon threads still run while ``atexit`` hooks do, so queued frames can be written and
    acks can arrive. Each connection runs its exit hooks (JetStream waits for its in-flight
    publishes), then flushes and closes, all within :data:`exit_flush_timeout` together;
    whatever could not be confirmed is reported as an :class:`UnconfirmedPublishWarning` with
    its count.
    """
    deadline = time.monotonic() + exit_flush_timeout
    for conn in list(_live_connections):
        if conn._status is CLOSED or conn._fork_gen != _fork_generation[0] or conn._pid != os.getpid():
            continue
        try:
            conn._finish_at_exit(deadline)
        except Exception:  # never let one connection stop the others (or the exit)
            logger.debug("exit flush of connection %s failed", conn._id, exc_info=True)


atexit.register(_flush_at_exit)


class ConnectionStatus(Enum):
    """Where a :class:`Connection` is in its life."""

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    RECONNECTING = "RECONNECTING"
    DRAINING = "DRAINING"
    CLOSED = "CLOSED"


CONNECTING = ConnectionStatus.CONNECTING
CONNECTED = ConnectionStatus.CONNECTED
RECONNECTING = ConnectionStatus.RECONNECTING
DRAINING = ConnectionStatus.DRAINING
CLOSED = ConnectionStatus.CLOSED

#: Allowed status transitions; ``_set_status`` refuses anything else.
TRANSITIONS: Dict[ConnectionStatus, Set[ConnectionStatus]] = {
    CONNECTING: {CONNECTED, CLOSED},
    CONNECTED: {RECONNECTING, DRAINING, CLOSED},
    RECONNECTING: {CONNECTED, DRAINING, CLOSED},
    DRAINING: {CLOSED, RECONNECTING, CONNECTED},
    CLOSED: set(),
}


class _Waiter:
    """A one-shot slot the reader thread fills; waiting is a plain lock acquire (fast, interruptible)."""

    __slots__ = ("_lock", "value", "error")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: Optional[Msg] = None
        self.error: Optional[BaseException] = None

    def set(self, value: Optional[Msg], error: Optional[BaseException] = None) -> None:
        self.value = value
        self.error = error
        try:
            self._lock.release()
        except RuntimeError:  # already set
            pass

    def wait(self, deadline: Optional[float]) -> bool:
        """Wait until set or until ``deadline`` (``time.monotonic()``; None = no limit)."""
        if deadline is None:
            return self._lock.acquire()
        return self._lock.acquire(timeout=left(deadline))


class Connection:
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
        if token is not None and (user is not None or password is not None):
            raise LocalProtocolError("give either token or user/password, not both")
        if (user is None) != (password is None):
            raise LocalProtocolError("user and password must be given together")
        if connect_timeout <= 0:
            raise LocalProtocolError(f"connect_timeout must be > 0, got {connect_timeout!r}")
        if reconnect_buffer_size < 0:
            raise LocalProtocolError(f"reconnect_buffer_size must be >= 0, got {reconnect_buffer_size!r}")
        if type(outbound_buffer_size) is not int or outbound_buffer_size < _WRITE_HIGH_WATER:
            raise LocalProtocolError(f"outbound_buffer_size must be an int >= {_WRITE_HIGH_WATER}, got {outbound_buffer_size!r}")
        self.max_block = check_timeout(max_block, "max_block")
        if not isinstance(ping_interval, (int, float)) or not 0 < ping_interval < float("inf"):
            raise LocalProtocolError(f"ping_interval must be a number of seconds > 0, got {ping_interval!r}")
        if type(max_pings_outstanding) is not int or max_pings_outstanding < 1:
            raise LocalProtocolError(f"max_pings_outstanding must be an int >= 1, got {max_pings_outstanding!r}")
        validate_publish_subject(inbox_prefix)
        self._id = next(_conn_ids)
        self._pool = parse_servers(servers)
        if randomize:
            random.shuffle(self._pool)
        self.name = name
        self._token, self._user, self._password = token, user, password
        self._tls = tls
        self._tls_context: Optional[ssl.SSLContext] = None
        self.connect_timeout = connect_timeout
        self.reconnect_policy = reconnect or ReconnectPolicy()
        self.reconnect_buffer_size = reconnect_buffer_size
        self.outbound_buffer_size = outbound_buffer_size
        self.ping_interval = ping_interval
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
        """(Re)create every lock, queue and table (also used in a forked child)."""
        self._status = CONNECTING
        self._fast = False  # True only while CONNECTED in the creating process: publish fast path
        self._state_lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._fork_gen = _fork_generation[0]
        self._pid = os.getpid()
        self._stream: Optional[Stream] = None
        self._parser: Optional[Parser] = None
        self._info: Optional[Info] = None
        self._current: Optional[ServerAddress] = None
        self._max_payload = 1024 * 1024
        # Outbound frames. ``list.append`` of a whole frame is one atomic C call under the GIL,
        # so publishers need no lock and frames never interleave; a writer takes a prefix
        # (``out[:n]``, ``del out[:n]``) under ``_out_lock`` while publishers keep appending at
        # the end, then writes ``b"".join(prefix)``. (Measured faster than a bytearray buffer
        # or sendmsg() scatter-gather; see docs/performance.rst.)
        self._out: List[bytes] = []
        self._out_bytes = 0  # approximate while connected (unlocked +=); exact while disconnected
        self._out_lock = threading.Lock()
        self._taken = 0  # frames ever taken from _out by writers (positions of queued PINGs)
        self._flush_kicked = False
        self._kick = threading.Event()
        self._closing = threading.Event()
        # one entry per PING we queued: (its position in the outbound stream, waiter or None)
        self._pongs: Deque[Tuple[int, Optional[_Waiter]]] = collections.deque()
        self._pings_out = 0
        self._read_count = 0  # reads that returned data (the reader's only extra work per read)
        self._liveness_reads = 0  # _read_count at the last liveness check
        self._liveness_at = 0.0  # time of the last liveness check
        self._subs: Dict[int, Subscription] = {}
        self._sids = itertools.count(1)
        self._nuid = Nuid()
        self._resp_sub: Optional[Subscription] = None
        self._resp_prefix = ""
        self._resp_map: Dict[str, _Waiter] = {}
        self._resp_tokens = itertools.count(1)
        self._reader: Optional[threading.Thread] = None
        self._flusher: Optional[threading.Thread] = None
        self._events: Optional["queue_mod.SimpleQueue[Any]"] = None
        # callables(deadline) -> (unconfirmed count, what) run at interpreter exit (JetStream)
        self._exit_hooks: List[Callable[[float], Tuple[int, str]]] = []
        self._events_thread: Optional[threading.Thread] = None
        self.last_error: Optional[BaseException] = None
        self._fork_error = ""
        self.stats = {"in_msgs": 0, "out_msgs": 0, "reconnects": 0}

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

    def _server_name(self) -> str:
        return self._current.url if self._current is not None else self._pool[0].url if self._pool else "the server"

    def _write_state(self) -> str:
        """What a timeout message should add about the link (empty when all looks well)."""
        status = self._status
        if status is not CONNECTED and status is not DRAINING:
            return f" (the connection is {status.value.lower()}: {self.last_error or 'not connected'})"
        stream = self._stream
        unsent = self._out_bytes + (stream.pending if stream is not None else 0)
        if unsent > _WRITE_HIGH_WATER:
            return f" ({unsent} bytes still wait for the socket: a slow or stalled link?)"
        return ""

    def __repr__(self) -> str:
        url = self._current.url if self._current is not None else self._pool[0].url
        return f"<Connection {url} {self._status.value} subs={len(self._subs)}>"

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
        self._set_status(CONNECTED)
        self._start_threads()
        return self

    def _rotate(self) -> None:
        with self._state_lock:
            if len(self._pool) > 1:
                self._pool.append(self._pool.pop(0))

    def _retry_connect(self) -> None:
        for attempt in build_retrying(self.reconnect_policy, self._closing):
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
                        exc.final = True  # type: ignore[attr-defined]  (read by the retry predicate)
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
            info = read_info(stream, parser, deadline, self.connect_timeout)
            use_tls = server.tls or self._tls is not None or info.tls_required
            if use_tls:
                if self._tls_context is None:
                    self._tls_context = (self._tls or TlsOptions()).build_context()
                hostname = (self._tls.hostname if self._tls else None) or server.tls_name or server.host
                stream = TlsStream(sock, self._tls_context, hostname, max(0.01, deadline - time.monotonic()), self._kick_flusher)
            if not stream.write(encode_connect(self._connect_options(server, info, use_tls)) + PING, deadline):
                raise ConnectTimeout(f"connect to {server.url}: the server took no CONNECT within {self.connect_timeout} s")
            await_pong(stream, parser, deadline, self.connect_timeout)
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
                        logger.warning("ignoring bad connect_url %r from the server", url)
                        continue
                    if (server.host, server.port) not in known:
                        server.tls = use_tls
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

    def _start_threads(self) -> None:
        _live_connections.add(self)
        self._reader = threading.Thread(target=self._reader_main, name=f"memphis-sync-reader-{self._id}", daemon=True)
        self._flusher = threading.Thread(target=self._flusher_main, name=f"memphis-sync-flusher-{self._id}", daemon=True)
        self._reader.start()
        self._flusher.start()

    # -- status ----------------------------------------------------------------------------

    def _set_status(self, new: ConnectionStatus) -> ConnectionStatus:
        with self._state_lock:
            old = self._status
            if new is old:
                return old
            if new not in TRANSITIONS[old]:
                raise ConnectionClosedError(f"connection is {old.value}; cannot become {new.value}")
            self._status = new
            self._fast = new is CONNECTED and self._fork_gen == _fork_generation[0]
            logger.debug("connection %s: %s -> %s", self._id, old.value, new.value)
            return old

    def _check_fork(self) -> None:
        # before taking any lock: a lock held by a parent thread at fork() time stays held forever
        if _fork_generation[0] != self._fork_gen or os.getpid() != self._pid:
            self._handle_fork()

    def _check_usable(self) -> None:
        self._check_fork()
        if self._status is CLOSED:
            if self._fork_error:
                raise ForkedConnectionError(self._fork_error)
            raise ConnectionClosedError("connection is closed")
        if self._status is CONNECTING and self._stream is None:
            raise ConnectionClosedError("not connected yet: call connect() first")

    def _handle_fork(self) -> None:
        """In a forked child: drop everything inherited and fail clearly.

        The parent's socket is shared with the child; writing to it would corrupt the parent's
        stream, and the parent's threads do not exist here. We close our copy of the file
        descriptor (never ``shutdown()``, which would cut the parent off too) and refuse to work.
        """
        if not self._fork_error:
            self._drop_after_fork()
        raise ForkedConnectionError(self._fork_error)

    def _drop_after_fork(self) -> None:
        """Forget the parent's socket, threads and state; the connection is CLOSED here."""
        if self._fork_error and self._fork_gen == _fork_generation[0]:
            return
        stream = self._stream
        parent = self._pid
        self._init_runtime_state()
        self._status = CLOSED
        self._fast = False
        if stream is not None:
            stream.close(shutdown=False)
        self._fork_error = (
            f"this connection was created in process {parent} and cannot be used in forked process "
            f"{os.getpid()}; connect after the fork (e.g. gunicorn post_fork, Celery worker_process_init, "
            f"uWSGI lazy-apps)"
        )

    # -- writing ---------------------------------------------------------------------------

    def _kick_flusher(self) -> None:
        if not self._flush_kicked:
            self._flush_kicked = True
            self._kick.set()

    def _queue_frame(self, frame: bytes, kick: bool = True, deadline: Optional[float] = None) -> None:
        """Queue a complete frame; applies the buffer limits (see :meth:`_make_room`).

        ``kick=False`` when the caller writes inline right after (saves a flusher wake-up);
        ``deadline`` bounds a wait for room (default: ``max_block`` from now)."""
        if self._fast:
            if self._out_bytes > _WRITE_HIGH_WATER:
                self._make_room(len(frame), deadline)
            self._out.append(frame)
            self._out_bytes += len(frame)
            if kick and not self._flush_kicked:
                self._flush_kicked = True
                self._kick.set()
            return
        self._check_usable()
        with self._state_lock:
            if self._status is CLOSED:
                raise ConnectionClosedError("connection is closed")
            size = self._out_bytes + len(frame)
            if self._status is not CONNECTED and size > self.reconnect_buffer_size:
                raise OutboundBufferFullError(size, self.reconnect_buffer_size)
            if self._status is CONNECTED:
                room = size <= _WRITE_HIGH_WATER
            else:
                self._out.append(frame)
                self._out_bytes = size
                return
        if not room:
            self._make_room(len(frame), deadline)
        self._out.append(frame)
        self._out_bytes += len(frame)
        if kick:
            self._kick_flusher()

    def _make_room(self, size: int, deadline: Optional[float]) -> None:
        """Back-pressure for a frame of ``size`` bytes when more than ``WRITE_HIGH_WATER`` is
        queued: write the backlog here (the producing thread pays, not memory); while queued
        plus unsent bytes would exceed ``outbound_buffer_size`` (a slow or stalled link), keep
        waiting for the socket until ``deadline`` (default ``max_block`` from now), then raise
        :class:`MaxBlockTimeout` without queueing anything."""
        if deadline is None and self.max_block is not None:
            deadline = time.monotonic() + self.max_block
        limit = self.outbound_buffer_size
        while True:
            self._write_pending(deadline)
            stream = self._stream
            queued = self._out_bytes + (stream.pending if stream is not None else 0)
            if queued + size <= limit or queued == 0 or self._status is not CONNECTED:
                return  # room (a frame larger than the limit goes alone), or disconnected
            if deadline is not None and time.monotonic() >= deadline:
                url = self._current.url if self._current is not None else "the server"
                raise MaxBlockTimeout(
                    f"outbound buffer full: {queued} bytes queued for {url} that the socket has not "
                    f"taken (a slow or stalled link) after waiting max_block={describe(self.max_block)}; "
                    f"nothing of this message was sent"
                )

    def _write_pending(self, deadline: Optional[float] = None) -> bool:
        """Write what an earlier write left unsent, then every queued frame, until ``deadline``
        (any thread; None = until done). Returns True when nothing is left unsent; on False the
        rest stays queued in order (the flusher finishes it). Waiting for the send lock is
        bounded by the same deadline. Failures hand the socket to the reader."""
        if self._fork_gen != _fork_generation[0] or self._pid != os.getpid():
            self._check_fork()  # raises ForkedConnectionError; never touch the parent's socket
        lock = self._send_lock
        if not lock.acquire(False):
            if deadline is None:
                lock.acquire()
            elif not lock.acquire(timeout=left(deadline)):
                self._kick_flusher()  # whoever holds the lock may leave our frames behind
                return False
        try:
            if self._status is not CONNECTED and self._status is not DRAINING:
                return True
            stream = self._stream
            if stream is None:
                return True
            try:
                if stream.pending and not stream.write(b"", deadline):
                    self._kick_flusher()
                    return False
                with self._out_lock:
                    # clear the flag *before* measuring the batch: a frame appended after this
                    # point either is in the batch or wakes the flusher itself
                    self._flush_kicked = False
                    out = self._out
                    count = len(out)
                    if not count:
                        return True
                    batch = out[:count]
                    del out[:count]
                    self._taken += count
                    self._out_bytes = 0
                if stream.write(b"".join(batch), deadline):
                    return True
                self._kick_flusher()
                return False
            except NetworkError as exc:
                logger.warning("write failed (%s); %d bytes not sent; reconnecting", exc, stream.pending)
                self.last_error = exc
                stream.close()
                return False
        finally:
            lock.release()

    def _flusher_main(self) -> None:
        kick = self._kick
        closing = self._closing
        next_ping = time.monotonic() + self.ping_interval
        while not closing.is_set():
            stream = self._stream
            writable = self._status is CONNECTED or self._status is DRAINING
            work = writable and (bool(self._out) or (stream is not None and stream.pending > 0))
            if not work:
                # idle, or disconnected (frames wait in the reconnect buffer): the reconnect
                # and every new frame kick us
                kick.wait(max(0.0, next_ping - time.monotonic()))
                kick.clear()
            if closing.is_set():
                break
            if work:
                try:
                    # bounded by the next liveness check: a stalled socket cannot hold it up
                    if not self._write_pending(next_ping) and time.monotonic() < next_ping:
                        kick.wait(max(0.0, min(next_ping - time.monotonic(), 0.01)))
                except ForkedConnectionError:  # pragma: no cover - the child has no flusher
                    return
            now = time.monotonic()
            if now >= next_ping:
                next_ping = now + self.ping_interval
                if self._status is CONNECTED:
                    self._liveness_ping()
        logger.debug("flusher %s stopped", self._id)

    def _liveness_ping(self) -> None:
        """Queue a PING (the flusher writes it), or declare the link stale. Never waits for the
        socket.

        An interval counts against the link only when nothing arrived from the server in it and
        no queued bytes moved out: a slow link that is draining a backlog (a reconnect buffer,
        large messages) is alive even while its PINGs wait behind the backlog. After
        ``max_pings_outstanding`` such intervals, or when the socket took no bytes for
        ``WRITE_DEADLINE`` while data waited, the link is stale."""
        with self._state_lock:
            stream = self._stream
            now = time.monotonic()
            reads = self._read_count
            heard = reads != self._liveness_reads
            moving = (
                stream is not None and (stream.pending > 0 or bool(self._out))
                and stream.last_progress >= self._liveness_at
            )
            self._liveness_reads, self._liveness_at = reads, now
            if heard or moving:
                self._pings_out = 0
            stalled = stream is not None and stream.pending > 0 and now - stream.last_progress > WRITE_DEADLINE
            if self._pings_out >= self.max_pings_outstanding or stalled:
                stale = True
            else:
                self._pings_out += 1
                self._queue_ping(None)
                stale = False
        if stale:
            what = (f"the socket took no bytes for {WRITE_DEADLINE:g} s" if stalled
                    else f"{self._pings_out} PINGs unanswered, nothing received or sent meanwhile")
            logger.warning("%s: connection is stale, reconnecting", what)
            self.last_error = StaleConnectionError(f"server stopped answering ({what})")
            if stream is not None:
                stream.close()

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

    def _encode(self, subject: str, payload: bytes, reply: Optional[str], headers: HeadersLike) -> bytes:
        """Validate and encode one PUB/HPUB frame (raises before anything is queued)."""
        if headers:
            frame = encode_hpub(subject, payload, headers, reply)
            # the frame is longer than headers+payload, so only long frames need the exact size
            if len(frame) > self._max_payload and self._hpub_size(frame) > self._max_payload:
                raise PayloadTooLargeError(self._hpub_size(frame), self._max_payload)
            return frame
        if len(payload) > self._max_payload:
            raise PayloadTooLargeError(len(payload), self._max_payload)
        return encode_pub(subject, payload, reply)

    @staticmethod
    def _hpub_size(frame: bytes) -> int:
        line = frame[: frame.index(b"\r\n")]
        return int(line.rsplit(None, 1)[1])

    def flush(self, timeout: Optional[float] = _defaults.FLUSH_TIMEOUT) -> None:
        """Write everything queued and wait until the server has processed it (PING/PONG).

        Args:
            timeout: seconds (None or ``inf``: no limit). The wait for the socket (a stalled
                link, another thread's write) counts against it too.

        Raises:
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
                # keep the FIFO aligned: the PONG may still come, and must go to nobody
                for i, (pos, w) in enumerate(self._pongs):
                    if w is waiter:
                        self._pongs[i] = (pos, None)
                        break
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

    # -- for the layers above (JetStream, Memphis, the broker): not part of the user API -----

    def subscribe_internal(self, subject: str, handler: MessageHandler, queue: Optional[str] = None) -> Subscription:
        """Subscribe with a handler that runs on the reader thread (it must never block)."""
        return self._subscribe(subject, queue, None, handler, 0, _defaults.SUB_PENDING_MSGS, _defaults.SUB_PENDING_BYTES)

    def queue_publish(
        self, subject: str, payload: bytes, reply: Optional[str] = None, headers: HeadersLike = None, *,
        kick: bool = True, deadline: Optional[float] = None,
    ) -> None:
        """Validate, encode and queue one publish (``kick=False`` when :meth:`write_now` follows)."""
        self._queue_frame(self._encode(subject, payload, reply, headers), kick, deadline)

    def write_now(self, deadline: Optional[float] = None) -> bool:
        """Write what is queued until ``deadline`` (see ``_write_pending``); True when all went out."""
        return self._write_pending(deadline)

    def check_usable(self) -> None:
        """Raise ``ConnectionClosedError``/``ForkedConnectionError`` unless the connection can be used."""
        self._check_usable()

    def call_off_reader(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the events thread (work that may call user code, never the reader)."""
        self._run_off_reader(fn)

    def link_state(self) -> str:
        """What a timeout message should add about the link ("" when all looks well)."""
        return self._write_state()

    def describe_server(self) -> str:
        """The URL of the current server (or of the first of the pool), for messages."""
        return self._server_name()

    def add_exit_hook(self, hook: Callable[[float], Tuple[int, str]]) -> None:
        """Run ``hook(deadline) -> (unconfirmed count, what)`` at interpreter exit (JetStream)."""
        self._exit_hooks.append(hook)

    @property
    def number(self) -> int:
        """This connection's number in the process (as in its thread names)."""
        return self._id

    # -- subscribing (internals) --------------------------------------------------------------

    def _subscribe(
        self,
        subject: str,
        queue: Optional[str],
        callback: Optional[MessageHandler],
        internal: Optional[MessageHandler],
        max_msgs: int,
        pending_msgs_limit: int,
        pending_bytes_limit: int,
    ) -> Subscription:
        if not isinstance(max_msgs, int) or max_msgs < 0:
            raise LocalProtocolError(f"max_msgs must be an int >= 0, got {max_msgs!r}")
        if pending_msgs_limit < 1 or pending_bytes_limit < 1:
            raise LocalProtocolError("pending limits must be >= 1")
        sid = next(self._sids)
        frame = encode_sub(subject, sid, queue)  # validates before anything changes
        unsub = encode_unsub(sid, max_msgs) if max_msgs else b""
        self._check_usable()
        with self._state_lock:
            if self._status is CLOSED:
                raise ConnectionClosedError("connection is closed")
            if self._status is DRAINING:
                raise ConnectionClosedError("connection is draining")
            sub = Subscription(
                self, sid, subject, queue, callback, internal=internal,
                pending_msgs_limit=pending_msgs_limit, pending_bytes_limit=pending_bytes_limit,
            )
            sub.max_msgs = max_msgs
            self._subs[sid] = sub
            if self._status is CONNECTED:
                # queued in order with publishes; on reconnect every SUB is re-sent anyway
                self._append(frame + unsub)
        self._kick_flusher()
        return sub

    def _unsubscribe(self, sub: Subscription, max_msgs: int = 0) -> None:
        if not isinstance(max_msgs, int) or max_msgs < 0:
            raise LocalProtocolError(f"max_msgs must be an int >= 0, got {max_msgs!r}")
        self._check_fork()
        with self._state_lock:
            if self._status is CLOSED:
                sub._finish(ConnectionClosedError("connection is closed"))
                return
            if max_msgs and sub.delivered < max_msgs:
                sub.max_msgs = max_msgs
                frame = encode_unsub(sub.sid, max_msgs)
            else:
                self._subs.pop(sub.sid, None)
                frame = encode_unsub(sub.sid)
                sub._finish(None)
            if self._status is CONNECTED or self._status is DRAINING:
                self._append(frame)
        self._kick_flusher()

    def _remove_subscription(self, sid: int) -> None:
        with self._state_lock:
            self._subs.pop(sid, None)

    # -- request / reply -------------------------------------------------------------------

    def new_inbox(self) -> str:
        """Return a new unique inbox subject (``<inbox_prefix>.<nuid>``)."""
        return f"{self.inbox_prefix}.{self._nuid.next()}"

    def _ensure_resp_sub(self) -> str:
        prefix = self._resp_prefix
        if prefix:
            return prefix
        with self._state_lock:
            if not self._resp_prefix:
                prefix = f"{self.new_inbox()}."
                self._resp_sub = self.subscribe_internal(prefix + "*", self._on_response)
                self._resp_prefix = prefix
            return self._resp_prefix

    def _on_response(self, msg: Msg) -> None:
        token = msg.subject[len(self._resp_prefix):]
        waiter = self._resp_map.pop(token, None)
        if waiter is not None:
            waiter.set(msg)

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
        deadline = deadline_after(timeout)
        self._check_fork()
        prefix = self._resp_prefix or self._ensure_resp_sub()
        token = format(next(self._resp_tokens), "x")
        waiter = _Waiter()
        self._resp_map[token] = waiter
        try:
            self._queue_frame(self._encode_request(subject, payload, prefix + token, headers), False, deadline)
            self._write_pending(deadline)
            if not waiter.wait(deadline):
                raise RequestTimeout(f"no reply to request on {subject!r} within {describe(timeout)}{self._write_state()}")
        finally:
            self._resp_map.pop(token, None)
        if waiter.error is not None:
            raise waiter.error
        msg = waiter.value
        assert msg is not None
        if msg.status == 503 and not msg.payload:
            raise NoRespondersError(subject)
        return msg

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

    def _encode_request(self, subject: str, payload: bytes, reply: str, headers: HeadersLike) -> bytes:
        """Encode PUB/HPUB with one of our own inbox replies: valid by construction, so only
        the subject (through its cache), the headers and the size are checked."""
        prefix = _PUB_PREFIXES.get(subject) if type(subject) is str else None
        if prefix is None or type(payload) is not bytes:
            return self._encode(subject, payload, reply, headers)  # validates and fills the cache
        size = len(payload)
        if headers:
            block = encode_headers(headers)
            total = len(block) + size
            if total > self._max_payload:
                raise PayloadTooLargeError(total, self._max_payload)
            # prefix is b"PUB <subject> ": reuse its validated subject for HPUB
            return b"HPUB %b%b %d %d\r\n%b%b\r\n" % (prefix[4:], reply.encode(), len(block), total, block, payload)
        if size > self._max_payload:
            raise PayloadTooLargeError(size, self._max_payload)
        return b"%b%b %d\r\n%b\r\n" % (prefix, reply.encode(), size, payload)

    def publish_trusted(self, subject: str, payload: bytes) -> None:
        """Publish to a subject the server handed us (an ack subject): it arrived as one token
        of a control line, so it holds no whitespace; skip validation and the subject cache."""
        self._queue_frame(b"PUB %b %d\r\n%b\r\n" % (subject.encode(), len(payload), payload))

    # -- reading ---------------------------------------------------------------------------

    def _reader_main(self) -> None:
        while True:
            error: BaseException
            try:
                self._read_loop()
                error = ReadError("server closed the connection")
            except (NetworkError, ProtocolError) as exc:
                error = exc
            except Exception as exc:  # a bug must not silently kill the connection
                logger.exception("reader thread failed")
                error = exc
            if self._closing.is_set():
                break
            if self.last_error is None or not isinstance(self.last_error, StaleConnectionError):
                self.last_error = error
            logger.warning("disconnected from %s: %s", self._current.url if self._current else "?", self.last_error)
            if not self._handle_disconnect():
                break
        logger.debug("reader %s stopped", self._id)

    def _read_loop(self) -> None:
        stream = self._stream
        parser = self._parser
        assert stream is not None and parser is not None
        read = stream.read
        feed = parser.feed
        subs = self._subs
        stats = self.stats
        size = low = _defaults.READ_SIZE
        high = _defaults.READ_SIZE_MAX
        while True:
            data = read(size)
            if not data:
                return
            self._read_count += 1
            got = len(data)
            if got == size and size < high:
                size *= 2
            elif got < size >> 2 and size > low:
                size >>= 1
            for event in feed(data):
                if type(event) is Msg:
                    stats["in_msgs"] += 1
                    sub = subs.get(event.sid)
                    if sub is not None:
                        sub._deliver(event)
                elif type(event) is Ping:
                    self._append(PONG)
                    self._kick_flusher()
                elif type(event) is Pong:
                    self._on_pong()
                elif type(event) is Info:
                    self._absorb_info(event)
                elif type(event) is Err:
                    self._on_err(event)
                elif event is EOF:
                    return

    def _on_pong(self) -> None:
        with self._state_lock:
            self._pings_out = 0
            waiter = self._pongs.popleft()[1] if self._pongs else None
        if waiter is not None:
            waiter.set(None)

    def _on_err(self, event: Err) -> None:
        exc = error_from_server(event.message)
        logger.warning("server error: %s", event.message)
        self.last_error = exc
        if isinstance(exc, PermissionViolationError):
            self._report_error(exc)
            return
        self._report_error(exc)
        # the server closes the connection after every other -ERR; the read will fail next

    # -- reconnecting ----------------------------------------------------------------------

    def _handle_disconnect(self) -> bool:
        """Called on the reader thread after the socket failed. Returns False when closed."""
        stream = self._stream
        if stream is not None:
            stream.close()
        with self._state_lock:
            if self._status is CLOSED:
                return False
            policy = self.reconnect_policy
            if not policy.enabled or policy.max_attempts == 0:
                pass
            else:
                self._set_status(RECONNECTING)
            # PINGs already taken by a writer died with the socket; those still queued will be
            # sent (and answered) on the next connection, so their waiters stay in line
            with self._out_lock:
                taken = self._taken
                lost = ConnectionClosedError("disconnected before the PONG arrived")
                while self._pongs and self._pongs[0][0] < taken:
                    waiter = self._pongs.popleft()[1]
                    if waiter is not None:
                        waiter.set(None, lost)
                self._pings_out = 0
                self._out_bytes = sum(map(len, self._out))  # exact from now on, for the limit
            if self._status is not RECONNECTING:
                reconnect = False
            else:
                reconnect = True
        self._emit("disconnected")
        if reconnect:
            self._rotate()  # try another server of the pool first; the current one just failed
        if not reconnect:
            self._close_from_reader(self.last_error)
            return False
        try:
            for attempt in build_retrying(self.reconnect_policy, self._closing):
                with attempt:
                    self._reconnect_once()
        except BaseException as exc:
            if self._closing.is_set():
                return False
            logger.error("giving up reconnecting: %s", exc)
            self.last_error = exc
            self._close_from_reader(exc)
            return False
        if self._closing.is_set():
            return False
        self.stats["reconnects"] += 1
        self._emit("reconnected")
        return True

    def _reconnect_once(self) -> None:
        if self._closing.is_set():
            return
        self._attempt_next()
        self._resubscribe_and_resume()

    def _resubscribe_and_resume(self) -> None:
        """Re-send every SUB, then switch to CONNECTED so buffered publishes follow them."""
        with self._state_lock:
            frames = []
            for sub in list(self._subs.values()):
                frames.append(encode_sub(sub.subject, sub.sid, sub.queue))
                if sub.max_msgs:
                    left = sub.max_msgs - sub.delivered
                    if left <= 0:
                        self._subs.pop(sub.sid, None)
                        continue
                    frames.append(encode_unsub(sub.sid, left))
            stream = self._stream
            assert stream is not None
            deadline = time.monotonic() + self.connect_timeout
            # writers of the old stream fail fast (it is closed), so this wait is short; bounded anyway
            if not self._send_lock.acquire(timeout=self.connect_timeout):
                raise ConnectTimeout("reconnect: another writer held the socket for connect_timeout")
            try:
                if frames and not stream.write(b"".join(frames), deadline):
                    raise ConnectTimeout(f"reconnect: the server took no SUBs within {self.connect_timeout} s")
                if self._status is RECONNECTING:
                    self._set_status(CONNECTED)
            finally:
                self._send_lock.release()
        self._kick_flusher()

    def _append(self, frame: bytes) -> None:
        self._out.append(frame)

    def _queue_ping(self, waiter: Optional[_Waiter]) -> None:
        """Queue a PING and its FIFO entry at its exact stream position (``_state_lock`` held)."""
        with self._out_lock:
            self._pongs.append((self._taken + len(self._out), waiter))
            self._out.append(PING)

    def _fail_pongs(self, error: BaseException) -> None:
        while self._pongs:
            waiter = self._pongs.popleft()[1]
            if waiter is not None:
                waiter.set(None, error)
        self._pings_out = 0

    # -- callbacks -------------------------------------------------------------------------

    def _emit(self, name: str, error: Optional[BaseException] = None) -> None:
        callback = self._callbacks.get(name)
        if callback is None:
            return
        self._events_queue().put((callback, error))

    def _run_off_reader(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the events thread (for work that may call user code)."""
        self._events_queue().put((lambda conn: fn(), None))

    def _report_error(self, error: BaseException) -> None:
        if self._callbacks.get("error") is None:
            logger.error("asynchronous error: %s", error)
            return
        self._emit("error", error)

    def _events_queue(self) -> "queue_mod.SimpleQueue[Any]":
        with self._state_lock:
            if self._events is None:
                self._events = queue_mod.SimpleQueue()
                self._events_thread = threading.Thread(
                    target=self._events_main, args=(self._events,), name=f"memphis-sync-events-{self._id}", daemon=True
                )
                self._events_thread.start()
            return self._events

    def _events_main(self, q: "queue_mod.SimpleQueue[Any]") -> None:
        while True:
            item = q.get()
            if item is None:
                return
            callback, error = item
            try:
                if error is None:
                    callback(self)
                else:
                    callback(self, error)
            except Exception:
                logger.exception("connection callback %r raised", callback)

    # -- closing ---------------------------------------------------------------------------

    def drain(self, timeout: Optional[float] = _defaults.DRAIN_TIMEOUT) -> None:
        """Unsubscribe everything, let subscribers finish what arrived, flush, then close.

        Raises:
            DrainTimeout: pending messages were not processed in time (the connection is
                closed anyway).
        """
        deadline = deadline_after(timeout)
        self._check_fork()
        if self._status is CLOSED:
            return
        subs = [s for s in list(self._subs.values()) if s is not self._resp_sub]
        for sub in subs:
            try:
                sub.unsubscribe()
            except MemphisError:
                pass
        try:
            self.flush(left(deadline))
        except MemphisError:
            logger.debug("flush during drain failed", exc_info=True)
        with self._state_lock:
            if self._status is CONNECTED:
                self._set_status(DRAINING)
        ok = True
        for sub in subs:
            ok = sub._wait_processed(left(deadline)) and ok
        self.close(timeout=_defaults.CLOSE_TIMEOUT if deadline is None else max(0.5, left(deadline) or 0.0))
        if not ok:
            raise DrainTimeout(f"drain: subscriptions still had messages after {describe(timeout)}")

    def close(self, timeout: Optional[float] = _defaults.CLOSE_TIMEOUT) -> None:
        """Flush what is queued, close the socket and stop every thread. Idempotent.

        Returns within ``timeout`` seconds (``_defaults.CLOSE_TIMEOUT``) plus a moment: the
        final flush gets half of it (what the server has not confirmed by then is dropped,
        with a log line), stopping the threads the rest. A thread still busy in a user
        callback after that is left to finish on its own (daemon) and logged.

        Raises:
            LocalProtocolError: a bad ``timeout`` (nothing was closed).
        """
        deadline = deadline_after(timeout)
        if _fork_generation[0] != self._fork_gen or os.getpid() != self._pid:
            try:
                self._handle_fork()
            except ForkedConnectionError:
                return
        with self._state_lock:
            if self._status is CLOSED:
                return
            was = self._status
        if was in (CONNECTED, DRAINING):
            wait = min(self.connect_timeout, _defaults.CLOSE_TIMEOUT / 2)
            if deadline is not None:
                wait = min(wait, (left(deadline) or 0.0) / 2)
            try:
                self.flush(timeout=wait)
            except MemphisError as exc:
                logger.warning("closing %s: final flush did not complete (%s)", self._server_name(), exc)
        self._shutdown(ConnectionClosedError("connection closed"), deadline)

    def _finish_at_exit(self, deadline: float) -> None:
        """The interpreter is exiting and this connection was not closed: confirm what we can
        before ``deadline``, close, and warn about the rest (see ``_flush_at_exit``)."""
        lost: List[str] = []
        for hook in list(self._exit_hooks):
            count, what = hook(deadline)
            if count:
                lost.append(f"{count} {what}")
        queued = len(self._out)
        if self._status is CONNECTED or self._status is DRAINING:
            try:
                self.flush(timeout=left(deadline))
                queued = 0
            except MemphisError:
                pass
        if queued:
            lost.append(f"{queued} queued frame(s) (publishes, acks) never written")
        self._shutdown(ConnectionClosedError("connection closed at interpreter exit"), time.monotonic() + 0.5)
        if lost:
            warnings.warn(
                f"memphis-sync: the interpreter exited before {self._server_name()} confirmed "
                f"{'; '.join(lost)}; close the connection (or flush the producer) before exiting, "
                f"and handle the futures of nonblocking produces",
                UnconfirmedPublishWarning,
                stacklevel=1,
            )

    def _close_from_reader(self, error: Optional[BaseException]) -> None:
        self._shutdown(ConnectionClosedError(f"connection closed: {error}" if error else "connection closed"))

    def _shutdown(self, error: BaseException, deadline: Optional[float] = None) -> None:
        with self._state_lock:
            if self._status is CLOSED:
                return
            self._status = CLOSED
            self._fast = False
            self._closing.set()
            self._kick.set()
            stream = self._stream
            subs = list(self._subs.values())
            self._subs.clear()
            self._fail_pongs(error)
            waiters = list(self._resp_map.values())
            self._resp_map.clear()
        if stream is not None:
            stream.close()
        for waiter in waiters:
            waiter.set(None, error)
        for sub in subs:
            sub._finish(error)
        if deadline is None:
            deadline = time.monotonic() + _defaults.CLOSE_TIMEOUT
        me = threading.current_thread()
        busy = []
        for thread in (self._reader, self._flusher):
            if thread is not None and thread is not me:
                thread.join(left(deadline))
                if thread.is_alive():
                    busy.append(thread.name)
        for sub in subs:
            sub._join(left(deadline))
            if sub._worker is not None and sub._worker.is_alive():
                busy.append(sub._worker.name)
        self._emit("closed")
        events, thread = self._events, self._events_thread
        if events is not None:
            events.put(None)
            if thread is not None and thread is not me:
                thread.join(max(left(deadline) or 0.0, 0.05))
                if thread.is_alive():
                    busy.append(thread.name)
        if busy:
            logger.warning("connection %s closed; still busy (in user callbacks?): %s", self._id, ", ".join(busy))
        else:
            logger.info("connection %s closed", self._id)


def connect(servers: Union[str, Sequence[str]] = f"nats://127.0.0.1:{_defaults.NATS_PORT}", **options: Any) -> Connection:
    """Create a :class:`Connection` and connect it. Takes the same options as the class."""
    return Connection(servers, **options).connect()
