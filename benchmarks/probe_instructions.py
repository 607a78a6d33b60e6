#!/usr/bin/env python3
"""Instruction-count probe of the two hot paths, for ``valgrind --tool=callgrind`` (its counts
do not depend on what else the machine does, unlike wall-clock benchmarks):

    valgrind --tool=callgrind python benchmarks/probe_instructions.py PORT N pub   # N publishes + flush
    valgrind --tool=callgrind python benchmarks/probe_instructions.py PORT N sub   # N received by a subscription
    valgrind --tool=callgrind python benchmarks/probe_instructions.py PORT N rr    # N request/reply round trips

Run each with two values of N (10,000 and 30,000) and subtract: the difference divided by the
difference of N is the cost per message, without the start-up (imports, connect). Uses the
flat import path, so the same file runs against trees from before the layered layout.
"""

import sys

from memphis_sync.connection import connect  # the flat path: in both old and new trees

port, n, what = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conn = connect(f"nats://127.0.0.1:{port}")
if what == "pub":
    publish = conn.publish
    payload = b"x" * 128
    for _ in range(n):
        publish("bench.pub", payload)
    conn.flush(timeout=600)
elif what == "rr":
    other = connect(f"nats://127.0.0.1:{port}")
    other.subscribe("bench.rr", callback=lambda msg: other.publish(msg.reply, msg.payload))
    other.flush(timeout=60)
    for _ in range(n):
        conn.request("bench.rr", b"z" * 128, timeout=600)
    other.close()
else:
    sub = conn.subscribe("bench.sub")
    conn.flush(timeout=60)
    other = connect(f"nats://127.0.0.1:{port}")
    for _ in range(n):
        other.publish("bench.sub", b"y" * 128)
    other.flush(timeout=600)
    for _ in range(n):
        sub.next_msg(timeout=600)
    other.close()
conn.close()
