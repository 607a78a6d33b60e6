"""Former path of :mod:`memphis_sync.memphis.station`; the same module object under its old name.

``import memphis_sync.station`` returns :mod:`memphis_sync.memphis.station` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .memphis import station as _module
from .memphis.station import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
