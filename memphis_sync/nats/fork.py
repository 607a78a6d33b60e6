"""Fork detection: a connection inherited by a forked child is closed there, and says why.

The parent's socket is shared with the child; writing to it would corrupt the parent's stream,
and the parent's threads do not exist in the child. An at-fork hook bumps a process-wide fork
generation and drops every live connection at once (the child has one thread, so no lock is
taken), and every entry point compares the generation it was created under before taking any
lock (a lock held by a parent thread at ``fork()`` time stays held forever in the child).

:class:`_ForkGuard` (a mixin of :class:`~memphis_sync.nats.connection.Connection`) owns
``_fork_gen``, ``_pid`` and ``_fork_error``; dropping calls the connection's
``_init_runtime_state`` and sets ``_status`` and ``_fast``.
"""

from __future__ import annotations

import os
import weakref
from typing import List

from ..errors import ForkedConnectionError
from ._core import _ConnectionCore
from .states import CLOSED

# Bumped in every forked child; a connection compares it with the value it was created under.
_fork_generation: List[int] = [0]
# Live connections, so a forked child can switch their publish fast path off at once (and the
# interpreter-exit hook can find them).
_live_connections: "weakref.WeakSet[_ForkGuard]" = weakref.WeakSet()


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


class _ForkGuard(_ConnectionCore):
    """Refuse to work in a forked child, with an error that says what to do instead."""

    def _init_fork_state(self) -> None:
        self._fork_gen = _fork_generation[0]
        self._pid = os.getpid()
        self._fork_error = ""

    def _forked(self) -> bool:
        """True in a forked child: the fork generation moved on since this state was made."""
        return self._fork_gen != _fork_generation[0]

    def _check_fork(self) -> None:
        # before taking any lock: a lock held by a parent thread at fork() time stays held forever
        if _fork_generation[0] != self._fork_gen or os.getpid() != self._pid:
            self._handle_fork()

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
