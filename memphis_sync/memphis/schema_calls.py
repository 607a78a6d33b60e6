"""The schema calls of :class:`~memphis_sync.memphis.client.Memphis` (Schemaverse, §10):
create a schema, enforce (attach) it on a station, detach it. A mixin of ``Memphis``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, List, Tuple

from .. import _defaults
from ..errors import MemphisValueError
from .schemaverse import creation_body as schema_creation_body
from .schemaverse import raise_for_creation_reply as raise_for_schema_reply
from .schemaverse import validate_schema_name
from .validate import validate_name

if TYPE_CHECKING:  # pragma: no cover
    from .requester import Requester
    from .state import StationCache

__all__: List[str] = []


class _SchemaCalls:
    """Schema calls; the class using it provides ``username`` and ``_plane()``."""

    username: str

    def _plane(self) -> "Tuple[Requester, StationCache]":  # pragma: no cover - provided by Memphis
        raise NotImplementedError

    def create_schema(self, schema_name: str, schema_type: str, schema_path: str, timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES) -> None:
        """Create a schema (or a new version of it) from a file (§10.5).

        Raises:
            MemphisValueError: a bad name, type or path, or the file cannot be read.
            MemphisRequestError / ConnectionClosedError: the broker refused the schema, or the connection is closed.
        """
        body = schema_creation_body(schema_name, schema_type, schema_path, self.username)
        reply = self._plane()[0].request("$memphis_schema_creations", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
        raise_for_schema_reply(schema_name, reply)

    def enforce_schema(self, name: str, station_name: str, timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES) -> None:
        """Attach schema ``name`` to a station (§10.4); its producers validate from then on.

        Raises:
            MemphisValueError: an empty or bad name (nothing was sent).
            MemphisRequestError / ConnectionClosedError: the broker refused (missing station or schema), or the connection is closed.
        """
        if not name or not station_name:
            raise MemphisValueError("name and station name can not be empty")
        validate_schema_name(name)
        validate_name(station_name, "Station")
        body = {"name": name, "station_name": station_name, "username": self.username}
        self._plane()[0].ask("$memphis_schema_attachments", body, timeout_retries, what=f"attaching schema {name!r} to station {station_name!r}")

    def attach_schema(self, name: str, station_name: str) -> None:
        """Deprecated alias of :meth:`enforce_schema`."""
        warnings.warn("Deprecation warning: attach_schema is deprecated, use enforce_schema instead.", DeprecationWarning, stacklevel=2)
        self.enforce_schema(name, station_name)

    def detach_schema(self, station_name: str, timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES) -> None:
        """Detach the schema of a station (§10.4).

        Raises:
            MemphisValueError: an empty or bad station name (nothing was sent).
            MemphisRequestError / ConnectionClosedError: the broker refused, or the connection is closed.
        """
        if not station_name:
            raise MemphisValueError("station name is missing")
        validate_name(station_name, "Station")
        body = {"station_name": station_name, "username": self.username}
        self._plane()[0].ask("$memphis_schema_detachments", body, timeout_retries, what=f"detaching the schema of station {station_name!r}")
