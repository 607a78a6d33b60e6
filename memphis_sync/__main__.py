"""``python -m memphis_sync``: the command line (see :mod:`memphis_sync.cli`)."""

import sys

from .cli import main

sys.exit(main())
