"""The local broker: a real ``nats-server`` process run from Python, plus the Memphis control plane.

:class:`NatsServer` runs one server (free ports, JetStream, auth, TLS, websocket, MQTT) and
:class:`NatsCluster` a routed cluster of them; both serve the test-suite and the
``memphis-sync broker`` command. :class:`LocalBroker` is a whole Memphis broker: a server (or a
3-node cluster) configured like Memphis with a :class:`ControlPlane` that answers the
``$memphis_*`` requests.
"""

from memphis_sync.broker.cluster import NatsCluster
from memphis_sync.broker.config import TlsFiles, find_nats_server
from memphis_sync.broker.control_plane import ControlPlane
from memphis_sync.broker.local import LocalBroker, default_store_dir
from memphis_sync.broker.server import NatsServer

__all__ = ["NatsServer", "NatsCluster", "TlsFiles", "find_nats_server", "LocalBroker", "ControlPlane", "default_store_dir"]
