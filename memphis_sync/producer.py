"""Former path of :mod:`memphis_sync.memphis.producer`; the same module object under its old name.

``import memphis_sync.producer`` returns :mod:`memphis_sync.memphis.producer` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .memphis import producer as _module
from .memphis.producer import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
