"""Fixtures of the local-broker tests: a plain NATS connection (as the root user) to the
session broker, and JetStream on it."""

from __future__ import annotations

from typing import Iterator

import pytest

from memphis_sync.broker.local import LocalBroker
from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import Connection, connect


@pytest.fixture
def conn(memphis_broker: LocalBroker) -> Iterator[Connection]:
    c = connect(memphis_broker.url, token=memphis_broker.connection_token, name="test::root")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def js(conn: Connection) -> JetStream:
    return JetStream(conn)
