"""The Memphis name rules, once: what a station, producer, consumer, consumer group or schema
name may be (``validateName`` of the Memphis broker, ``memphis-wire.md`` §2.2), and the internal
form of a name.

Pure functions, used by the client (:mod:`memphis_sync.memphis.validate`, which raises) and by the
local broker (:mod:`memphis_sync.broker.rules`, which replies with the text). The whole string is
checked: a name ending in a newline is refused like any other bad character.
"""

from __future__ import annotations

import re
from typing import Optional

from ._defaults import MEMPHIS_MAX_NAME_LENGTH

__all__ = ["internal_name", "name_error"]

_ALLOWED = re.compile(r"[a-z0-9_.-]*")


def internal_name(name: str) -> str:
    """The internal form of a name: lower-cased, ``.`` replaced by ``#`` (streams, durables, subjects)."""
    return name.lower().replace(".", "#")


def name_error(name: str, object_type: str) -> Optional[str]:
    """The broker's error text for a lower-cased name, or None if the name is valid.

    Args:
        name: The lower-cased name.
        object_type: ``"Station"``, ``"Producer"``, ``"Consumer"`` or ``"Schema"`` (quoted in the
            texts).
    """
    if not name:
        return f"{object_type} name can not be empty"
    if len(name) > MEMPHIS_MAX_NAME_LENGTH:
        return f"{object_type} should be under 128 characters"
    if _ALLOWED.fullmatch(name) is None:
        return f"Only alphanumeric and the '_', '-', '.' characters are allowed in {object_type}"
    if name[0] in "._-" or name[-1] in "._-":
        return f"{object_type} name can not start or end with non alphanumeric character"
    return None
