"""The reader thread: the read loop, and what happens when the socket fails (reconnecting).

``memphis-sync-reader-<n>`` owns the read side of the socket and the sans-IO parser (the
parser is single-owner). It routes each message to its subscription (which only enqueues it,
or runs a non-blocking internal handler such as the request mux), answers server PINGs,
matches PONGs to ``flush()`` waiters and handles INFO and -ERR. When the socket fails it runs
the reconnect loop itself (driven by tenacity, see ``reconnect``), so exactly one thread ever
replaces the socket. After a reconnect every SUB is written before any buffered publish: the
SUBs go out under ``_send_lock`` while the status is still RECONNECTING (publishes wait in the
outbound list), and only then does the status become CONNECTED. That is the one place I/O
happens under ``_state_lock``: no publish may slip between the new CONNECT and the re-sent SUBs.

:class:`_Reader` (a mixin of :class:`~memphis_sync.nats.connection.Connection`) owns
``_reader`` and ``_read_count``; it replaces the stream through the dialer, and on giving up
closes the connection from this thread.
"""

from __future__ import annotations

import logging
import time
from typing import List

from .. import _defaults
from ..errors import (
    ConnectionClosedError,
    ConnectTimeout,
    NetworkError,
    ProtocolError,
    ReadError,
    StaleConnectionError,
    error_from_server,
)
from ._core import _ConnectionCore
from .protocol import EOF, PONG, Err, Info, Msg, Ping, Pong, encode_sub, encode_unsub
from .reconnect import build_retrying
from .states import CLOSED, CONNECTED, RECONNECTING

__all__: List[str] = []

logger = logging.getLogger("memphis_sync.connection")  # the name users configure (kept from the flat layout)


class _Reader(_ConnectionCore):
    """Read, parse and route; on a failed socket, reconnect or close."""

    def _init_reader_state(self) -> None:
        self._reader = None
        self._read_count = 0

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

    def _on_err(self, event: Err) -> None:
        exc = error_from_server(event.message)
        logger.warning("server error: %s", event.message)
        self.last_error = exc
        # a permission violation leaves the connection up; after any other -ERR the server
        # closes it and the next read fails: either way the error goes to on_error once
        self._report_error(exc)

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
            for attempt in build_retrying(self.reconnect_policy, self._closing, what="reconnect", next_server=self._next_server):
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
