"""Former path of :mod:`memphis_sync.jetstream.pull`; the same module object under its old name.

``import memphis_sync.js_pull`` returns :mod:`memphis_sync.jetstream.pull` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .jetstream import pull as _module
from .jetstream.pull import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
