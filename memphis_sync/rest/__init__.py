"""HTTP access to Memphis: a client of the Memphis REST gateway.

:class:`RestClient` logs in, keeps its token fresh, produces (one message or a batch) and
consumes batches over HTTP, against a Memphis REST gateway (1.2.8) or the local broker's ingress
(``LocalBroker(rest_port=...)``, ``memphis-sync broker``). A peer of the NATS-based Memphis API
for places where only HTTP gets through; see ``docs/protocols_http.rst``.
"""

from .client import RestClient
from .encoding import RestMessage

__all__ = ["RestClient", "RestMessage"]
