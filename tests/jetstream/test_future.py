"""LazyFuture behaves like concurrent.futures.Future whether or not anyone waits."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from memphis_sync.jetstream._future import LazyFuture


def test_resolved_before_anyone_looks():
    f = LazyFuture()
    f.set_result(42)
    assert f.done() and f.result(timeout=0) == 42 and f.exception(timeout=0) is None
    g = LazyFuture()
    g.set_exception(ValueError("boom"))
    with pytest.raises(ValueError):
        g.result(timeout=0)


def test_waiter_is_woken_by_a_later_result():
    f = LazyFuture()
    got = []
    t = threading.Thread(target=lambda: got.append(f.result(timeout=5)))
    t.start()
    time.sleep(0.05)
    f.set_result("late")
    t.join(5)
    assert got == ["late"]


def test_timeout_and_callbacks_and_module_helpers():
    f = LazyFuture()
    with pytest.raises(concurrent.futures.TimeoutError):
        f.result(timeout=0.01)
    seen = []
    f.add_done_callback(lambda fut: seen.append(fut.result()))
    f.set_result(1)
    assert seen == [1]
    h = LazyFuture()
    h.add_done_callback(lambda fut: seen.append("h"))  # registered before any condition exists
    h.set_result(2)
    assert seen == [1, "h"]
    futures = [LazyFuture() for _ in range(3)]
    threading.Timer(0.05, lambda: [x.set_result(i) for i, x in enumerate(futures)]).start()
    done, not_done = concurrent.futures.wait(futures, timeout=5)
    assert len(done) == 3 and not not_done
    assert sorted(x.result() for x in concurrent.futures.as_completed(futures)) == [0, 1, 2]
    assert isinstance(f, concurrent.futures.Future)


def test_racing_waiters_and_resolvers_never_lose_a_wakeup():
    for _ in range(300):
        f = LazyFuture()
        out = []
        t = threading.Thread(target=lambda: out.append(f.result(timeout=5)))
        t.start()
        f.set_result(7)
        t.join(5)
        assert out == [7]
