"""A cluster of ``nats-server`` processes on one host, each routed to all the others.

:class:`NatsCluster` builds one :class:`~memphis_sync.broker.server.NatsServer` per node, with
route ports reserved up front, starts them all at once (a JetStream node alone never finds a
quorum) and waits until every node has a meta leader and routes to every other node.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Final, List, Optional
from urllib.parse import urlsplit

from memphis_sync.broker.config import PathLike, hostport
from memphis_sync.broker.server import DEFAULT_TIMEOUT, POLL_INTERVAL, NatsServer
from memphis_sync.errors import BrokerError

__all__ = ["NatsCluster", "CLUSTER_TIMEOUT"]

#: Seconds for NatsCluster.start(): after a full-cluster restart, nats-server 2.15 takes 4-8 s to
#: elect a JetStream meta leader from the recovered Raft state (a fresh cluster: 0.2-2.5 s).
CLUSTER_TIMEOUT: Final = 30.0


def _free_ports(host: str, count: int) -> List[int]:
    """Return ``count`` distinct ports that were free on ``host`` a moment ago."""
    socks = [socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class NatsCluster:
    """A cluster of :class:`NatsServer` nodes on one host, each routed to all the others.

    Route ports are reserved up front (bound to port 0, then released) so that every node's
    ``routes`` can name all the others; the other ports are chosen when the nodes start.

    Args:
        size: Number of nodes (3 gives JetStream a quorum that survives one node down).
        host: Address every node binds to.
        jetstream: Enable (clustered) JetStream on every node.
        store_root: Parent of the nodes' store directories (``node0``, ``node1``...); by default
            each node uses its own temporary directory.
        cluster_name: The cluster name; node ``i`` is named ``<cluster_name>-<i>``.
        **node_kwargs: More :class:`NatsServer` arguments, given to every node.

    Raises:
        ValueError: ``size`` is below 1, or ``node_kwargs`` holds a per-node argument.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        host: str = "127.0.0.1",
        jetstream: bool = True,
        store_root: Optional[PathLike] = None,
        cluster_name: str = "memphis-sync",
        **node_kwargs: Any,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        clash = set(node_kwargs) & {"port", "cluster_port", "routes", "store_dir", "server_name", "log_file"}
        if clash:
            raise ValueError(f"per-node arguments cannot be given to NatsCluster: {sorted(clash)}")
        routes = [f"nats://{hostport(host, port)}" for port in _free_ports(host, size)]
        self.nodes: List[NatsServer] = [
            NatsServer(
                host=host,
                jetstream=jetstream,
                store_dir=None if store_root is None else os.path.join(store_root, f"node{i}"),
                server_name=f"{cluster_name}-{i}",
                cluster_name=cluster_name,
                cluster_port=urlsplit(route).port,
                routes=routes[:i] + routes[i + 1 :],
                **node_kwargs,
            )
            for i, route in enumerate(routes)
        ]

    def start(self, timeout: float = CLUSTER_TIMEOUT) -> None:
        """Start every node that is not running, and wait until the cluster has formed.

        The cluster is ready when every node passes the full ``/healthz`` (with JetStream: a meta
        leader is known) and ``/routez`` shows routes to all the other nodes.

        Args:
            timeout: Seconds for the whole cluster to become ready.

        Raises:
            BrokerError: A node failed to start or the cluster did not form in time; then every
                node is stopped again.
        """
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                if not node.is_running():
                    node._spawn()  # all at once: a node alone never finds a JetStream quorum
            for node in self.nodes:
                node._wait_ready(deadline, full_health=True)
                while True:  # routes are pooled (3 per peer, plus 1 for $SYS): count peers
                    peers = {r["remote_id"] for r in node.monitor("/routez").get("routes") or ()}
                    if len(peers) >= len(self.nodes) - 1:
                        break
                    if time.monotonic() >= deadline:
                        raise BrokerError(f"{node!r} has routes to only {len(peers)} peers in time")
                    time.sleep(POLL_INTERVAL)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop every node gracefully: signal them all, then wait for each.

        Args:
            timeout: Seconds each node gets to exit before it is killed.
        """
        for node in self.nodes:
            node._runtime.terminate()
        for node in self.nodes:
            node.stop(timeout)

    def close(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop every node and delete their temporary directories.

        Args:
            timeout: Seconds each node gets to exit before it is killed.
        """
        self.stop(timeout)
        for node in self.nodes:
            node.close(timeout)

    def is_running(self) -> bool:
        """Return True if every node is running."""
        return all(node.is_running() for node in self.nodes)

    @property
    def urls(self) -> List[str]:
        """The client URLs of all the nodes."""
        return [node.url for node in self.nodes]

    def __enter__(self) -> NatsCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        running = sum(node.is_running() for node in self.nodes)
        return f"<NatsCluster {len(self.nodes)} nodes, {running} running>"
