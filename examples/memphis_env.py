"""Connection settings of the examples, from the ``MEMPHIS_*`` environment variables.

=========================  ===========================================  ===============
variable                   meaning                                      default here
=========================  ===========================================  ===============
MEMPHIS_HOST               broker host                                  127.0.0.1
MEMPHIS_PORT               broker client port                           6666
MEMPHIS_USERNAME           Memphis user                                 root
MEMPHIS_CONNECTION_TOKEN   token (token mode)                           memphis
MEMPHIS_PASSWORD           password (password mode; set it *instead*    (unset)
                           of the token)
MEMPHIS_ACCOUNT_ID         account (tenant) id                          1
=========================  ===========================================  ===============

The library reads them (and ``MEMPHIS_URL``, ``MEMPHIS_CERT_FILE``...: see
``memphis_sync.memphis.url.settings_from_env``); the defaults added here are those of the
local broker (``memphis-sync broker``), so the examples run against it with no variable set.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from memphis_sync.memphis.url import settings_from_env

__all__ = ["connect_kwargs"]


def connect_kwargs(environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Keyword arguments for ``memphis_sync.connect()`` from the environment (see above).

    Raises:
        memphis_sync.MemphisValueError: a bad variable (named), or both a token and a password.
    """
    kwargs: Dict[str, Any] = {"host": "127.0.0.1", "username": "root"}
    kwargs.update(settings_from_env(environ))
    if not kwargs.get("connection_token") and not kwargs.get("password"):
        kwargs["connection_token"] = "memphis"
    return kwargs
