"""pynats2, a third-party synchronous NATS client, as a wire peer."""

from __future__ import annotations

import queue
import warnings

import pytest

from memphis_sync.nats.connection import connect

pytestmark = pytest.mark.integration

with warnings.catch_warnings():
    # pynats2 (2019) imports pkg_resources, which warns on current setuptools; setuptools<81 is
    # in the test extra because newer ones no longer ship pkg_resources (Python 3.12+ venvs
    # have no setuptools at all). A missing peer is an install error, never a silent skip.
    warnings.simplefilter("ignore")
    import pynats2


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
        # pynats2 runs callbacks on a 3-thread pool, so its arrival order is not ours to check
        assert sorted(m.payload for m in got) == sorted(f"msg-{i}".encode() + b"\r\n\x00" for i in range(20))
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
