"""The station-state cache: what one connection knows about each station it uses.

Per station a small record (partition list, schema, functions map, the "schema failures to
DLS" flag), fed by creation replies and by the broker's update subjects
(``$memphis_schema_updates_<station>``, ``$memphis_functions_updates_<station>``,
``$memphis_sdk_clients_updates``); producers and consumers read it on every call, so updates
apply live. A record lives while a producer or consumer of its station holds a reference.

The update handlers run on the connection's reader thread: they parse and store, never block.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

import attrs

from ..errors import MemphisError, MemphisSchemaError
from ..nats.protocol import Msg
from .registry import Registry
from .requester import Requester

if TYPE_CHECKING:  # pragma: no cover
    from .schemaverse import Schema

__all__ = ["StationState", "StationCache", "SDK_CLIENTS_UPDATES"]

logger = logging.getLogger("memphis_sync.client")  # the name users configure (kept from the flat layout)

SDK_CLIENTS_UPDATES = "$memphis_sdk_clients_updates"


@attrs.define(eq=False)
class StationState:
    """What this connection knows about one station (shared by its producers and consumers)."""

    internal_name: str
    partitions: Optional[List[int]] = None
    schema: Optional[Schema] = None
    schemaverse_to_dls: bool = False
    functions: Dict[int, int] = attrs.field(factory=dict)
    station_version: int = 0
    refs: int = 0
    subs: List[Any] = attrs.field(factory=list)


class StationCache:
    """The station states of one connection, and the broker's updates to them. Thread-safe.

    Attributes:
        send_notification: the broker asks for schema-failure notifications.
    """

    def __init__(self, requester: Requester, registry: Registry[Any, Any]) -> None:
        self._requester = requester
        self._registry = registry
        self._lock = threading.Lock()
        self._stations: Dict[str, StationState] = {}
        self.send_notification = False

    def __repr__(self) -> str:
        return f"<StationCache stations={sorted(self._stations)}>"

    def subscribe_clients_updates(self) -> None:
        """Follow ``$memphis_sdk_clients_updates`` (notifications, DLS flag, removed stations)."""
        self._requester.checked_conn().subscribe_internal(SDK_CLIENTS_UPDATES, self._on_clients_update)

    def ref(self, internal: str, reply: Mapping[str, Any]) -> StationState:
        """Update the station's state from a creation reply and take a reference on it.

        Raises:
            MemphisSchemaError: the station's schema cannot be used (no reference is kept).
        """
        partitions = (reply.get("partitions_update") or {}).get("partitions_list")
        schema_update = reply.get("schema_update") or {}
        with self._lock:
            state = self._stations.get(internal)
            if state is None:
                state = self._stations[internal] = StationState(internal)
            state.refs += 1
            state.partitions = [int(p) for p in partitions] if partitions else None
            if "schemaverse_to_dls" in reply:
                state.schemaverse_to_dls = bool(reply.get("schemaverse_to_dls"))
            if "send_notification" in reply:
                self.send_notification = bool(reply.get("send_notification"))
            state.station_version = int(reply.get("station_version") or 0)
            functions = reply.get("station_partitions_first_functions") or {}
            state.functions = {int(k): int(v) for k, v in functions.items()}
            need_subs = not state.subs
        if schema_update:
            try:
                self._apply_schema(state, schema_update)
            except BaseException:
                self.unref(state)
                raise
        if need_subs:
            conn = self._requester.checked_conn()
            subs = [conn.subscribe_internal(f"$memphis_schema_updates_{internal}", lambda msg: self._on_schema_update(state, msg))]
            if state.station_version >= 2:
                subs.append(conn.subscribe_internal(f"$memphis_functions_updates_{internal}", lambda msg: self._on_functions_update(state, msg)))
            with self._lock:
                if state.subs:
                    extra = subs
                else:
                    state.subs, extra = subs, []
            for sub in extra:
                sub.unsubscribe()
        return state

    def unref(self, state: Optional[StationState]) -> None:
        """Drop a reference; the last one forgets the station and its update subscriptions."""
        if state is None:
            return
        with self._lock:
            state.refs -= 1
            if state.refs > 0 or self._stations.get(state.internal_name) is not state:
                return
            del self._stations[state.internal_name]
        _unsubscribe(state)

    def schema_of(self, internal: str) -> Optional[Schema]:
        """The schema of a station, or None (none attached, or the station is not in use)."""
        state = self._stations.get(internal)
        return state.schema if state is not None else None

    def forget_station(self, internal: str) -> None:
        """Drop local producers/consumers/state of a station (after destroy or ``remove_station``)."""
        consumers = self._registry.drop_station(internal)
        with self._lock:
            state = self._stations.pop(internal, None)
        for consumer in consumers:
            consumer._shutdown_local()
        if state is not None:
            _unsubscribe(state)

    def clear(self) -> None:
        """Forget every station (on close; the connection's subscriptions are gone with it)."""
        with self._lock:
            self._stations.clear()

    @staticmethod
    def _apply_schema(state: StationState, init: Mapping[str, Any]) -> None:
        if not init or not init.get("schema_name"):
            state.schema = None
            return
        from .schemaverse import Schema  # the optional validators are imported lazily

        try:
            state.schema = Schema.from_update(init)
        except MemphisSchemaError:
            logger.exception("cannot use schema %r of station %s", init.get("schema_name"), state.internal_name)
            raise

    # handlers below run on the reader thread: parse, store, never block

    def _on_clients_update(self, msg: Msg) -> None:
        try:
            update = json.loads(msg.payload)
            kind = update.get("type")
            station = update.get("station_name") or ""
        except (ValueError, AttributeError):
            logger.warning("ignoring a malformed %s message: %r", SDK_CLIENTS_UPDATES, msg.payload[:200])
            return
        if kind == "send_notification":
            self.send_notification = bool(update.get("update"))
        elif kind == "schemaverse_to_dls":
            state = self._stations.get(station)
            if state is not None:
                state.schemaverse_to_dls = bool(update.get("update"))
        elif kind == "remove_station":
            threading.Thread(target=self.forget_station, args=(station,), name="memphis-sync-remove-station", daemon=True).start()

    def _on_schema_update(self, state: StationState, msg: Msg) -> None:
        try:
            update = json.loads(msg.payload)
            self._apply_schema(state, update.get("init") or {})
        except Exception:
            logger.exception("bad schema update for station %s", state.internal_name)

    def _on_functions_update(self, state: StationState, msg: Msg) -> None:
        try:
            update = json.loads(msg.payload)
            state.functions = {int(k): int(v) for k, v in (update.get("functions") or {}).items()}
        except Exception:
            logger.exception("bad functions update for station %s", state.internal_name)


def _unsubscribe(state: StationState) -> None:
    subs, state.subs = state.subs, []
    for sub in subs:
        try:
            sub.unsubscribe()
        except MemphisError:
            logger.debug("unsubscribe of station updates failed", exc_info=True)
