"""Former path of :mod:`memphis_sync.jetstream.msg`; the same module object under its old name.

``import memphis_sync.js_msg`` returns :mod:`memphis_sync.jetstream.msg` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .jetstream import msg as _module
from .jetstream.msg import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
