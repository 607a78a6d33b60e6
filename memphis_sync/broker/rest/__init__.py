"""The local broker's HTTP ingress, compatible with the Memphis REST gateway 1.2.8.

:class:`RestGateway` serves ``/auth/authenticate``, ``/auth/refreshToken``,
``/stations/{station}/produce/single``, ``/stations/{station}/produce/batch``,
``/stations/{station}/consume/batch`` and ``/monitoring/status``; :class:`LocalBroker
<memphis_sync.broker.local.LocalBroker>` runs one when given ``rest_port``. See
``docs/protocols_http.rst`` for what differs from the gateway (no credentials in tokens, no
auth headers in messages, per-message batch results, acks after the reply).

Needs werkzeug and PyJWT (``pip install "memphis-sync[broker]"``).
"""

from .gateway import RestGateway
from .settings import RestSettings, UserDirectory

__all__ = ["RestGateway", "RestSettings", "UserDirectory"]
