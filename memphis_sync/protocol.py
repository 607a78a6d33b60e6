"""Former path of :mod:`memphis_sync.nats.protocol.wire`; the same module object under its old name.

``import memphis_sync.protocol`` returns :mod:`memphis_sync.nats.protocol.wire` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .nats.protocol import wire as _module
from .nats.protocol.wire import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
