"""Former path of :mod:`memphis_sync.nats.connection`; the same module object under its old name.

``import memphis_sync.connection`` returns :mod:`memphis_sync.nats.connection` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .nats import connection as _module
from .nats.connection import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
