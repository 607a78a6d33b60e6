"""The outbound side of a connection: the frame list, the flusher thread, the PONG FIFO and the
liveness check.

``memphis-sync-flusher-<n>`` writes what publishers queued and runs the liveness check (client
PINGs). Publishing threads append complete frames to a list (an atomic operation) and wake the
flusher once per batch, so many small publishes become few socket writes; a publisher that
finds more than ``WRITE_HIGH_WATER`` bytes queued writes them itself (back-pressure), and beyond
``outbound_buffer_size`` it waits for the socket at most ``max_block`` seconds, then raises
:class:`~memphis_sync.errors.MaxBlockTimeout` without queueing. Calls that wait for an answer
(``request``, ``flush``) write inline to save the flusher's wake-up latency.

* ``_send_lock`` serializes socket writes: every byte string written is a sequence of whole
  frames, so frames never interleave. Every wait for it, and every write under it, is bounded
  by the waiting caller's deadline (the stream keeps unsent bytes in order for the next
  writer, see ``transport``), so no caller waits behind another thread's stalled write for
  longer than its own timeout. The liveness check never takes it: it queues its PING and
  counts, so a stalled link is found within ``ping_interval * (max_pings_outstanding + 1)``.
* ``_out_lock`` makes "take the queued frames" atomic with the PING positions (publishers never
  take it: appending a frame is one atomic list operation).

Every PING we queue gets an entry in ``_pongs`` at its exact position in the outbound stream
(``_taken`` counts the frames writers ever took), so each PONG the reader sees goes to the
right ``flush()`` waiter, and after a disconnect exactly the PINGs that died with the socket
are failed. Publishes become frames here too (``_encode`` validates and raises before anything
is queued); ``publish``'s fast path does the same inline for a subject seen before.

:class:`_Outbox` (a mixin of :class:`~memphis_sync.nats.connection.Connection`) owns ``_out``,
``_out_bytes``, ``_out_lock``, ``_send_lock``, ``_taken``, ``_flush_kicked``, ``_kick``,
``_pongs``, ``_pings_out``, ``_liveness_reads``, ``_liveness_at`` and ``_flusher``. It reads the
options, ``_status``, ``_fast``, ``_stream``, ``_current``, ``_closing`` and the reader's
``_read_count``, and sets ``last_error``.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Optional

from .. import _defaults
from .._timeouts import describe, left
from ..errors import (
    ConnectionClosedError,
    ForkedConnectionError,
    MaxBlockTimeout,
    NetworkError,
    OutboundBufferFullError,
    PayloadTooLargeError,
    StaleConnectionError,
)
from ._core import _ConnectionCore
from .fork import _fork_generation
from .protocol import PING, encode_hpub, encode_pub
from .protocol.headers import HeadersLike
from .states import CLOSED, CONNECTED, DRAINING
from .transport import WRITE_DEADLINE

if TYPE_CHECKING:  # pragma: no cover
    from ._waiter import _Waiter

__all__ = ["HeadersLike"]

logger = logging.getLogger("memphis_sync.connection")  # the name users configure (kept from the flat layout)

_WRITE_HIGH_WATER = _defaults.WRITE_HIGH_WATER

#: What every publish takes as headers.


class _Outbox(_ConnectionCore):
    """Queue frames, write them (flusher thread or the calling thread), match PINGs to PONGs."""

    def _init_outbox_state(self) -> None:
        self._send_lock = threading.Lock()
        # Outbound frames. ``list.append`` of a whole frame is one atomic C call under the GIL,
        # so publishers need no lock and frames never interleave; a writer takes a prefix
        # (``out[:n]``, ``del out[:n]``) under ``_out_lock`` while publishers keep appending at
        # the end, then writes ``b"".join(prefix)``. (Measured faster than a bytearray buffer
        # or sendmsg() scatter-gather; see docs/performance.rst.)
        self._out = []
        self._out_bytes = 0  # approximate while connected (unlocked +=); exact while disconnected
        self._out_lock = threading.Lock()
        self._taken = 0  # frames ever taken from _out by writers (positions of queued PINGs)
        self._flush_kicked = False
        self._kick = threading.Event()
        # one entry per PING we queued: (its position in the outbound stream, waiter or None)
        self._pongs = collections.deque()
        self._pings_out = 0
        self._liveness_reads = 0  # the reader's _read_count at the last liveness check
        self._liveness_at = 0.0  # time of the last liveness check
        self._flusher = None

    def _kick_flusher(self) -> None:
        if not self._flush_kicked:
            self._flush_kicked = True
            self._kick.set()

    def _append(self, frame: bytes) -> None:
        self._out.append(frame)

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

    def _queue_ping(self, waiter: Optional[_Waiter]) -> None:
        """Queue a PING and its FIFO entry at its exact stream position (``_state_lock`` held)."""
        with self._out_lock:
            self._pongs.append((self._taken + len(self._out), waiter))
            self._out.append(PING)

    def _forget_pong(self, waiter: "_Waiter") -> None:
        """A ``flush()`` gave up on ``waiter``: keep the FIFO aligned (the PONG may still come,
        and must go to nobody); ``_state_lock`` held."""
        for i, (pos, w) in enumerate(self._pongs):
            if w is waiter:
                self._pongs[i] = (pos, None)
                break

    def _on_pong(self) -> None:
        with self._state_lock:
            self._pings_out = 0
            waiter = self._pongs.popleft()[1] if self._pongs else None
        if waiter is not None:
            waiter.set(None)

    def _fail_pongs(self, error: BaseException) -> None:
        while self._pongs:
            waiter = self._pongs.popleft()[1]
            if waiter is not None:
                waiter.set(None, error)
        self._pings_out = 0

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
                # the kick is spent: a flag left set (woken while disconnected, where nothing
                # is written) would swallow every later kick and stall writes after a
                # reconnect until the next liveness PING; `work` is re-read at the loop top
                self._flush_kicked = False
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

    # -- making frames; the link's state for timeout messages -------------------------------

    def _encode(self, subject: str, payload: bytes, reply: Optional[str], headers: HeadersLike) -> bytes:
        """Validate and encode one PUB/HPUB frame (raises before anything is queued)."""
        if headers:
            frame = encode_hpub(subject, payload, headers, reply)
            # the frame is longer than headers+payload, so only long frames need the exact size
            if len(frame) > self._max_payload and self._hpub_size(frame) > self._max_payload:
                raise PayloadTooLargeError(self._hpub_size(frame), self._max_payload)
            return frame
        frame = encode_pub(subject, payload, reply)  # validates the payload's type first
        if len(payload) > self._max_payload:
            raise PayloadTooLargeError(len(payload), self._max_payload)
        return frame

    @staticmethod
    def _hpub_size(frame: bytes) -> int:
        line = frame[: frame.index(b"\r\n")]
        return int(line.rsplit(None, 1)[1])

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
