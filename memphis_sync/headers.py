"""Former path of :mod:`memphis_sync.nats.protocol.headers`; the same module object under its old name.

``import memphis_sync.headers`` returns :mod:`memphis_sync.nats.protocol.headers` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .nats.protocol import headers as _module
from .nats.protocol.headers import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
