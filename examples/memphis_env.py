"""Connection settings of the examples, read from ``MEMPHIS_*`` environment variables.

=========================  ===========================================  ===============
variable                   meaning                                      default
=========================  ===========================================  ===============
MEMPHIS_HOST               broker host                                  127.0.0.1
MEMPHIS_PORT               broker client port                           6666
MEMPHIS_USERNAME           Memphis user                                 root
MEMPHIS_CONNECTION_TOKEN   token (token mode)                           memphis
MEMPHIS_PASSWORD           password (password mode; set it *instead*    (unset)
                           of the token)
MEMPHIS_ACCOUNT_ID         account (tenant) id, password mode           1
=========================  ===========================================  ===============

The defaults are those of the local broker (``memphis-sync broker``), so the examples run
against it with no variable set.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

__all__ = ["connect_kwargs"]


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def connect_kwargs(environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Keyword arguments for ``memphis_sync.connect()`` from the environment (see above).

    Raises:
        ValueError: a port or account id that is not an integer, or both a token and a password.
    """
    env = os.environ if environ is None else environ
    kwargs: Dict[str, Any] = {
        "host": env.get("MEMPHIS_HOST") or "127.0.0.1",
        "port": _int(env, "MEMPHIS_PORT", 6666),
        "username": env.get("MEMPHIS_USERNAME") or "root",
    }
    token, password = env.get("MEMPHIS_CONNECTION_TOKEN", ""), env.get("MEMPHIS_PASSWORD", "")
    if token and password:
        raise ValueError("set MEMPHIS_CONNECTION_TOKEN or MEMPHIS_PASSWORD, not both")
    if password:
        kwargs.update(password=password, account_id=_int(env, "MEMPHIS_ACCOUNT_ID", 1))
    else:
        kwargs["connection_token"] = token or "memphis"
    return kwargs
