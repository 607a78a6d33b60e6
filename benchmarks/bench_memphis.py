#!/usr/bin/env python3
"""Memphis benchmark: memphis-sync beside the official async SDK (memphis-py 1.3.1), in one run.

    python benchmarks/bench_memphis.py [--repeats 3] [--size 128]

One local broker (:class:`memphis_sync.broker.LocalBroker`: nats-server plus the control plane),
memory-storage stations, then, repeated ``--repeats`` times, interleaved, each in its own process:

* blocking produce (wait for each ack): ``Producer.produce`` vs memphis-py ``await produce``;
* nonblocking produce: ``produce(nonblocking=True)`` then ``flush()`` vs memphis-py
  ``produce(nonblocking=True)`` then waiting for its background tasks;
* fetch + ack, batch 100: ``Consumer.fetch`` + ``ack`` vs memphis-py ``fetch`` + ``await ack``;
* memphis-sync blocking produce with 1, 2, 4 and 8 producer threads on one connection.

Prints medians (messages per second) and ratios. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


# -- children (one measurement each, printed as JSON) ----------------------------------------


def _ours(kwargs):
    import memphis_sync

    return memphis_sync.connect(**kwargs)


def ours_produce(kwargs, station, size, count, threads=1):
    m = _ours(kwargs)
    payload = b"x" * size
    producers = [m.producer(station, f"bench-{i}") for i in range(threads)]
    producers[0].produce(payload)

    def run(p, n):
        for _ in range(n):
            p.produce(payload)

    per = count // threads
    workers = [threading.Thread(target=run, args=(p, per)) for p in producers]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    m.close()
    return per * threads / elapsed


def ours_nonblocking(kwargs, station, size, count):
    m = _ours(kwargs)
    payload = b"x" * size
    p = m.producer(station, "bench-nb")
    p.produce(payload)
    t0 = time.perf_counter()
    for _ in range(count):
        p.produce(payload, nonblocking=True)
    p.flush()
    elapsed = time.perf_counter() - t0
    m.close()
    return count / elapsed


def ours_fetch(kwargs, station, size, count):
    m = _ours(kwargs)
    c = m.consumer(station, f"bench-c-{uuid.uuid4().hex[:6]}", batch_size=100, batch_max_time_to_wait_ms=1000)
    got = 0
    t0 = time.perf_counter()
    while got < count:
        msgs = c.fetch()
        if not msgs:
            break
        for msg in msgs:
            msg.ack()
        got += len(msgs)
    elapsed = time.perf_counter() - t0
    c.destroy()
    m.close()
    return got / elapsed


def _sdk_run(coro):
    import asyncio
    import warnings

    warnings.simplefilter("ignore")
    return asyncio.run(coro)


async def _sdk(kwargs):
    from memphis import Memphis

    sdk = Memphis()
    await sdk.connect(**kwargs)
    return sdk


def sdk_produce(kwargs, station, size, count):
    async def run():
        sdk = await _sdk(kwargs)
        p = await sdk.producer(station_name=station, producer_name="sdk-bench")
        payload = bytearray(b"x" * size)
        await p.produce(payload)
        t0 = time.perf_counter()
        for _ in range(count):
            await p.produce(payload)
        elapsed = time.perf_counter() - t0
        await sdk.close()
        return count / elapsed

    return _sdk_run(run())


def sdk_nonblocking(kwargs, station, size, count):
    async def run():
        import asyncio

        sdk = await _sdk(kwargs)
        p = await sdk.producer(station_name=station, producer_name="sdk-bench-nb")
        payload = bytearray(b"x" * size)
        await p.produce(payload)
        t0 = time.perf_counter()
        for _ in range(count):
            await p.produce(payload, nonblocking=True)
        while p.background_tasks:
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - t0
        await sdk.close()
        return count / elapsed

    return _sdk_run(run())


def sdk_fetch(kwargs, station, size, count):
    async def run():
        sdk = await _sdk(kwargs)
        c = await sdk.consumer(station_name=station, consumer_name=f"sdk-c-{uuid.uuid4().hex[:6]}", batch_size=100)
        got = 0
        t0 = time.perf_counter()
        while got < count:
            msgs = await c.fetch(batch_size=100)
            if not msgs:
                break
            for msg in msgs:
                await msg.ack()
            got += len(msgs)
        elapsed = time.perf_counter() - t0
        await c.destroy()
        await sdk.close()
        return got / elapsed

    return _sdk_run(run())


CHILDREN = {f.__name__: f for f in (ours_produce, ours_nonblocking, ours_fetch, sdk_produce, sdk_nonblocking, sdk_fetch)}


def child(name, kwargs, station, size, count, extra):
    rate = CHILDREN[name](kwargs, station, size, count, **extra)
    print(json.dumps({"rate": rate}))


# -- parent -----------------------------------------------------------------------------------


def _measure(name, kwargs, station, size, count, **extra):
    cmd = [sys.executable, __file__, "--child", json.dumps([name, kwargs, station, size, count, extra])]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])["rate"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--sync-count", type=int, default=3_000)
    ap.add_argument("--async-count", type=int, default=30_000)
    ap.add_argument("--fetch-count", type=int, default=20_000)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*json.loads(args.child))
        return

    import memphis_sync
    from memphis_sync.broker.local import LocalBroker

    with tempfile.TemporaryDirectory() as store, LocalBroker(store_dir=store, port=0) as broker:
        kwargs = broker.connect_kwargs()
        kwargs["host"] = "127.0.0.1"  # memphis-py sleeps 1 s per connect when the host says "localhost"
        admin = memphis_sync.connect(**kwargs)
        results = {}

        def add(key, rate):
            results.setdefault(key, []).append(rate)

        for r in range(args.repeats):
            station = f"bench-{r}"
            admin.station(station, storage_type=memphis_sync.Storage.MEMORY, retention_value=3600)
            for who in ("ours", "sdk"):
                add(f"{who} produce", _measure(f"{who}_produce", kwargs, station, args.size, args.sync_count))
                add(f"{who} nonblocking", _measure(f"{who}_nonblocking", kwargs, station, args.size, args.async_count))
            # both fetch tests read the same full station with their own consumer groups
            for who in ("ours", "sdk"):
                add(f"{who} fetch+ack", _measure(f"{who}_fetch", kwargs, station, args.size, args.fetch_count))
            for threads in (1, 2, 4, 8):
                add(f"ours produce x{threads}", _measure("ours_produce", kwargs, station, args.size, args.sync_count * threads, threads=threads))
            admin.station(station).destroy()
        admin.close()

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"payload {args.size} B, medians of {args.repeats} (messages/s):")
    for key, value in med.items():
        print(f"  {key:<22} {value:>12,.0f}")
    for what in ("produce", "nonblocking", "fetch+ack"):
        print(f"  ratio {what:<16} {med[f'ours {what}'] / med[f'sdk {what}']:>12.1f}x")


if __name__ == "__main__":
    main()
