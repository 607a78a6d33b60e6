#!/usr/bin/env python3
"""WebSocket benchmark: memphis-sync over NATS over WebSocket beside the same client over TCP, in one run.

    python benchmarks/bench_ws.py [--repeats 3] [--sizes 128,1024,65536]

One nats-server with JetStream (memory storage) and its websocket listener, then, per payload
size and repeated ``--repeats`` times, TCP and WebSocket interleaved, each in its own process:

* publish waiting for each ack (window 1): ``JetStream.publish``;
* pipelined publish (window 1024): ``JetStream.publish_async`` with ``max_pending=1024`` then
  ``publish_async_complete``;
* fetch batch 100 with an ack per message: ``PullSubscription.fetch`` + ``ack``.

Prints medians and the WebSocket/TCP ratio of each. Not a test.
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


# -- children ---------------------------------------------------------------------------------


def pub(url, stream, size, count, window):
    from memphis_sync.jetstream import JetStream
    from memphis_sync.nats.connection import connect

    conn = connect(url)
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


def fetch(url, stream, size, count, batch):
    from memphis_sync.jetstream import JetStream
    from memphis_sync.nats.connection import connect

    conn = connect(url)
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


CHILDREN = {"pub": pub, "fetch": fetch}


# -- orchestration ----------------------------------------------------------------------------


def child(name, url, stream, size, count, extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, __file__, "--child", name, url, stream, str(size), str(count), str(extra)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="128,1024,65536")
    ap.add_argument("--sync-count", type=int, default=5_000)
    ap.add_argument("--async-count", type=int, default=100_000)
    ap.add_argument("--fetch-count", type=int, default=50_000)
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        name, url, stream, size, count, extra = args.child
        print(json.dumps(CHILDREN[name](url, stream, int(size), int(count), int(extra))))
        return

    sys.path.insert(0, ROOT)
    from bench_streams import filled_stream, fresh_stream

    from memphis_sync.broker import NatsServer
    from memphis_sync.jetstream import JetStream
    from memphis_sync.nats.connection import connect

    results = {}
    config = {"jetstream": {"max_memory_store": 8 * 1024**3}}
    with NatsServer(port=0, websocket_port=0, extra_config=config) as server:
        urls = {"tcp": server.url, "websocket": f"ws://127.0.0.1:{server.websocket_port}"}
        admin = connect(server.url)
        js = JetStream(admin, timeout=30)

        sizes = [int(s) for s in args.sizes.split(",")]
        for rep in range(args.repeats):
            for size in sizes:
                big = size >= 65536
                sync_n = args.sync_count // (5 if big else 1)
                async_n = args.async_count // (20 if big else 1)
                fetch_n = args.fetch_count // (10 if big else 1)
                for transport, url in urls.items():
                    fresh_stream(js, "BP")
                    r = child("pub", url, "BP", size, sync_n, 1)
                    results.setdefault(("publish w=1", size, transport), []).append(r["msgs_s"])
                    fresh_stream(js, "BP")
                    r = child("pub", url, "BP", size, async_n, 1024)
                    results.setdefault(("publish w=1024", size, transport), []).append(r["msgs_s"])
                    filled_stream(js, "BF", size, fetch_n)
                    r = child("fetch", url, "BF", size, fetch_n, 100)
                    results.setdefault(("fetch b=100 +ack", size, transport), []).append(r["msgs_s"])
                    js.delete_stream("BF")  # free the server's memory before the next measurement
        admin.close()

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, memory storage, medians of {args.repeats} runs")
    print(f"{'test':<30}{'TCP msg/s':>14}{'WebSocket':>14}{'ws / tcp':>10}")
    for (mode, size, transport), value in sorted(med.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if transport != "tcp":
            continue
        ws = med[(mode, size, "websocket")]
        print(f"{mode + f' {size} B':<30}{value:14,.0f}{ws:14,.0f}{ws / value:9.2f}x")


if __name__ == "__main__":
    main()
