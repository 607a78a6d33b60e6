"""Code as a user writes it, checked with ``mypy --strict`` by tests/test_typing.py: the types
must say what the calls return, with no cast and no ``# type: ignore``."""

from __future__ import annotations

from concurrent.futures import Future
from typing import List

import memphis_sync
from memphis_sync import Headers, Message, Producer
from memphis_sync.jetstream.types import PubAck
from memphis_sync.memphis.message import MessageBatch


def produce_and_consume(memphis: memphis_sync.Memphis) -> List[int]:
    producer: Producer = memphis.producer("orders", "web")
    ack: PubAck = producer.produce(b"order", headers={"trace": "t1"}, msg_id="o-1")
    seqs = [ack.seq]
    future: "Future[PubAck]" = producer.produce({"id": 2}, nonblocking=True)
    seqs.append(future.result(timeout=5).seq)
    either = producer.produce("x", nonblocking=bool(seqs))  # a bool known only at run time
    if isinstance(either, PubAck):
        seqs.append(either.seq)
    one_shot: PubAck = memphis.produce("orders", "web", b"again")
    seqs.append(one_shot.seq)
    headers = Headers()
    headers.add("k", "v")
    producer.produce(b"with headers", headers=headers)
    consumer = memphis.consumer("orders", "billing", consumer_group="billing")
    batch: MessageBatch = consumer.fetch()
    for msg in batch:
        checked: Message = msg
        data: bytearray = checked.get_data()
        seq = checked.get_sequence_number()
        if seq is not None and data:
            seqs.append(seq)
        checked.ack()
    return seqs


def main() -> None:
    with memphis_sync.connect("localhost", "root", connection_token="memphis") as memphis:
        produce_and_consume(memphis)
    with memphis_sync.from_url("memphis://root:memphis@localhost:6666") as memphis:
        produce_and_consume(memphis)
