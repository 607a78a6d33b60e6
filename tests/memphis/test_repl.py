"""What a REPL or a notebook shows: reprs with public state only, HTML reprs, ``with`` blocks for
producers and consumers."""

from __future__ import annotations

import html.parser
import uuid
from typing import List

import pytest

import memphis_sync
from memphis_sync import MemphisError
from memphis_sync.memphis.message import MessageBatch

pytestmark = pytest.mark.integration

TOKEN = "S3CRET-TOKEN"


class _Tags(html.parser.HTMLParser):
    """Collects the text and checks that every opened tag is closed, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: List[str] = []
        self.text: List[str] = []

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"</{tag}> closes nothing"

    def handle_data(self, data):
        self.text.append(data)


def _html_text(markup: str) -> str:
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    assert parser.stack == [], f"unclosed tags: {parser.stack}"
    return " ".join(parser.text)


@pytest.fixture
def secret_broker(memphis_broker_factory):
    return memphis_broker_factory(connection_token=TOKEN)


def test_reprs_show_public_state_and_no_secret(secret_broker):
    name = f"repl-{uuid.uuid4().hex[:8]}"
    with memphis_sync.connect(**secret_broker.connect_kwargs()) as memphis:
        station = memphis.station(name)
        producer = memphis.producer(name, "writer")
        future = producer.produce(b"x", nonblocking=True, headers={"note": "<b>bold</b>"})
        assert repr(future).startswith("<Future of a PubAck ")
        future.result(timeout=10)
        assert repr(future).startswith("<Future of a PubAck done: PubAck(") and "_AckSlot" not in repr(future)
        consumer = memphis.consumer(name, "reader")
        batch = consumer.fetch()
        assert isinstance(batch, MessageBatch) and isinstance(batch, list) and len(batch) == 1
        shown = {
            "memphis": (repr(memphis), _html_text(memphis._repr_html_())),
            "connection": (repr(memphis.connection), _html_text(memphis.connection._repr_html_())),
            "station": (repr(station), _html_text(station._repr_html_())),
            "producer": (repr(producer), _html_text(producer._repr_html_())),
            "consumer": (repr(consumer), _html_text(consumer._repr_html_())),
            "batch": (repr(batch), _html_text(batch._repr_html_())),
        }
        assert shown["producer"][0] == f"<Producer 'writer' station={name!r} pending=0>"
        assert name in shown["consumer"][1] and "reader" in shown["consumer"][1]
        assert "<b>bold</b>" in shown["batch"][1]  # the header value is text, escaped in the markup
        assert "<b>" not in batch._repr_html_()
        assert "connected" in shown["memphis"][1] and "CONNECTED" in shown["connection"][1]
        for what, (text, markup) in shown.items():
            assert TOKEN not in text and TOKEN not in markup, what
            assert "_requester" not in text and "Requester" not in text and "_js" not in text, what
        batch[0].ack()
        consumer.destroy()
        producer.destroy()
        assert repr(producer).endswith("destroyed>")
        station.destroy()


def test_producer_and_consumer_as_context_managers(memphis_broker):
    name = f"with-{uuid.uuid4().hex[:8]}"
    with memphis_sync.connect(**memphis_broker.connect_kwargs()) as memphis:
        with memphis.producer(name, "p") as producer:
            futures = [producer.produce(f"m{i}", nonblocking=True) for i in range(20)]
        assert all(f.done() and f.exception() is None for f in futures)  # leaving waited for every ack
        with pytest.raises(MemphisError, match="destroyed"):
            producer.produce(b"late")
        got: List[str] = []
        with memphis.consumer(name, "c", batch_size=50) as consumer:
            consumer.consume(lambda msgs, error, context: [got.append(m.get_data().decode()) or m.ack() for m in msgs])
            assert memphis_sync.testing.wait_until(lambda: len(got) == 20, timeout=10)
        assert not consumer.is_consuming
        with pytest.raises(MemphisError, match="destroyed"):
            consumer.fetch()
        assert sorted(got) == sorted(f"m{i}" for i in range(20))
        memphis.station(name).destroy()
