"""What the control-plane handlers share: :class:`BrokerContext`.

:class:`~memphis_sync.broker.control_plane.ControlPlane` makes one context and hands it to each
handler class of :mod:`memphis_sync.broker.handlers`. The context holds the settings every handler
needs (known users, account id, replicas), the lock that serialises the mutating requests of this
instance, and, while the control plane runs, its connection, JetStream context and metadata store:
:meth:`BrokerContext.attach` at start, :meth:`BrokerContext.detach` at stop. Outside that window
:attr:`~BrokerContext.connection`, :attr:`~BrokerContext.jetstream` and
:attr:`~BrokerContext.metadata` raise, so a handler never works on a stopped control plane.

It also owns what several handlers do with station records (look up, store, list) and the user
check, so that no handler reaches into another one or into the control plane.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set

from memphis_sync import _defaults
from memphis_sync.broker import rules
from memphis_sync.broker.metadata import MetadataStore
from memphis_sync.errors import MemphisError, StreamNotFoundError
from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import Connection

__all__ = ["BrokerContext", "SDK_CLIENTS_UPDATES"]

#: Subject of the broker → SDK notices (``remove_station``...), §11.1.
SDK_CLIENTS_UPDATES = "$memphis_sdk_clients_updates"


def station_key(name: str) -> str:
    """The metadata key of station ``name`` (external name, any case)."""
    return f"station.{rules.internal_name(name)}"


class BrokerContext:
    """The connection, JetStream, metadata store, lock and users shared by the handlers.

    Args:
        users: The Memphis user names requests may carry; None accepts any name.
        account_id: The account (tenant) id requests may name (``username$<account_id>``).
        metadata_replicas: Replicas of the metadata and DLS advisory streams.
        default_replicas: Replicas of automatically created stations (§4.6).

    Attributes:
        lock: Serialises the mutating requests of this control-plane instance (re-entrant).
    """

    def __init__(
        self,
        *,
        users: Optional[Iterable[str]] = None,
        account_id: int = _defaults.MEMPHIS_ACCOUNT_ID,
        metadata_replicas: int = 1,
        default_replicas: int = 1,
    ) -> None:
        self.lock = threading.RLock()
        self.users: Optional[Set[str]] = None if users is None else {u.lower() for u in users}
        self.account_id = account_id
        self.metadata_replicas = metadata_replicas
        self.default_replicas = default_replicas
        self._conn: Optional[Connection] = None
        self._js: Optional[JetStream] = None
        self._meta: Optional[MetadataStore] = None

    # -- the running control plane -----------------------------------------------------------

    def attach(self, conn: Connection, js: JetStream, meta: MetadataStore) -> None:
        """The control plane started on ``conn``: handlers may work."""
        self._conn, self._js, self._meta = conn, js, meta

    def detach(self) -> Optional[Connection]:
        """The control plane stops: return the connection (None if there was none)."""
        conn, self._conn = self._conn, None
        return conn

    def connection_or_none(self) -> Optional[Connection]:
        """The connection while the control plane runs, else None (never raises)."""
        return self._conn

    @property
    def connection(self) -> Connection:
        """The control plane's own connection (raises if not started)."""
        if self._conn is None:
            raise MemphisError("the control plane is not running")
        return self._conn

    @property
    def jetstream(self) -> JetStream:
        """The JetStream context of :attr:`connection`."""
        if self._js is None or self._conn is None:
            raise MemphisError("the control plane is not running")
        return self._js

    @property
    def metadata(self) -> MetadataStore:
        """The metadata store."""
        if self._meta is None or self._conn is None:
            raise MemphisError("the control plane is not running")
        return self._meta

    # -- shared by the handlers --------------------------------------------------------------

    def check_user(self, username: str, text: str) -> None:
        """Refuse with ``text`` unless ``username`` (``name`` or ``name$<tenant>``) is a known user."""
        if self.users is None:
            return
        name, _ = rules.split_username(username)
        if name.lower() not in self.users:
            raise rules.Refusal(text)

    def get_station(self, name: str) -> Optional[Dict[str, Any]]:
        """The record of station ``name`` (external name, any case), or None."""
        return self.metadata.get(station_key(name))

    def put_station(self, record: Mapping[str, Any]) -> None:
        """Store a station record (replacing the one of the same name)."""
        self.metadata.put(station_key(record["name"]), record)

    def stations(self) -> List[Dict[str, Any]]:
        """Every station record, sorted by name."""
        return sorted(self.metadata.list("station").values(), key=lambda r: r["name"])

    def delete_stream(self, stream: str) -> None:
        """Delete a stream; a missing one is no error."""
        try:
            self.jetstream.delete_stream(stream)
        except StreamNotFoundError:
            pass

    def notify_clients(self, station: str, update_type: str, update: Any) -> None:
        """Publish a broker → SDK notice about ``station`` on ``$memphis_sdk_clients_updates``."""
        notice = {"station_name": rules.internal_name(station), "type": update_type, "update": update}
        self.connection.publish(SDK_CLIENTS_UPDATES, json.dumps(notice).encode())
