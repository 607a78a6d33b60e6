"""Stream set-up shared by bench_js.py and bench_ws.py (run as scripts: this directory is on
sys.path)."""

from __future__ import annotations

from typing import Any


def fresh_stream(js: Any, name: str) -> None:
    """An empty memory stream ``name`` capturing ``<name>.>`` (an older one is deleted)."""
    from memphis_sync.jetstream.types import StreamConfig

    try:
        js.delete_stream(name)
    except Exception:
        pass
    js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"], storage="memory"))


def filled_stream(js: Any, name: str, size: int, count: int) -> None:
    """A fresh stream holding ``count`` messages of ``size`` bytes, with the durable ``c1``."""
    from memphis_sync.jetstream.types import ConsumerConfig

    fresh_stream(js, name)
    payload = b"x" * size
    for _ in range(count):
        js.publish_async(f"{name}.x", payload)
    js.publish_async_complete(timeout=120)
    js.add_consumer(name, ConsumerConfig(durable_name="c1", ack_policy="explicit", max_ack_pending=-1))
