"""A 3-node cluster on loopback: discovery and failover to another node."""

from __future__ import annotations

import time

import pytest

from memphis_sync.errors import MessageTimeout
from memphis_sync.nats.connection import ReconnectPolicy, connect

pytestmark = pytest.mark.integration


def test_discovers_cluster_and_fails_over(nats_cluster):
    first = nats_cluster.nodes[0]
    c = connect(first.url, reconnect=ReconnectPolicy(wait=0.05, jitter=0, max_attempts=-1))
    observer = connect(nats_cluster.nodes[2].url)
    try:
        deadline = time.monotonic() + 5
        while len(c.servers) < 3 and time.monotonic() < deadline:
            c.flush()
            time.sleep(0.05)
        assert len(c.servers) >= 3, c.servers  # learned the others from INFO connect_urls
        sub = c.subscribe("fo")
        c.flush()
        first.stop()
        deadline = time.monotonic() + 10
        while not (c.is_connected() and c.connected_url and str(first.port) not in c.connected_url):
            assert time.monotonic() < deadline, "did not fail over"
            time.sleep(0.02)
        c.flush()
        # the re-sent SUB reaches the observer's node through a route: probe until it has
        deadline = time.monotonic() + 10
        while True:
            observer.publish("fo", b"probe")
            observer.flush()
            try:
                if sub.next_msg(timeout=0.2).payload == b"probe":
                    break
            except MessageTimeout:
                assert time.monotonic() < deadline, "subscription did not resume after failover"
        for i in range(10):
            observer.publish("fo", str(i).encode())
        observer.flush()
        got = [m for m in (sub.next_msg(timeout=5).payload for _ in range(10)) if m != b"probe"]
        while len(got) < 10:
            m = sub.next_msg(timeout=5).payload
            if m != b"probe":
                got.append(m)
        assert got == [str(i).encode() for i in range(10)]
    finally:
        c.close()
        observer.close()
