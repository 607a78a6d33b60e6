"""SIGINT and SIGTERM for the commands: the first one unwinds like Ctrl-C, so every ``finally``
runs (threads stopped, connections closed, a local broker stopped); the command then exits with
128 + the signal number (130, 143).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Dict, Iterator, List

__all__ = ["Interrupted", "interruptible", "exit_code"]


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: unwinds like Ctrl-C, so every ``finally`` runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def interruptible(command: str, caught: List[int], teardown: str = "stopping") -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (on the main thread);
    the signals caught are appended to ``caught``. Leaving the block restores the handlers,
    so catch the ``KeyboardInterrupt`` outside it: the teardown is over by then.

    A second signal during the teardown is only reported (on fd 2, no ``print``: the main
    thread may be inside one); a third one raises again, cutting the teardown short. A shell's
    background job that ignores SIGINT stays deaf to it.
    """

    def on_signal(signum: int, frame: Any) -> None:
        caught.append(signum)
        if len(caught) == 2:
            with contextlib.suppress(OSError):
                os.write(2, f"memphis-sync {command}: {teardown}; signal once more to abandon the teardown\n".encode())
            return
        raise Interrupted(signum)

    previous: Dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_code(caught: List[int]) -> int:
    """The exit code of a command ended by a signal (Ctrl-C when none was caught)."""
    return 128 + (caught[0] if caught else int(signal.SIGINT))
