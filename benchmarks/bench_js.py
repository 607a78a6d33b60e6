#!/usr/bin/env python3
"""JetStream benchmark: memphis-sync beside nats-py and the raw-socket scripts, in one run.

    python benchmarks/bench_js.py [--repeats 3] [--sizes 128,1024,65536]

One nats-server with JetStream (memory storage keeps the disk out of the comparison), then, per
payload size and repeated ``--repeats`` times, interleaved, each in its own process:

* publish waiting for each ack (window 1): ``raw_js_pub.py --window 1``, ``JetStream.publish``,
  nats-py ``await js.publish``;
* pipelined publish (window 1024): ``raw_js_pub.py --window 1024``,
  ``JetStream.publish_async`` with ``max_pending=1024`` then ``publish_async_complete``,
  nats-py ``publish_async`` (its fastest async publish);
* fetch batch 100 with an ack per message: ``raw_fetch.py``, ``PullSubscription.fetch`` +
  ``ack``, nats-py ``pull_subscribe().fetch(100)`` + ``await msg.ack()``;
* memory: RSS of memphis-sync while pipelining 1M small messages (start vs end).

Prints medians and ratios. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(ROOT, "..", "shared", "bench")


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- children ---------------------------------------------------------------------------------


def ours_pub(port, stream, size, count, window):
    from memphis_sync.jetstream import JetStream
    from memphis_sync.nats.connection import connect

    conn = connect(f"nats://127.0.0.1:{port}")
    js = JetStream(conn, max_pending=max(1, window))
    payload = b"x" * size
    subject = f"{stream}.x"
    js.publish(subject, payload)
    t0 = time.perf_counter()
    if window == 1:
        for _ in range(count):
            js.publish(subject, payload)
    else:
        publish = js.publish_async
        for _ in range(count):
            publish(subject, payload)
        js.publish_async_complete(timeout=120)
    secs = time.perf_counter() - t0
    conn.close()
    return {"msgs": count, "secs": secs, "msgs_s": count / secs}


def ours_fetch(port, stream, size, count, batch):
    from memphis_sync.jetstream import JetStream
    from memphis_sync.nats.connection import connect

    conn = connect(f"nats://127.0.0.1:{port}")
    js = JetStream(conn)
    sub = js.pull_subscribe(stream, "c1")
    got = 0
    t0 = time.perf_counter()
    while got < count:
        msgs = sub.fetch(min(batch, count - got), timeout=5)
        if not msgs:
            break
        for m in msgs:
            m.ack()
        got += len(msgs)
    conn.flush()
    secs = time.perf_counter() - t0
    conn.close()
    return {"msgs": got, "secs": secs, "msgs_s": got / secs}


def ours_memory(port, stream, size, count, window):
    from memphis_sync.jetstream import JetStream
    from memphis_sync.nats.connection import connect

    conn = connect(f"nats://127.0.0.1:{port}")
    js = JetStream(conn, max_pending=window)
    payload = b"x" * size
    subject = f"{stream}.x"
    for _ in range(10_000):
        js.publish_async(subject, payload)
    js.publish_async_complete(timeout=60)
    start = _rss_kb()
    samples = []
    t0 = time.perf_counter()
    for i in range(count):
        js.publish_async(subject, payload)
        if i % 100_000 == 0:
            samples.append(_rss_kb())
    js.publish_async_complete(timeout=120)
    secs = time.perf_counter() - t0
    end = _rss_kb()
    conn.close()
    return {"msgs": count, "secs": secs, "msgs_s": count / secs, "rss_start_kb": start, "rss_end_kb": end, "rss_samples_kb": samples}


def natspy_pub(port, stream, size, count, window):
    import asyncio

    import nats

    async def run():
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        js = nc.jetstream(publish_async_max_pending=max(1, window))
        payload = b"x" * size
        subject = f"{stream}.x"
        await js.publish(subject, payload)
        t0 = time.perf_counter()
        if window == 1:
            for _ in range(count):
                await js.publish(subject, payload)
        else:
            for _ in range(count):
                await js.publish_async(subject, payload)
            await js.publish_async_completed()
        secs = time.perf_counter() - t0
        await nc.close()
        return {"msgs": count, "secs": secs, "msgs_s": count / secs}

    return asyncio.run(run())


def natspy_fetch(port, stream, size, count, batch):
    import asyncio

    import nats

    async def run():
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        js = nc.jetstream()
        sub = await js.pull_subscribe_bind("c1", stream=stream)
        got = 0
        t0 = time.perf_counter()
        while got < count:
            try:
                msgs = await sub.fetch(min(batch, count - got), timeout=5)
            except nats.errors.TimeoutError:
                break
            for m in msgs:
                await m.ack()
            got += len(msgs)
        await nc.flush()
        secs = time.perf_counter() - t0
        await nc.close()
        return {"msgs": got, "secs": secs, "msgs_s": got / secs}

    return asyncio.run(run())


CHILDREN = {
    "ours-pub": ours_pub, "ours-fetch": ours_fetch, "ours-memory": ours_memory,
    "nats-py-pub": natspy_pub, "nats-py-fetch": natspy_fetch,
}


# -- orchestration ----------------------------------------------------------------------------


def _run(cmd):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def child(name, port, stream, size, count, extra):
    return _run([sys.executable, __file__, "--child", name, str(port), stream, str(size), str(count), str(extra)])


def raw_pub(port, stream, size, count, window):
    return _run([sys.executable, os.path.join(SHARED, "raw_js_pub.py"), "--port", str(port), "--size", str(size),
                 "--count", str(count), "--window", str(window), "--subject", f"{stream}.x", "--max-secs", "60"])


def raw_fetch(port, stream, size, count, batch):
    return _run([sys.executable, os.path.join(SHARED, "raw_fetch.py"), "--port", str(port), "--stream", stream,
                 "--consumer", "c1", "--batch", str(batch), "--count", str(count), "--max-secs", "60"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="128,1024,65536")
    ap.add_argument("--sync-count", type=int, default=5_000)
    ap.add_argument("--async-count", type=int, default=100_000)
    ap.add_argument("--fetch-count", type=int, default=50_000)
    ap.add_argument("--memory-count", type=int, default=1_000_000)
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        name, port, stream, size, count, extra = args.child
        print(json.dumps(CHILDREN[name](int(port), stream, int(size), int(count), int(extra))))
        return

    sys.path.insert(0, ROOT)
    from bench_streams import filled_stream, fresh_stream

    from memphis_sync.broker import NatsServer
    from memphis_sync.jetstream import JetStream
    from memphis_sync.nats.connection import connect

    results = {}
    with NatsServer(port=0, extra_config={"jetstream": {"max_memory_store": 8 * 1024**3}}) as server:
        admin = connect(server.url)
        js = JetStream(admin, timeout=30)

        sizes = [int(s) for s in args.sizes.split(",")]
        for rep in range(args.repeats):
            for size in sizes:
                big = size >= 65536
                sync_n = args.sync_count // (5 if big else 1)
                async_n = args.async_count // (20 if big else 1)
                fetch_n = args.fetch_count // (10 if big else 1)
                for impl in ("raw", "ours", "nats-py"):
                    fresh_stream(js, "BP")
                    r = raw_pub(server.port, "BP", size, sync_n, 1) if impl == "raw" else child(f"{impl}-pub", server.port, "BP", size, sync_n, 1)
                    results.setdefault(("publish w=1", size, impl), []).append(r["msgs_s"])
                    fresh_stream(js, "BP")
                    r = raw_pub(server.port, "BP", size, async_n, 1024) if impl == "raw" else child(f"{impl}-pub", server.port, "BP", size, async_n, 1024)
                    results.setdefault(("publish w=1024", size, impl), []).append(r["msgs_s"])
                    filled_stream(js, "BF", size, fetch_n)
                    r = raw_fetch(server.port, "BF", size, fetch_n, 100) if impl == "raw" else child(f"{impl}-fetch", server.port, "BF", size, fetch_n, 100)
                    results.setdefault(("fetch b=100 +ack", size, impl), []).append(r["msgs_s"])
                    js.delete_stream("BF")  # free the server's memory before the next measurement
        fresh_stream(js, "BM")
        mem = child("ours-memory", server.port, "BM", 128, args.memory_count, 1024)
        admin.close()

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, memory storage, medians of {args.repeats} runs")
    print(f"{'test':<30}{'memphis-sync':>14}{'nats-py':>12}{'raw':>12}{'vs nats-py':>12}{'vs raw':>9}")
    for (mode, size, impl), value in sorted(med.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if impl != "ours":
            continue
        other = med[(mode, size, "nats-py")]
        raw = med[(mode, size, "raw")]
        print(f"{mode + f' {size} B':<30}{value:14,.0f}{other:12,.0f}{raw:12,.0f}{value / other:11.2f}x {value / raw:8.0%}")
    print(f"memory: {mem['msgs']:,} pipelined publishes of 128 B at {mem['msgs_s']:,.0f} msg/s; "
          f"RSS {mem['rss_start_kb'] / 1024:.1f} MiB at start, {mem['rss_end_kb'] / 1024:.1f} MiB at end "
          f"(samples every 100k: {', '.join(f'{s / 1024:.1f}' for s in mem['rss_samples_kb'])} MiB)")


if __name__ == "__main__":
    main()
