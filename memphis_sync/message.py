"""Former path of :mod:`memphis_sync.memphis.message`; the same module object under its old name.

``import memphis_sync.message`` returns :mod:`memphis_sync.memphis.message` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .memphis import message as _module
from .memphis.message import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
