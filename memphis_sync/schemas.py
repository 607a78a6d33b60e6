"""Former path of :mod:`memphis_sync.memphis.schemaverse`; the same module object under its old name.

``import memphis_sync.schemas`` returns :mod:`memphis_sync.memphis.schemaverse` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .memphis import schemaverse as _module
from .memphis.schemaverse import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
