"""Former path of :mod:`memphis_sync.memphis.client`; the same module object under its old name.

``import memphis_sync.client`` returns :mod:`memphis_sync.memphis.client` itself (not a copy), so every
name, and every attribute set on it, is the new module's.
"""

import sys

from .memphis import client as _module
from .memphis.client import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
