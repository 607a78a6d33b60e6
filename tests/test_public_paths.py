"""Every public import path of the flat layout still works and names the same object as the
layered tree, and the old module paths are the moved modules themselves (not copies)."""

from __future__ import annotations

import importlib
import logging
import sys

import pytest

#: ``module: names`` that users could import before the layered layout (read off its tree).
OLD_PUBLIC = {
    'memphis_sync': [
        'AuthorizationError', 'BrokerError', 'ConnectTimeout', 'Connection',
        'ConnectionClosedError', 'ConnectionStatus', 'Consumer', 'ConsumerNameInUseError',
        'ConsumerNotFoundError', 'DrainTimeout', 'FlushTimeout', 'ForkedConnectionError',
        'Headers', 'JetStreamError', 'JetStreamNotEnabledError', 'LocalProtocolError',
        'MaxBlockTimeout', 'Memphis', 'MemphisConnectError', 'MemphisError', 'MemphisHeaderError',
        'MemphisMessageTypeError', 'MemphisRequestError', 'MemphisSchemaError',
        'MemphisTimeoutError', 'MemphisValueError', 'Message', 'MessageAlreadyAckedError',
        'MessageNotFoundError', 'MessageTimeout', 'Msg', 'NetworkError', 'NoRespondersError',
        'NoStreamResponseError', 'OutboundBufferFullError', 'PayloadTooLargeError',
        'PermissionViolationError', 'Producer', 'ProtocolError', 'ReadError', 'ReconnectPolicy',
        'RemoteProtocolError', 'RequestTimeout', 'Retention', 'ServerAddress', 'ServerError',
        'SlowConsumerError', 'StaleConnectionError', 'Station', 'Storage', 'StreamNameInUseError',
        'StreamNotFoundError', 'Subscription', 'SubscriptionClosedError', 'TlsOptions',
        'UnconfirmedPublishWarning', 'WriteError', 'WrongLastSequenceError', '__version__',
        'connect', 'nats_connect',
    ],
    'memphis_sync.connection': [
        'Connection', 'ConnectionStatus', 'ServerAddress', 'TlsOptions', 'connect',
    ],
    'memphis_sync.protocol': [
        'CLIENT', 'CRLF', 'Connect', 'DEFAULT_MAX_PAYLOAD', 'EOF', 'Err', 'Event', 'Info',
        'MAX_CONTROL_LINE', 'MAX_HEADER_BLOCK', 'MAX_JSON_LINE', 'Msg', 'NEED_DATA', 'Ok', 'PING',
        'PONG', 'Parser', 'Ping', 'Pong', 'Pub', 'Role', 'SERVER', 'Sub', 'Unsub',
        'check_payload_size', 'encode_connect', 'encode_err', 'encode_headers', 'encode_hmsg',
        'encode_hpub', 'encode_info', 'encode_msg', 'encode_ping', 'encode_pong', 'encode_pub',
        'encode_sub', 'encode_unsub', 'validate_publish_subject', 'validate_queue',
        'validate_subject',
    ],
    'memphis_sync.headers': [
        'Headers', 'HeadersInit', 'validate_header_name', 'validate_header_value',
    ],
    'memphis_sync.js_api': [
        'AckPolicy', 'ConsumerConfig', 'ConsumerInfo', 'DeliverPolicy', 'DiscardPolicy', 'PubAck',
        'ReplayPolicy', 'RetentionPolicy', 'SequenceInfo', 'StorageType', 'StreamConfig',
        'StreamInfo', 'StreamState', 'validate_name',
    ],
    'memphis_sync.js_pull': [
        'PullSubscription', 'RawStreamMsg',
    ],
    'memphis_sync.js_msg': [
        'JsMsg', 'MsgMetadata',
    ],
    'memphis_sync.jetstream': [
        'JetStream',
    ],
    'memphis_sync.client': [
        'APP_ID', 'Memphis', 'connect',
    ],
    'memphis_sync.station': [
        'Retention', 'Station', 'Storage', 'check_int', 'enum_value', 'internal_name',
        'validate_name',
    ],
    'memphis_sync.producer': [
        'Producer', 'encode_message',
    ],
    'memphis_sync.consumer': [
        'ConsumeCallback', 'Consumer',
    ],
    'memphis_sync.message': [
        'Headers', 'Message', 'RESERVED_HEADER_PREFIX', 'to_wire_headers',
    ],
    'memphis_sync.schemas': [
        'SCHEMA_TYPES', 'Schema', 'validate_schema_name',
    ],
    'memphis_sync.transport': [
        'SocketStream', 'Stream', 'TlsStream', 'WRITE_DEADLINE', 'map_exceptions', 'open_tcp',
    ],
    'memphis_sync.subscription': [
        'MessageHandler', 'Subscription',
    ],
    'memphis_sync.errors': [
        'AuthorizationError', 'BrokerError', 'ConnectTimeout', 'ConnectionClosedError',
        'ConsumerNameInUseError', 'ConsumerNotFoundError', 'DrainTimeout', 'FlushTimeout',
        'ForkedConnectionError', 'HeartbeatTimeout', 'JETSTREAM_ERRORS', 'JetStreamError',
        'JetStreamNotEnabledError', 'LocalProtocolError', 'MaxBlockTimeout', 'MemphisConnectError',
        'MemphisError', 'MemphisHeaderError', 'MemphisRequestError', 'MemphisSchemaError',
        'MemphisTimeoutError', 'MessageAlreadyAckedError', 'MessageNotFoundError',
        'MessageTimeout', 'NetworkError', 'NoRespondersError', 'NoStreamResponseError',
        'OutboundBufferFullError', 'PayloadTooLargeError', 'PermissionViolationError',
        'ProtocolError', 'ReadError', 'RemoteProtocolError', 'RequestTimeout', 'SERVER_ERRORS',
        'ServerError', 'SlowConsumerError', 'StaleConnectionError', 'StreamNameInUseError',
        'StreamNotFoundError', 'SubscriptionClosedError', 'UnconfirmedPublishWarning',
        'WriteError', 'WrongLastSequenceError', 'error_from_server', 'jetstream_error',
    ],
    'memphis_sync.testing': [
        'memphis_broker', 'memphis_broker_factory', 'memphis_broker_function',
    ],
    'memphis_sync.cli': [
        'main',
    ],
    'memphis_sync.demo': [
        'DemoResult', 'default_timeout', 'format_report', 'run_demo',
    ],
    'memphis_sync.broker': [
        'ControlPlane', 'LocalBroker', 'NatsCluster', 'NatsServer', 'TlsFiles',
        'default_store_dir', 'find_nats_server',
    ],
    'memphis_sync.broker.local': [
        'LocalBroker', 'default_store_dir',
    ],
    'memphis_sync.broker.server': [
        'NatsCluster', 'NatsServer', 'TlsFiles', 'find_nats_server',
    ],
    'memphis_sync.broker.control_plane': [
        'ControlPlane', 'SERVICES',
    ],
}

#: Former flat modules and where they live now.
MOVED = {
    "memphis_sync.connection": "memphis_sync.nats.connection",
    "memphis_sync.protocol": "memphis_sync.nats.protocol",
    "memphis_sync.headers": "memphis_sync.nats.protocol.headers",
    "memphis_sync.transport": "memphis_sync.nats.transport",
    "memphis_sync.subscription": "memphis_sync.nats.subscription",
    "memphis_sync.js_api": "memphis_sync.jetstream.types",
    "memphis_sync.js_pull": "memphis_sync.jetstream.pull",
    "memphis_sync.js_msg": "memphis_sync.jetstream.msg",
    "memphis_sync.client": "memphis_sync.memphis.client",
    "memphis_sync.station": "memphis_sync.memphis.station",
    "memphis_sync.producer": "memphis_sync.memphis.producer",
    "memphis_sync.consumer": "memphis_sync.memphis.consumer",
    "memphis_sync.message": "memphis_sync.memphis.message",
    "memphis_sync.schemas": "memphis_sync.memphis.schemaverse",
}

_PAIRS = [(module, name) for module, names in OLD_PUBLIC.items() for name in names]


@pytest.mark.parametrize("module, name", _PAIRS, ids=[f"{m}.{n}" for m, n in _PAIRS])
def test_old_import_path_still_works(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(module), name)
    home = getattr(obj, "__module__", None)
    if isinstance(home, str) and home.startswith("memphis_sync") and hasattr(sys.modules.get(home), name):
        assert getattr(sys.modules[home], name) is obj  # one object, wherever it is imported from


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_module_is_the_new_module(old: str, new: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(new)
    package, _, leaf = old.rpartition(".")
    assert getattr(importlib.import_module(package), leaf) is importlib.import_module(new)


def test_settings_set_through_an_old_path_reach_the_new_module() -> None:
    import memphis_sync.connection as old
    import memphis_sync.nats.connection as new

    saved = new.exit_flush_timeout
    try:
        old.exit_flush_timeout = 1.25
        assert new.exit_flush_timeout == 1.25
    finally:
        new.exit_flush_timeout = saved


@pytest.mark.parametrize("module, logger_name", [
    ("memphis_sync.nats.connection", "memphis_sync.connection"),
    ("memphis_sync.nats.reconnect", "memphis_sync.connection"),
    ("memphis_sync.jetstream.api", "memphis_sync.jetstream"),
    ("memphis_sync.jetstream.publish", "memphis_sync.jetstream"),
    ("memphis_sync.jetstream.pull", "memphis_sync.js_pull"),
    ("memphis_sync.memphis.client", "memphis_sync.client"),
])
def test_logger_names_are_kept(module: str, logger_name: str) -> None:
    assert importlib.import_module(module).logger is logging.getLogger(logger_name)
