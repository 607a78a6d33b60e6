"""Every default number and string of memphis-sync, each with its precedent or reason.

The NATS layer (connection, JetStream) measures time in seconds (floats), like the stdlib,
nats-py and redis-py. The Memphis layer keeps the official SDK's ``*_ms`` names and converts
once, at its boundary.
"""

from __future__ import annotations

from typing import Final

#: Memphis brokers listen for clients on 6666 (Memphis docs and every official SDK).
MEMPHIS_PORT: Final = 6666
#: Plain NATS servers listen on 4222.
NATS_PORT: Final = 4222
#: Memphis brokers serve NATS over WebSocket on 7770 (memphis ``server/opts.go``; the web UI uses it).
MEMPHIS_WS_PORT: Final = 7770

#: TCP + handshake timeout; nats.go and nats-py both use 2 s.
CONNECT_TIMEOUT: Final = 2.0
#: Reconnect wait between attempts; the Memphis SDK default reconnect_interval_ms is 1500.
RECONNECT_WAIT: Final = 1.5
#: Cap of the exponential reconnect wait.
RECONNECT_WAIT_MAX: Final = 10.0
#: Random extra wait added to each reconnect sleep, spreading a herd of clients (nats.go: 0.1 s).
RECONNECT_JITTER: Final = 0.1
#: Reconnect attempts before giving up; -1 = forever (the Memphis SDK default max_reconnect).
MAX_RECONNECT: Final = -1
#: Publishes buffered while disconnected, in bytes (nats-py 2 MiB, nats.go 8 MiB).
RECONNECT_BUFFER_SIZE: Final = 8 * 1024 * 1024
#: Bytes queued for a connected socket that has not taken them yet (a slow or stalled link)
#: beyond which a publish waits for room; the same size as the reconnect buffer.
OUTBOUND_BUFFER_SIZE: Final = 8 * 1024 * 1024
#: Longest a publish waits for room (outbound buffer, JetStream's ack window) before raising
#: MaxBlockTimeout: kafka-python's ``max_block_ms`` default, 60 s.
MAX_BLOCK: Final = 60.0
#: Longest ``close()`` takes: half for the final flush, the rest for stopping the threads.
CLOSE_TIMEOUT: Final = 5.0

#: Client PING interval; ADR-40, nats.go and nats-py use 2 minutes.
PING_INTERVAL: Final = 120.0
#: Outstanding PINGs after which the connection is stale (ADR-40, nats.go, nats-py: 2).
MAX_PINGS_OUTSTANDING: Final = 2

#: flush() timeout (nats.go and nats-py: 10 s).
FLUSH_TIMEOUT: Final = 10.0
#: Default request() timeout: nats-py uses 0.5 s, nats.go none; 5 s matches JetStream's API wait.
REQUEST_TIMEOUT: Final = 5.0
#: drain() timeout (nats.go and nats-py: 30 s).
DRAIN_TIMEOUT: Final = 30.0
#: Subscription.next_msg() default wait (nats-py: 1 s).
NEXT_MSG_TIMEOUT: Final = 1.0

#: Buffered outbound bytes at which a publisher writes inline instead of waiting for the
#: flusher thread (nats.go's write buffer is 32 KiB; larger writes amortize syscalls better).
WRITE_HIGH_WATER: Final = 256 * 1024
#: recv() size for the reader thread; it adapts between these bounds: reads that fill the
#: buffer double it (large messages, bursts), mostly-empty reads halve it. Small reads keep
#: the per-read allocation under glibc's mmap threshold, which matters for request latency.
READ_SIZE: Final = 64 * 1024
READ_SIZE_MAX: Final = 1024 * 1024

#: Pending limits of one subscription before it is a slow consumer (nats.go: 500k msgs / 64 MiB).
SUB_PENDING_MSGS: Final = 512 * 1024
SUB_PENDING_BYTES: Final = 64 * 1024 * 1024

#: Prefix of reply inboxes (every NATS client uses ``_INBOX``).
INBOX_PREFIX: Final = "_INBOX"

#: Client name sent in CONNECT ``lang``.
LANG: Final = "python-memphis-sync"

#: JetStream API prefix and API request timeout (nats.go and nats-py: 5 s).
JS_API_PREFIX: Final = "$JS.API"
JS_API_TIMEOUT: Final = 5.0
#: ADR-22: retry a publish answered with 503 (no responders, leader election) 2 more times, 250 ms apart.
JS_PUB_RETRY_ATTEMPTS: Final = 2
JS_PUB_RETRY_WAIT: Final = 0.25
#: Acks in flight for pipelined publish (nats.go and nats-py: 4000).
JS_PUB_MAX_PENDING: Final = 4000
#: fetch() default wait (nats-py: 5 s).
JS_FETCH_TIMEOUT: Final = 5.0

# -- Memphis layer (names, units and values of the official SDK, memphis-py 1.3.1) ----------

#: Control-plane request timeouts per try (memphis-py: 20 s for creations, 5 s for destructions).
MEMPHIS_CREATE_TIMEOUT: Final = 20.0
MEMPHIS_DESTROY_TIMEOUT: Final = 5.0
#: Re-sends of a control-plane request that timed out (memphis-py ``timeout_retries=5``).
MEMPHIS_TIMEOUT_RETRIES: Final = 5
#: ``req_version`` of producer/consumer creation requests (memphis-py 1.3.x, broker 1.4 latest).
MEMPHIS_REQ_VERSION: Final = 4
#: ``req_version`` of producer/consumer destruction requests (memphis-py 1.3.1).
MEMPHIS_DESTROY_REQ_VERSION: Final = 1
#: ``sdk_lang`` sent in creation requests: we speak for the Python SDK family.
MEMPHIS_SDK_LANG: Final = "python"
#: Largest fetch batch the SDKs allow (``MAX_BATCH_SIZE``).
MEMPHIS_MAX_BATCH_SIZE: Final = 5000
#: Floor of ``batch_max_time_to_wait_ms`` (memphis-py 1.3.1).
MEMPHIS_MIN_BATCH_WAIT_MS: Final = 100
#: Seed of the murmur3 partition-key hash (every official SDK).
MEMPHIS_PARTITION_SEED: Final = 31
#: The schema types of Schemaverse, in the broker's order (memphis-py ``schema_type``).
MEMPHIS_SCHEMA_TYPES: Final = ("json", "graphql", "protobuf", "avro")
#: Longest station/producer/consumer/schema name the broker accepts.
MEMPHIS_MAX_NAME_LENGTH: Final = 128
#: Re-sent DLS messages kept for ``fetch()`` per consumer (memphis-py ring of 10000).
MEMPHIS_DLS_BUFFER: Final = 10000
#: The broker clamps max_msg_deliveries outside 1..10 to 10; we refuse such values instead.
MEMPHIS_MAX_MSG_DELIVERIES: Final = 10
#: Largest idempotency window the broker accepts (24 h).
MEMPHIS_MAX_IDEMPOTENCY_WINDOW_MS: Final = 86_400_000
#: Most replicas in a cluster (broker text "max replicas in a cluster is 5").
MEMPHIS_MAX_REPLICAS: Final = 5

#: The local broker's control plane reconnects fast: its nats-server is on the same host, and a
#: restart should not leave Memphis requests unanswered for the SDK default 1.5 s.
CONTROL_PLANE_RECONNECT_WAIT: Final = 0.1
#: Seconds the control plane waits for requests in progress when it stops.
CONTROL_PLANE_DRAIN_TIMEOUT: Final = 5.0
#: Memphis broker defaults used by the local broker (memphis-wire.md §1.3): token mode with user
#: ``root`` and token ``memphis``; password mode accounts are ``<user>$<account_id>``, id 1.
MEMPHIS_USERNAME: Final = "root"
MEMPHIS_CONNECTION_TOKEN: Final = "memphis"
MEMPHIS_ACCOUNT_ID: Final = 1
#: Port of the Memphis REST gateway (``DEFAULT_REST_GW_PORT`` of the broker): the local broker's
#: HTTP ingress on the CLI and the REST client's default.
REST_GATEWAY_PORT: Final = 4444
#: Every broker config shipped with Memphis sets max_payload 8MB (memphis-wire.md §6.5).
MEMPHIS_MAX_PAYLOAD: Final = 8 * 1024 * 1024
#: Seconds ``Memphis.close()`` waits for unacknowledged nonblocking produces.
MEMPHIS_CLOSE_ACK_WAIT: Final = 5.0
#: Seconds the interpreter-exit hook spends, over all connections, confirming nonblocking
#: produces that a script left unacknowledged (then it warns with the count).
EXIT_FLUSH_TIMEOUT: Final = 10.0
