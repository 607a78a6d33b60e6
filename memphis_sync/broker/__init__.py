"""The local broker: a real ``nats-server`` process run from Python.

:class:`NatsServer` runs one server (free ports, JetStream, auth, TLS, websocket, MQTT) and
:class:`NatsCluster` a routed cluster of them; both serve the test-suite and the
``memphis-sync broker`` command.
"""

from memphis_sync.broker.server import NatsCluster, NatsServer, TlsFiles, find_nats_server

__all__ = ["NatsServer", "NatsCluster", "TlsFiles", "find_nats_server"]
