"""A ``concurrent.futures.Future`` that creates its Condition only when someone waits.

A standard Future builds a ``threading.Condition`` (with an RLock) in ``__init__``: about a
third of the client-side cost of a pipelined JetStream publish. Most publish futures are
resolved before anyone waits on them, so this subclass creates the Condition on first use and
resolves still-unobserved futures without it. Creation and "resolve without a Condition" are
serialized by one module lock, so a waiter either sees the final state or is notified.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures._base import FINISHED, PENDING
from typing import Any, List, Optional

__all__ = ["LazyFuture"]

_CREATE = threading.Lock()


class LazyFuture(Future):  # type: ignore[type-arg]
    """A ``Future`` whose Condition is created lazily (see the module docstring)."""

    # class-level defaults, replaced per instance on first write (cheaper construction)
    _lazy_condition: Optional[threading.Condition] = None
    _state = PENDING
    _result = None
    _exception: Optional[BaseException] = None

    def __repr__(self) -> str:
        state = self._state.lower()
        if self._state == FINISHED:
            state = f"failed: {self._exception!r}" if self._exception is not None else f"done: {self._result!r}"
        return f"<Future of a PubAck {state}>"

    def __init__(self) -> None:  # deliberately not calling Future.__init__
        self._waiters: List[Any] = []
        self._done_callbacks: List[Any] = []

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]  # Future's plain attribute, made lazy
        cond = self._lazy_condition
        if cond is None:
            with _CREATE:
                cond = self._lazy_condition
                if cond is None:
                    cond = self._lazy_condition = threading.Condition()
        return cond

    def _resolve_unobserved(self, result: Any, exception: Optional[BaseException]) -> bool:
        if self._lazy_condition is not None:
            return False
        with _CREATE:
            if self._lazy_condition is not None:
                return False
            if exception is None:
                self._result = result
            else:
                self._exception = exception
            self._state = FINISHED
        self._invoke_callbacks()  # type: ignore[attr-defined]  # CPython's Future has it; typeshed omits it
        return True

    def set_result(self, result: Any) -> None:
        """Resolve with ``result`` (see ``concurrent.futures.Future.set_result``)."""
        if not self._resolve_unobserved(result, None):
            super().set_result(result)

    def set_exception(self, exception: Optional[BaseException]) -> None:
        """Resolve with ``exception`` (see ``concurrent.futures.Future.set_exception``)."""
        if not self._resolve_unobserved(None, exception):
            super().set_exception(exception)
