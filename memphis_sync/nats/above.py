"""The connection's small internal API for the layers above (JetStream, the Memphis API, the
local broker): what they may use instead of private members (``tests/test_layering.py`` checks
that nothing above ``nats/`` touches a ``conn._x``). Not part of the user API (kept out of the
user docs). ``request_async``, called once per pipelined publish, stays in ``connection.py``.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from .. import _defaults
from ._core import _ConnectionCore
from .protocol.headers import HeadersLike
from .subscription import MessageHandler, Subscription

__all__: List[str] = []


class _LayersAbove(_ConnectionCore):
    """Mixin of :class:`~memphis_sync.nats.connection.Connection`; owns no attributes."""

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
