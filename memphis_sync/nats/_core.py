"""What the mixins of :class:`~memphis_sync.nats.connection.Connection` know about each other.

Each mixin module (``outbox``, ``reader``, ``dial``, ``interest``, ``request``, ``callbacks``,
``shutdown``, ``status``, ``fork``) owns some instance attributes and methods, and uses others
that a sibling owns. :class:`_ConnectionCore`, the one base class of every mixin, declares the
instance attributes (class-level annotations only: no values, no properties, no ``__slots__``)
and, for the type checker only, the signatures of the methods the mixins call across modules.
At run time the class is empty, so attribute access costs what it did before (plain instance
``__dict__`` lookups), and every method resolves to its one implementation in a mixin.

The attributes are grouped by the module that creates them (in its ``_init_*_state``, or the
connection's constructor for the options); that module's docstring says what each is for.
"""

from __future__ import annotations

import ssl
import threading
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple

if TYPE_CHECKING:  # pragma: no cover
    import queue as queue_mod

    from ._nuid import Nuid
    from ._waiter import _Waiter
    from .protocol import Info, Parser
    from .protocol.headers import HeadersLike
    from .reconnect import ReconnectPolicy
    from .servers import ServerAddress, TlsOptions
    from .states import ConnectionStatus
    from .subscription import MessageHandler, Subscription
    from .transport import Stream

__all__: List[str] = []


class _ConnectionCore:
    """The instance attributes every part of a connection may use (annotations only)."""

    # -- connection (constructor and _init_runtime_state): options, identity, shared state --
    _id: int  # per-process connection number (thread names, logs)
    name: Optional[str]
    _token: Optional[str]
    _user: Optional[str]
    _password: Optional[str]
    _tls: Optional[TlsOptions]
    connect_timeout: float
    reconnect_policy: ReconnectPolicy
    reconnect_buffer_size: int
    outbound_buffer_size: int
    max_block: Optional[float]
    ping_interval: float
    max_pings_outstanding: int
    no_echo: bool
    ignore_discovered_servers: bool
    inbox_prefix: str
    retry_on_failed_connect: bool
    _state_lock: threading.RLock
    last_error: Optional[BaseException]
    stats: Dict[str, int]  # "in_msgs", "out_msgs", "reconnects"

    # -- status --
    _status: ConnectionStatus
    _fast: bool  # True only while CONNECTED in the creating process: the publish fast path is on

    # -- fork --
    _fork_gen: int  # the fork generation this connection's state was made under
    _pid: int  # the process that made it
    _fork_error: str  # set once the state was dropped in a child: the message to raise

    # -- dial --
    _pool: List[ServerAddress]
    _tls_context: Optional[ssl.SSLContext]
    _stream: Optional[Stream]
    _parser: Optional[Parser]
    _info: Optional[Info]
    _current: Optional[ServerAddress]
    _max_payload: int

    # -- outbox --
    _out: List[bytes]
    _out_bytes: int
    _out_lock: threading.Lock
    _send_lock: threading.Lock
    _taken: int
    _flush_kicked: bool
    _kick: threading.Event
    _pongs: Deque[Tuple[int, Optional[_Waiter]]]
    _pings_out: int
    _liveness_reads: int
    _liveness_at: float
    _flusher: Optional[threading.Thread]

    # -- reader --
    _reader: Optional[threading.Thread]
    _read_count: int  # reads that returned data (the reader's only extra work per read)

    # -- interest --
    _subs: Dict[int, Subscription]
    _sids: Iterator[int]

    # -- request --
    _nuid: Nuid
    _resp_sub: Optional[Subscription]
    _resp_prefix: str  # "<inbox>." once the inbox subscription exists, else ""
    _resp_map: Dict[str, Any]  # reply token -> its slot (a _Waiter, or anything with set())
    _resp_tokens: Iterator[int]

    # -- callbacks --
    _callbacks: Dict[str, Any]  # event name -> the user's callback or None
    _events: Optional[queue_mod.SimpleQueue[Any]]  # (callback, error) items; None stops the thread
    _events_thread: Optional[threading.Thread]

    # -- shutdown --
    _closing: threading.Event  # set once, when closing starts; every thread loop checks it
    # callables(deadline) -> (unconfirmed count, what) run at interpreter exit (JetStream)
    _exit_hooks: List[Callable[[float], Tuple[int, str]]]

    if TYPE_CHECKING:  # pragma: no cover
        # The methods one mixin calls on another, by owner. Each is defined once, in its mixin
        # (mypy checks that definition against the signature here); none exists at run time.

        # connection
        def _init_runtime_state(self) -> None: ...
        @property
        def number(self) -> int: ...
        def flush(self, timeout: Optional[float] = ...) -> None: ...
        def close(self, timeout: Optional[float] = ...) -> None: ...
        def new_inbox(self) -> str: ...
        def subscribe_internal(self, subject: str, handler: MessageHandler, queue: Optional[str] = None) -> Subscription: ...

        # status
        def _set_status(self, new: ConnectionStatus) -> ConnectionStatus: ...
        def _check_usable(self) -> None: ...

        # fork
        def _forked(self) -> bool: ...
        def _check_fork(self) -> None: ...
        def _handle_fork(self) -> None: ...

        # dial
        def _server_name(self) -> str: ...
        def _rotate(self) -> None: ...
        def _next_server(self) -> str: ...
        def _attempt_next(self) -> None: ...
        def _absorb_info(self, info: Info, *, initial: bool = False) -> None: ...

        # outbox
        def _kick_flusher(self) -> None: ...
        def _append(self, frame: bytes) -> None: ...
        def _queue_frame(self, frame: bytes, kick: bool = True, deadline: Optional[float] = None) -> None: ...
        def _write_pending(self, deadline: Optional[float] = None) -> bool: ...
        def _on_pong(self) -> None: ...
        def _fail_pongs(self, error: BaseException) -> None: ...
        def _encode(self, subject: str, payload: bytes, reply: Optional[str], headers: HeadersLike) -> bytes: ...
        def _write_state(self) -> str: ...

        # interest
        def _subscribe(
            self, subject: str, queue: Optional[str], callback: Optional[MessageHandler],
            internal: Optional[MessageHandler], max_msgs: int, pending_msgs_limit: int, pending_bytes_limit: int,
        ) -> Subscription: ...
        def _unsubscribe(self, sub: Subscription, max_msgs: int = 0) -> None: ...
        def _remove_subscription(self, sid: int) -> None: ...

        # callbacks
        def _emit(self, name: str, error: Optional[BaseException] = None) -> None: ...
        def _report_error(self, error: BaseException) -> None: ...
        def _run_off_reader(self, fn: Callable[[], None]) -> None: ...

        # shutdown
        def _close_from_reader(self, error: Optional[BaseException]) -> None: ...
