"""Former path of :mod:`memphis_sync.nats.protocol`; the same package object under its old name.

``import memphis_sync.protocol`` returns the package :mod:`memphis_sync.nats.protocol` itself (not a
copy), which re-exports every name the flat module had (events, parser, encoders and limits).
"""

import sys

from .nats import protocol as _module
from .nats.protocol import *  # noqa: F401,F403 (for type checkers)

sys.modules[__name__] = _module
