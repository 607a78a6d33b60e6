"""Former home of the whole protocol, now re-exports only: :mod:`.events`, :mod:`.parser` and
:mod:`.encoder` hold it. Kept for the modules that still import ``wire``: it has every public name
it had (the package's, see :mod:`memphis_sync.nats.protocol`) and ``_PUB_PREFIXES``, the one
private name imported from it (by the connection's publish path). It goes once nothing imports it.
"""

from . import *  # noqa: F401,F403 (re-exports)
from .encoder import _PUB_PREFIXES  # noqa: F401 (re-export)
