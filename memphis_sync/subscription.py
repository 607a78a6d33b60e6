"""Former path of :mod:`memphis_sync.nats.subscription`; the same module object under its old name.

``import memphis_sync.subscription`` returns :mod:`memphis_sync.nats.subscription` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .nats import subscription as _module
from .nats.subscription import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
