"""The reply mux: one wildcard inbox subscription carries every request's reply.

The first request subscribes (internally: the handler runs on the reader thread and never
blocks) to ``<inbox_prefix>.<nuid>.*``; each request takes the next token of that inbox as its
reply subject and a slot in ``_resp_map``. The reader thread pops the slot of each reply and
fills it: a :class:`_Waiter` that a blocking ``request()`` waits on (``flush()`` waits on one
too, filled from the PONG FIFO), or any object with ``set(msg, error=None)`` (JetStream's
pipelined publishes). A request given up on
removes its slot, so a late reply goes to nobody.

:class:`_Replies` (a mixin of :class:`~memphis_sync.nats.connection.Connection`) owns
``_nuid``, ``_resp_sub``, ``_resp_prefix``, ``_resp_map`` and ``_resp_tokens``; the public
``request``, ``request_async`` and ``drop_reply`` are on the connection and use them.
"""

from __future__ import annotations

import itertools
from typing import List, Optional

from .._timeouts import describe
from ..errors import NoRespondersError, PayloadTooLargeError, RequestTimeout
from ._core import _ConnectionCore
from ._nuid import Nuid
from ._waiter import _Waiter
from .protocol import Msg, encode_headers
from .protocol.encoder import _PUB_PREFIXES
from .protocol.headers import HeadersLike

__all__: List[str] = []


class _Replies(_ConnectionCore):
    """The inbox subscription and the reply slots of requests in flight."""

    def _init_reply_state(self) -> None:
        self._nuid = Nuid()
        self._resp_sub = None
        self._resp_prefix = ""
        self._resp_map = {}
        self._resp_tokens = itertools.count(1)

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

    def _request(
        self, subject: str, payload: bytes, deadline: Optional[float], timeout: Optional[float], headers: HeadersLike
    ) -> Msg:
        """``request()``: a reply slot, the publish written inline, the wait for the reply."""
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
