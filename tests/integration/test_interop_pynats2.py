"""pynats2, a third-party synchronous NATS client, as a wire peer."""

from __future__ import annotations

import queue

import pytest

from memphis_sync.connection import connect

pytestmark = pytest.mark.integration

pynats2 = pytest.importorskip("pynats2", reason="pynats2 is a test dependency (pip install -e .[test])")


def test_pynats2_receives_what_we_publish(nats_server):
    received: "queue.Queue[object]" = queue.Queue()
    peer = pynats2.NATSClient(nats_server.url, socket_timeout=2)
    peer.connect()
    try:
        peer.subscribe("interop.out", callback=received.put)
        peer.ping()
        with connect(nats_server.url) as c:
            for i in range(20):
                c.publish("interop.out", f"msg-{i}".encode() + b"\r\n\x00", reply="interop.reply")
            c.flush()
            got = [received.get(timeout=5) for _ in range(20)]
        assert [m.payload for m in got] == [f"msg-{i}".encode() + b"\r\n\x00" for i in range(20)]
        assert all(m.subject == "interop.out" and m.reply == "interop.reply" for m in got)
    finally:
        peer.close()


def test_we_receive_what_pynats2_publishes_and_answer_its_requests(nats_server):
    with connect(nats_server.url) as c:
        sub = c.subscribe("interop.in")
        c.subscribe("interop.svc", callback=lambda m: c.publish(m.reply, m.payload.upper()))
        c.flush()
        peer = pynats2.NATSClient(nats_server.url, socket_timeout=2)
        peer.connect()
        try:
            for i in range(20):
                peer.publish("interop.in", payload=f"p-{i}".encode())
            reply = peer.request("interop.svc", payload=b"shout", timeout=5)
        finally:
            peer.close()
        assert [sub.next_msg(timeout=5).payload for _ in range(20)] == [f"p-{i}".encode() for i in range(20)]
        assert reply.payload == b"SHOUT"
