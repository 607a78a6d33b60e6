"""Former path of :mod:`memphis_sync.memphis.consumer`; the same module object under its old name.

``import memphis_sync.consumer`` returns :mod:`memphis_sync.memphis.consumer` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .memphis import consumer as _module
from .memphis.consumer import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
