"""Schemaverse part of the control plane (``memphis-wire.md`` §10): create, attach, detach.

A schema record (key ``schema.<internal name>``) keeps every version; version 1 is active, and,
as on the broker, later versions created through ``$memphis_schema_creations`` are inactive
(§15.16), so stations keep using the active one. Attaching publishes ``{"UpdateType": 1, "init":
…}`` and detaching ``{"UpdateType": 2, "init": <all zero>}`` on
``$memphis_schema_updates_<internal station>`` (§10.2).

Content checks use the libraries the py SDK itself uses when they are installed (``jsonschema``,
``fastavro``, ``graphql-core``); without them only the JSON syntax is checked. A protobuf schema is
compiled to its descriptor (``descriptor``, a base64 ``FileDescriptorSet``) as the broker does
(:mod:`.protoc`: ``grpcio-tools``, the ``broker-protobuf`` extra, or ``protoc`` on ``PATH``); with
no compiler installed it is refused, never stored with an empty descriptor.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Dict, Mapping, Optional, Tuple

from memphis_sync import _defaults
from memphis_sync.broker import rules
from memphis_sync.broker.context import BrokerContext
from memphis_sync.broker.handlers import protoc

__all__ = ["Schemaverse", "SCHEMA_SERVICES", "schema_update_init", "validate_schema_content"]

#: Service subject → (queue group, handler method, reply format), §3.1.
SCHEMA_SERVICES: Dict[str, Tuple[str, str, str]] = {
    "$memphis_schema_creations": ("memphis_schema_creations_listeners_group", "create_schema", "schema"),
    "$memphis_schema_attachments": ("memphis_schema_attachments_listeners_group", "attach_schema", "text"),
    "$memphis_schema_detachments": ("memphis_schema_detachments_listeners_group", "detach_schema", "text"),
}
SCHEMA_TYPES = _defaults.MEMPHIS_SCHEMA_TYPES
logger = logging.getLogger(__name__)
_MESSAGE_RE = re.compile(r"\bmessage\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")


class _Invalid(Exception):
    pass


def _check_json(content: str) -> None:
    try:
        schema = json.loads(content)
    except ValueError:
        raise _Invalid("your json schema is invalid") from None
    try:
        import jsonschema  # the py SDK's validator, when installed
    except ImportError:
        return
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except Exception:
        raise _Invalid("your json schema is invalid") from None


def _check_avro(content: str) -> None:
    try:
        schema = json.loads(content)
    except ValueError as exc:
        raise _Invalid(f"your Avro file is invalid: {exc}") from None
    try:
        import fastavro
    except ImportError:
        return
    try:
        fastavro.parse_schema(schema)
    except Exception as exc:
        raise _Invalid(f"your Avro file is invalid: {exc}") from None


def _check_graphql(content: str) -> None:
    try:
        import graphql
    except ImportError:
        return
    try:
        graphql.build_schema(content)
    except Exception as exc:
        raise _Invalid(str(exc)) from None


def _protobuf(name: str, content: str) -> Tuple[str, str]:
    """Return ``(message_struct_name, base64 descriptor)`` of a .proto text (:mod:`.protoc`)."""
    if _MESSAGE_RE.search(content) is None or content.count("{") != content.count("}"):
        raise _Invalid("your Proto file is invalid: no message definition found")
    try:
        return protoc.compile_proto(name, content)
    except protoc.NoProtobufCompiler as exc:
        logger.warning("protobuf schema %s refused: %s", name, exc)
        raise _Invalid(str(exc)) from None
    except protoc.ProtoCompileError as exc:
        raise _Invalid(f"your Proto file is invalid: {exc}") from None


def validate_schema_content(content: str, schema_type: str, name: str = "schema") -> Tuple[str, str]:
    """Check a schema; return ``(message_struct_name, descriptor)`` (empty unless protobuf).

    Args:
        content: the schema text.
        schema_type: one of :data:`SCHEMA_TYPES`.
        name: the schema's (validated) name; a protobuf file is compiled as ``<name>_1.proto``.

    Raises:
        ValueError: with the broker's error text; for a protobuf schema when no compiler is
            installed, :data:`.protoc.NO_COMPILER_TEXT`.
    """
    try:
        if not content:
            raise _Invalid("your schema content is invalid")
        if schema_type == "protobuf":
            return _protobuf(name, content)
        {"json": _check_json, "avro": _check_avro, "graphql": _check_graphql}[schema_type](content)
        return "", ""
    except _Invalid as exc:
        raise ValueError(str(exc)) from None


def schema_update_init(schema: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The ``SchemaUpdateInit`` of a schema record's active version (all zero for None)."""
    if schema is None:
        return rules.empty_schema_update()
    active = next((v for v in schema["versions"] if v["active"]), schema["versions"][0])
    return {
        "schema_name": schema["name"],
        "active_version": {
            "version_number": active["version_number"],
            "descriptor": active["descriptor"],
            "schema_content": active["schema_content"],
            "message_struct_name": active["message_struct_name"],
        },
        "type": schema["type"],
    }


class Schemaverse:
    """The schema handlers, on a :class:`~memphis_sync.broker.context.BrokerContext`."""

    def __init__(self, ctx: BrokerContext) -> None:
        self._ctx = ctx

    def get(self, name: str) -> Optional[Dict[str, Any]]:
        """The schema record named ``name``, or None."""
        return self._ctx.metadata.get(f"schema.{rules.internal_name(name)}")

    def station_schema(self, station: Mapping[str, Any]) -> Dict[str, Any]:
        """The ``schema_update`` object for a station's producers and consumers (§5.2)."""
        return schema_update_init(self.get(station["schema_name"]) if station.get("schema_name") else None)

    def create_schema(self, request: Dict[str, Any]) -> Dict[str, Any]:
        name = str(request.get("name") or "").lower()
        error = rules.validate_name(name, "Schema")
        if error:
            return {"error": error}
        schema_type = str(request.get("type") or "").lower()
        if schema_type not in SCHEMA_TYPES:
            return {"error": "unsupported schema type"}
        content = str(request.get("schema_content") or "")
        try:
            struct_name, descriptor = validate_schema_content(content, schema_type, name)
        except ValueError as exc:
            return {"error": str(exc)}
        existing = self.get(name)
        version = {
            "version_number": 1,
            "schema_content": content,
            "descriptor": descriptor,
            "message_struct_name": struct_name,
            "active": True,
            "created_by_username": str(request.get("created_by_username") or ""),
            "created_at": time.time(),
        }
        if existing is None:
            record = {"name": name, "type": schema_type, "created_by_username": version["created_by_username"], "versions": [version]}
        elif existing["type"] != schema_type:
            return {"error": f"{request.get('name')} already exist with type - {existing['type']}"}
        elif existing["versions"][-1]["schema_content"] == content:
            return {"error": f"{request.get('name')} already exists in the db with the same schema content"}
        else:  # §15.16: a new version is inserted inactive
            record = dict(existing)
            record["versions"] = existing["versions"] + [
                {**version, "version_number": len(existing["versions"]) + 1, "active": False}
            ]
        self._ctx.metadata.put(f"schema.{rules.internal_name(name)}", record)
        return {"error": ""}

    def attach_schema(self, request: Dict[str, Any]) -> str:
        station_name, error = rules.station_name_from_str(request.get("station_name"))
        if error:
            return error
        station = self._ctx.get_station(station_name)
        if station is None:
            return f"memphis: Station {request.get('station_name')} does not exist"
        name = str(request.get("name") or "").lower()
        schema = self.get(name) if name else None
        if schema is None:
            return f"Schema {request.get('name')} does not exist"
        self._ctx.put_station({**station, "schema_name": schema["name"]})
        self._publish(station["name"], 1, schema_update_init(schema))
        return ""

    def detach_schema(self, request: Dict[str, Any]) -> str:
        station_name, error = rules.station_name_from_str(request.get("station_name"))
        if error:
            return error
        station = self._ctx.get_station(station_name)
        if station is None:
            return f"station {request.get('station_name')} does not exist"
        self._ctx.put_station({**station, "schema_name": ""})
        self._publish(station["name"], 2, rules.empty_schema_update())
        return ""

    def _publish(self, station: str, update_type: int, init: Dict[str, Any]) -> None:
        subject = f"$memphis_schema_updates_{rules.internal_name(station)}"
        self._ctx.connection.publish(subject, json.dumps({"UpdateType": update_type, "init": init}).encode())
