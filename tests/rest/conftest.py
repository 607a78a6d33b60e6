"""Fixtures of the HTTP tests: both sides of HTTP are here, the local broker's REST ingress
(``memphis_sync.broker.rest``) and the REST client (``memphis_sync.rest``), since each is tested
through the other and through third-party peers (curl, raw HTTP, the NATS Memphis API).

``rest_broker``: a token-mode broker with its REST ingress on a free port, for the module; the
ingress's connection of ``root`` is opened in the fixture, so that the per-test leak check does
not count it. ``memphis``: a NATS Memphis connection to it, for one test.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

import memphis_sync
from memphis_sync.broker.local import LocalBroker
from memphis_sync.rest import RestClient


@pytest.fixture(scope="module")
def rest_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = LocalBroker(port=0, rest_port=0, store_dir=tmp_path_factory.mktemp("rest-broker"))
    try:
        broker.start()
        with RestClient(broker.rest_url, "root", connection_token=broker.connection_token) as client:
            client.produce("warmup", "opens the ingress's connection of root")
        yield broker
    finally:
        broker.close()


@pytest.fixture
def memphis(rest_broker: LocalBroker) -> Iterator[memphis_sync.Memphis]:
    conn = memphis_sync.connect(**rest_broker.connect_kwargs())
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def station() -> str:
    """A station name of its own for each test."""
    return f"rest-{uuid.uuid4().hex[:10]}"
