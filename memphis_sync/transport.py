"""Former path of :mod:`memphis_sync.nats.transport`; the same module object under its old name.

``import memphis_sync.transport`` returns :mod:`memphis_sync.nats.transport` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .nats import transport as _module
from .nats.transport import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
