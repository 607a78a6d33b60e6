"""Schemaverse: client-side validation of produced messages against a station's schema (§10).

The broker sends the schema in producer/consumer creation replies and on
``$memphis_schema_updates_<station>``. Validation uses the standard library of each format,
installed as optional extras and imported only when a station uses that format:
``jsonschema`` (json), ``fastavro`` (avro), ``graphql-core`` (graphql), ``protobuf``.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, Callable, Mapping, Optional, Set

import attrs

from .. import _defaults
from ..errors import MemphisMessageTypeError, MemphisRequestError, MemphisSchemaError, MemphisValueError

__all__ = ["Schema", "SCHEMA_TYPES", "validate_schema_name", "creation_body", "raise_for_creation_reply"]

SCHEMA_TYPES = _defaults.MEMPHIS_SCHEMA_TYPES
_PREFIX = "Schema validation has failed: "


def validate_schema_name(name: Any) -> str:
    """The client-side schema-name check of memphis-py ``create_schema`` (same texts)."""
    if not isinstance(name, str) or name == "":
        raise MemphisValueError("Schema name cannot be empty")
    if len(name) > 128:
        raise MemphisValueError("Schema name should be under 128 characters")
    if any(not (c.isascii() and (c.islower() or c.isdigit() or c in "_-.")) for c in name):
        raise MemphisValueError("Only alphanumeric and the '_', '-', '.' characters are allowed in the schema name")
    if not name[0].isalnum() or not name[-1].isalnum():
        raise MemphisValueError("Schema name cannot start or end with a non-alphanumeric character")
    return name


def creation_body(schema_name: str, schema_type: str, schema_path: str, username: str) -> Mapping[str, Any]:
    """Check the arguments of :meth:`Memphis.create_schema`, read the file, and return the
    ``$memphis_schema_creations`` body (§10.5).

    Raises:
        MemphisValueError: a bad name or type, or the file cannot be read.
    """
    validate_schema_name(schema_name)
    if schema_type not in SCHEMA_TYPES:
        raise MemphisValueError(f"schema type not supported: {schema_type!r}; use one of {', '.join(SCHEMA_TYPES)}")
    if isinstance(schema_path, (int, float)) or not isinstance(schema_path, (str, bytes, os.PathLike)):  # open(5) takes fd 5
        raise MemphisValueError(f"schema_path must be a path (a str), got {type(schema_path).__name__}: {schema_path!r}")
    try:
        with open(schema_path, encoding="utf-8") as handle:
            content = handle.read()
    except (OSError, ValueError, TypeError) as exc:  # missing, not UTF-8, not a path
        raise MemphisValueError(f"cannot read schema file {schema_path!r}: {exc}") from exc
    return {
        "name": schema_name,
        "type": schema_type,
        "created_by_username": username,
        "schema_content": content,
        "message_struct_name": "",
    }


def raise_for_creation_reply(schema_name: str, reply: str) -> None:
    """Raise for a schema-creation reply with an error (a schema that exists already is none).

    Raises:
        MemphisRequestError: the broker refused the schema.
    """
    try:
        error = (json.loads(reply) or {}).get("error", "") if reply else ""
    except (ValueError, AttributeError):
        error = reply
    if error and "already exists" not in error:
        raise MemphisRequestError(f"creating schema {schema_name!r}: {error}")


def _need(module: str, extra: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise MemphisSchemaError(
            f"this station uses a {extra} schema: install the {module!r} package (pip install memphis-sync[{extra}])"
        ) from exc


def _as_json(message: Any, what: str) -> Any:
    if isinstance(message, (bytes, bytearray, memoryview)):
        try:
            return json.loads(bytes(message))
        except ValueError as exc:
            raise MemphisSchemaError(f"{_PREFIX}Expecting {what} format: {exc}") from exc
    if isinstance(message, dict):
        return message
    raise MemphisMessageTypeError(f"{_PREFIX}Unsupported message type: {type(message).__name__}")


@attrs.define(eq=False)
class Schema:
    """A station's active schema version and its validator.

    Attributes:
        name / type / version: as the broker sent them.
        content: the schema text.
    """

    name: str
    type: str
    version: int
    content: str
    descriptor: str = ""
    message_struct_name: str = ""
    _validator: Optional[Callable[[Any], bytes]] = attrs.field(default=None, repr=False)
    _decoder: Optional[Callable[[bytes], Any]] = attrs.field(default=None, repr=False)

    @classmethod
    def from_update(cls, init: Mapping[str, Any]) -> "Schema":
        """Build from a ``SchemaUpdateInit`` object (§10.1).

        Raises:
            MemphisSchemaError: unknown type, bad schema, or the format's library is missing.
        """
        active = init.get("active_version") or {}
        schema = cls(
            name=str(init.get("schema_name", "")),
            type=str(init.get("type", "")),
            version=int(active.get("version_number") or 0),
            content=str(active.get("schema_content", "")),
            descriptor=str(active.get("descriptor", "")),
            message_struct_name=str(active.get("message_struct_name", "")),
        )
        builder = getattr(schema, f"_build_{schema.type}", None)
        if builder is None:
            raise MemphisSchemaError(f"unknown schema type {schema.type!r} for schema {schema.name!r}")
        builder()
        return schema

    def serialize(self, message: Any) -> bytes:
        """Validate ``message`` and return the bytes to send.

        Raises:
            MemphisSchemaError: the message does not match (text starts with
                ``"Schema validation has failed: "``).
        """
        assert self._validator is not None
        return self._validator(message)

    def deserialize(self, data: bytes) -> Any:
        """Decode a received payload per the schema type."""
        assert self._decoder is not None
        return self._decoder(data)

    # -- builders ------------------------------------------------------------------------

    def _build_json(self) -> None:
        jsonschema = _need("jsonschema", "json")
        try:
            schema = json.loads(self.content)
            validator = jsonschema.validators.validator_for(schema)(schema)
        except Exception as exc:
            raise MemphisSchemaError(f"invalid json schema {self.name!r}: {exc}") from exc

        def validate(message: Any) -> bytes:
            obj = _as_json(message, "Json")
            error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
            if error is not None:
                raise MemphisSchemaError(f"{_PREFIX}{error.message}")
            return bytes(message) if isinstance(message, (bytes, bytearray, memoryview)) else json.dumps(obj).encode("utf-8")

        self._validator = validate
        self._decoder = lambda data: json.loads(data)

    def _build_avro(self) -> None:
        fastavro = _need("fastavro", "avro")
        try:
            parsed = fastavro.parse_schema(json.loads(self.content))
        except Exception as exc:
            raise MemphisSchemaError(f"invalid avro schema {self.name!r}: {exc}") from exc

        def validate(message: Any) -> bytes:
            obj = _as_json(message, "Avro")
            try:
                fastavro.validate(obj, parsed, raise_errors=True)
            except Exception as exc:
                raise MemphisSchemaError(f"{_PREFIX}{exc}") from exc
            return bytes(message) if isinstance(message, (bytes, bytearray, memoryview)) else json.dumps(obj).encode("utf-8")

        self._validator = validate
        self._decoder = lambda data: json.loads(data)

    def _build_graphql(self) -> None:
        graphql = _need("graphql", "graphql")
        try:
            schema = graphql.build_schema(self.content)
        except Exception as exc:
            raise MemphisSchemaError(f"invalid graphql schema {self.name!r}: {exc}") from exc

        def validate(message: Any) -> bytes:
            if isinstance(message, (bytes, bytearray, memoryview)):
                text = bytes(message).decode("utf-8", "replace")
            elif isinstance(message, str):
                text = message
            elif isinstance(message, graphql.language.ast.DocumentNode):
                text = str(message.loc.source.body)
            else:
                raise MemphisMessageTypeError(f"{_PREFIX}Unsupported message type: {type(message).__name__}")
            try:
                document = graphql.parse(text)
            except Exception as exc:
                raise MemphisSchemaError(f"{_PREFIX}Invalid message format, expected GraphQL") from exc
            errors = graphql.validate(schema, document)
            if errors:
                raise MemphisSchemaError(f"{_PREFIX}{'; '.join(str(e) for e in errors)}")
            return text.encode("utf-8")

        self._validator = validate
        self._decoder = lambda data: bytes(data).decode("utf-8")

    def _build_protobuf(self) -> None:
        _need("google.protobuf", "protobuf")
        message_class = _protobuf_class(self.name, self.version, self.descriptor, self.message_struct_name)

        def validate(message: Any) -> bytes:
            if isinstance(message, (bytes, bytearray, memoryview)):
                data = bytes(message)
                try:
                    message_class.FromString(data)
                except Exception as exc:
                    raise MemphisSchemaError(f"{_PREFIX}Invalid message format, expecting protobuf") from exc
                return data
            if isinstance(message, dict):
                from google.protobuf import json_format

                try:
                    serialized: bytes = json_format.ParseDict(message, message_class()).SerializeToString()
                    return serialized
                except Exception as exc:
                    raise MemphisSchemaError(f"{_PREFIX}{exc}") from exc
            serialize = getattr(message, "SerializeToString", None)
            if callable(serialize):
                data = bytes(serialize())
                try:
                    message_class.FromString(data)
                except Exception as exc:
                    raise MemphisSchemaError(f"{_PREFIX}Invalid message format, expecting protobuf") from exc
                return data
            raise MemphisMessageTypeError(f"{_PREFIX}Unsupported message type: {type(message).__name__}")

        self._validator = validate
        self._decoder = lambda data: message_class.FromString(bytes(data))


def _protobuf_class(name: str, version: int, descriptor: str, struct_name: str) -> Any:
    """The message class of a protobuf schema version, from its descriptor (§10.1).

    Raises:
        MemphisSchemaError: an empty or bad descriptor, or no message ``struct_name`` in it.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    what = f"protobuf schema {name!r} (version {version})"
    if not descriptor:
        raise MemphisSchemaError(
            f"{what} came without a descriptor: the broker did not compile its .proto file, so no "
            "message can be checked against it; use a schema created on a broker with a protobuf compiler"
        )
    try:
        raw = base64.b64decode(descriptor, validate=True)
    except (ValueError, TypeError) as exc:
        raise MemphisSchemaError(f"the descriptor of {what} is not base64: {exc}") from exc
    try:
        files = list(descriptor_pb2.FileDescriptorSet.FromString(raw).file)
    except Exception as exc:
        raise MemphisSchemaError(f"the descriptor of {what} is not a protobuf FileDescriptorSet: {exc}") from exc
    if not files:
        raise MemphisSchemaError(f"the descriptor of {what} holds no .proto file")
    if not struct_name:
        raise MemphisSchemaError(f"{what} names no message (empty message_struct_name)")
    proto = files[0]  # the schema's own file, as the SDKs use it
    full_name = f"{proto.package}.{struct_name}" if proto.package else struct_name
    pool = descriptor_pool.DescriptorPool()
    try:
        _add_file(pool, proto, {f.name: f for f in files[1:]}, set())
        message = pool.FindMessageTypeByName(full_name)
    except _MissingImport as exc:
        raise MemphisSchemaError(f"the descriptor of {what} cannot be loaded: {exc}") from None
    except KeyError as exc:
        raise MemphisSchemaError(f"the descriptor of {what} has no message {full_name!r}") from exc
    except Exception as exc:
        raise MemphisSchemaError(f"the descriptor of {what} cannot be loaded: {exc}") from exc
    return message_factory.GetMessageClass(message)


class _MissingImport(Exception):
    pass


def _add_file(pool: Any, proto: Any, others: Mapping[str, Any], added: Set[str]) -> None:
    """Add ``proto`` to ``pool`` after its imports: the other files of the set (a descriptor made
    with ``--include_imports``) or protobuf's own well-known types (``google/protobuf/*.proto``)."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    added.add(proto.name)
    for dependency in proto.dependency:
        if dependency in added:
            continue
        if dependency in others:
            _add_file(pool, others[dependency], others, added)
            continue
        known = descriptor_pb2.FileDescriptorProto()
        try:  # a well-known type: importing its module registers it in the default pool
            if not (dependency.startswith("google/protobuf/") and dependency.endswith(".proto")):
                raise ImportError(dependency)
            __import__(dependency[: -len(".proto")].replace("/", ".") + "_pb2")
            descriptor_pool.Default().FindFileByName(dependency).CopyToProto(known)
        except Exception:
            raise _MissingImport(f"{proto.name!r} imports {dependency!r}, which the descriptor does not include") from None
        _add_file(pool, known, others, added)
    pool.Add(proto)
