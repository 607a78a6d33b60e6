"""The NATS wire protocol, sans-IO: events, the parser, the encoders and headers. Nothing here
touches a socket, a thread, a clock or TLS (``tests/test_layering.py`` checks it).

* :mod:`.events`: the limits, :class:`Role`, ``NEED_DATA``/``EOF`` and one event class per wire
  operation (:class:`Info`, :class:`Msg`, :class:`Ping`...).
* :mod:`.parser`: the push :class:`Parser`, bytes in, events out (its module comment is the
  theory of operation and the invariants).
* :mod:`.encoder`: subject and queue validation and the pure ``encode_*`` functions.
* :mod:`.headers`: :class:`Headers`, ordered and multi-valued.

Every public name of the four modules is importable from here.
"""

from .encoder import (
    INT_MAX,
    check_int,
    check_payload_size,
    encode_connect,
    encode_err,
    encode_headers,
    encode_hmsg,
    encode_hpub,
    encode_info,
    encode_msg,
    encode_ping,
    encode_pong,
    encode_pub,
    encode_sub,
    encode_unsub,
    validate_publish_subject,
    validate_queue,
    validate_subject,
)
from .events import (
    CLIENT,
    CRLF,
    DEFAULT_MAX_PAYLOAD,
    EOF,
    MAX_CONTROL_LINE,
    MAX_HEADER_BLOCK,
    MAX_JSON_LINE,
    NEED_DATA,
    PING,
    PONG,
    SERVER,
    Connect,
    Err,
    Event,
    Info,
    Msg,
    Ok,
    Ping,
    Pong,
    Pub,
    Role,
    Sub,
    Unsub,
)
from .headers import Headers, HeadersInit, validate_header_name, validate_header_value
from .parser import Parser

__all__ = [
    # events and limits
    "MAX_CONTROL_LINE", "DEFAULT_MAX_PAYLOAD", "MAX_HEADER_BLOCK", "MAX_JSON_LINE", "CRLF", "PING", "PONG",
    "Role", "CLIENT", "SERVER", "NEED_DATA", "EOF", "Info", "Msg", "Ping", "Pong", "Ok", "Err", "Connect",
    "Pub", "Sub", "Unsub", "Event",
    # parser
    "Parser",
    # encoder
    "validate_subject", "validate_publish_subject", "validate_queue", "INT_MAX", "check_int", "check_payload_size", "encode_connect",
    "encode_pub", "encode_hpub", "encode_headers", "encode_sub", "encode_unsub", "encode_ping", "encode_pong",
    "encode_info", "encode_msg", "encode_hmsg", "encode_err",
    # headers
    "Headers", "HeadersInit", "validate_header_name", "validate_header_value",
]
