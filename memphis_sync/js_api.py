"""Former path of :mod:`memphis_sync.jetstream.types`; the same module object under its old name.

``import memphis_sync.js_api`` returns :mod:`memphis_sync.jetstream.types` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .jetstream import types as _module
from .jetstream.types import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
