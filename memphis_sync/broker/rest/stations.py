"""The station routes of the REST ingress: produce one, produce a batch, consume a batch.

As the gateway (``handlers/producer.go``, ``handlers/consumer.go``), messages are produced by a
producer named ``rest-gateway`` of the user's own Memphis connection, so the broker validates
them against the station's schema and a station that does not exist yet is created, as for any
SDK producer. Unlike the gateway:

* the request headers become message headers *without* the hop-by-hop ones, the credentials
  (``Authorization``, ``Cookie``...) and the HTTP framing (``Content-Length``, ``Expect``);
  a ``msg-id`` header is the produce's idempotency id (a batch's message ``i`` gets
  ``<msg-id>-<i>``), so a retried request is not stored twice;
* 200 means stored: the reply waits for the broker's acknowledgement;
* a batch produces every message and answers with a result per message;
* consumed messages are acknowledged only once the reply has been written; a reply that could
  not be written is negatively acknowledged, and the messages are delivered again;
* a payload that is not UTF-8 also travels as ``message_base64`` (the gateway mangles it).
"""

from __future__ import annotations

import base64
import json
import logging
from concurrent.futures import Future
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from werkzeug.wrappers import Request, Response

from ...errors import (
    MemphisError,
    MemphisHeaderError,
    MemphisRequestError,
    MemphisSchemaError,
    MemphisTimeoutError,
    MemphisValueError,
    NetworkError,
    NoRespondersError,
    PayloadTooLargeError,
)
from ...memphis.message import Message
from .fields import BadField, json_reply, number_field, read_body, request_fields
from .server import RAW_HEADERS_KEY
from .sessions import Sessions
from .settings import RestSettings

__all__ = ["StationRoutes", "message_headers", "PRODUCER_NAME", "CONSUMER_GROUP_SUFFIX"]

logger = logging.getLogger("memphis_sync.broker.rest")

#: The producer name of every REST produce, and the suffix of every REST consumer group.
PRODUCER_NAME = "rest-gateway"
CONSUMER_GROUP_SUFFIX = "-rest-gateway"

#: Request headers that never become message headers (lower case): hop-by-hop (RFC 9110
#: §7.6.1), credentials, and the framing of the HTTP body.
DROPPED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "authorization", "proxy-authorization", "cookie",
    "content-length", "expect",
})

#: Content types of ``produce/single``: the gateway's (any ``text/...``, ``application/json``,
#: ``application/x-protobuf``), plus ``application/octet-stream`` for raw bytes.
BINARY_TYPES = ("application/x-protobuf", "application/octet-stream")


def message_headers(raw: List[Tuple[str, str]]) -> Tuple[Dict[str, str], Optional[str]]:
    """The message headers of a request's headers, and its ``msg-id`` (or None).

    Raises:
        MemphisHeaderError: a header name that starts with ``$memphis``.
    """
    connection_listed: Set[str] = set()
    for name, value in raw:
        if name.lower() == "connection":
            connection_listed.update(token.strip().lower() for token in value.split(","))
    headers: Dict[str, str] = {}
    msg_id: Optional[str] = None
    for name, value in raw:
        lowered = name.lower()
        if lowered.startswith("$memphis"):
            raise MemphisHeaderError(f"header {name!r}: keys in headers should not start with $memphis")
        if lowered in DROPPED_HEADERS or lowered in connection_listed:
            continue
        try:  # the stdlib reads header bytes as Latin-1; clients send UTF-8
            value = value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
        if lowered in ("msg-id", "nats-msg-id"):
            msg_id = value
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers, msg_id


def _failure(exc: BaseException) -> Tuple[int, str]:
    """The HTTP status and the error text of a failed produce or fetch."""
    if isinstance(exc, PayloadTooLargeError):
        return 413, str(exc)
    if isinstance(exc, MemphisRequestError) and isinstance(exc.__cause__, NoRespondersError):
        return 503, str(exc)  # the control plane is not there (yet): try again
    if isinstance(exc, (MemphisSchemaError, MemphisHeaderError, MemphisValueError, MemphisRequestError)):
        return 400, str(exc)
    if isinstance(exc, (MemphisTimeoutError, NetworkError)):
        return 503, str(exc)
    if isinstance(exc, MemphisError):
        return 500, str(exc)
    logger.error("REST ingress: unexpected failure", exc_info=exc)
    return 500, "Server error"


class _AckAfterWrite:
    """A WSGI body that acks its messages once the server has written it, and nacks them if it
    never was (the client went away): the WSGI server asks for the next chunk only after
    writing the previous one, and always calls ``close()``."""

    def __init__(self, body: bytes, messages: List[Message]) -> None:
        self._body = body
        self._messages = messages
        self._written = False

    def __iter__(self) -> Iterator[bytes]:
        yield self._body
        self._written = True

    def close(self) -> None:
        for msg in self._messages:
            try:
                msg.ack() if self._written else msg.nack()
            except MemphisError as exc:
                logger.warning("REST ingress: %s of a consumed message failed: %s", "ack" if self._written else "nack", exc)
        if not self._written and self._messages:
            logger.info("REST ingress: a consume reply was not written; %d message(s) will be delivered again", len(self._messages))


class StationRoutes:
    """The ``/stations/{station}/...`` routes."""

    def __init__(self, sessions: Sessions, settings: RestSettings) -> None:
        self._sessions = sessions
        self._settings = settings

    # -- produce -------------------------------------------------------------------------

    def produce_single(self, request: Request, *, user: str, station: str) -> Response:
        """``POST /stations/{station}/produce/single``: the raw body is the message."""
        mimetype = request.mimetype
        if not ("text" in mimetype or "application/json" in mimetype or mimetype in BINARY_TYPES):
            return json_reply(415, {
                "success": False,
                "error": f"unsupported content type {request.content_type or '(none)'!r}: send text/*, "
                         "application/json, application/x-protobuf or application/octet-stream",
            })
        payload = read_body(request)  # over max_body: 413
        try:
            headers, msg_id = message_headers(request.environ.get(RAW_HEADERS_KEY, []))
            memphis = self._sessions.get(user)
            memphis.produce(
                station, PRODUCER_NAME, payload, headers=headers, msg_id=msg_id, ack_wait_sec=self._settings.ack_wait_sec
            )
        except Exception as exc:
            status, text = _failure(exc)
            return json_reply(status, {"success": False, "error": text})
        return json_reply(200, {"success": True, "error": None})

    def produce_batch(self, request: Request, *, user: str, station: str) -> Response:
        """``POST /stations/{station}/produce/batch``: a JSON array of objects, one message each."""
        if request.mimetype != "application/json":
            return json_reply(415, {
                "success": False,
                "error": f"unsupported content type {request.content_type or '(none)'!r}: send application/json",
            })
        try:
            items = json.loads(read_body(request) or b"null")
        except ValueError as exc:
            return json_reply(400, {"success": False, "error": f"the body is not JSON: {exc}"})
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            return json_reply(400, {"success": False, "error": "the body must be a JSON array of objects (one per message)"})
        try:
            headers, msg_id = message_headers(request.environ.get(RAW_HEADERS_KEY, []))
            producer = self._sessions.get(user).producer(station, PRODUCER_NAME)
        except Exception as exc:
            status, text = _failure(exc)
            return json_reply(status, {"success": False, "error": [text]})
        sent: List[Tuple[int, Any]] = []  # (index, future or exception)
        for index, item in enumerate(items):
            payload = json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            try:
                future = producer.produce(
                    payload, headers=headers, nonblocking=True, ack_wait_sec=self._settings.ack_wait_sec,
                    msg_id=None if not msg_id else f"{msg_id}-{index}",
                )
                sent.append((index, future))
            except Exception as exc:
                sent.append((index, exc))
        results: List[Dict[str, Any]] = []
        statuses: Set[int] = set()
        for index, outcome in sent:
            error = outcome if isinstance(outcome, BaseException) else _outcome(outcome)
            if error is None:
                results.append({"index": index, "success": True, "error": None})
                continue
            status, text = _failure(error)
            statuses.add(status)
            results.append({"index": index, "success": False, "error": text})
        errors = [r["error"] for r in results if not r["success"]]
        if not errors:
            return json_reply(200, {"success": True, "error": None, "sent": len(items), "fail": 0, "results": results})
        status = max(statuses) if any(s >= 500 for s in statuses) else 400
        body = {"success": False, "error": errors, "sent": len(items) - len(errors), "fail": len(errors), "errors": errors, "results": results}
        return json_reply(status, body)

    # -- consume -------------------------------------------------------------------------

    def consume_batch(self, request: Request, *, user: str, station: str) -> Response:
        """``POST /stations/{station}/consume/batch``: fetch up to ``batch_size`` messages."""
        fields = request_fields(request)
        if fields is None:
            return json_reply(400, {"success": False, "error": "Invalid request body"})
        name = fields.get("consumer_name")
        if not isinstance(name, str) or not name:
            return json_reply(400, {"success": False, "error": "Consumer name is required"})
        group = fields.get("consumer_group") or ""
        if not isinstance(group, str):
            return json_reply(400, {"success": False, "error": "consumer_group must be a string"})
        try:
            batch_size = int(number_field(fields, "batch_size")) or 10
            wait_ms = int(number_field(fields, "batch_max_wait_time_ms")) or 5000
        except BadField as exc:
            return json_reply(400, {"success": False, "error": str(exc)})
        if wait_ms > self._settings.max_wait_ms or wait_ms < 0:
            return json_reply(400, {"success": False, "error": f"batch_max_wait_time_ms must be 1..{self._settings.max_wait_ms}"})
        try:
            memphis = self._sessions.get(user)
            messages = memphis.fetch_messages(
                station, name, consumer_group=f"{group}{CONSUMER_GROUP_SUFFIX}" if group else PRODUCER_NAME,
                batch_size=batch_size, batch_max_time_to_wait_ms=max(wait_ms, 100),
                max_ack_time_ms=self._settings.consume_max_ack_time_ms,
                max_msg_deliveries=self._settings.consume_max_msg_deliveries,
            )
        except Exception as exc:
            status, text = _failure(exc)
            return json_reply(status, {"success": False, "error": text})
        body = json.dumps([_message_object(m) for m in messages], ensure_ascii=False).encode("utf-8")
        return Response(_AckAfterWrite(body, messages), status=200, mimetype="application/json",
                        headers={"Content-Length": str(len(body))}, direct_passthrough=True)


def _outcome(future: "Future[Any]") -> Optional[BaseException]:
    try:
        return future.exception()  # each has its deadline (ack_wait_sec)
    except Exception as exc:  # cancelled
        return exc


def _message_object(msg: Message) -> Dict[str, Any]:
    data = bytes(msg.get_data())
    headers = {k: v for k, v in msg.get_headers().items() if not k.startswith("$memphis")}
    try:
        return {"message": data.decode("utf-8"), "headers": headers}
    except UnicodeDecodeError:
        return {
            "message": data.decode("utf-8", "replace"),
            "headers": headers,
            "message_base64": base64.b64encode(data).decode("ascii"),
        }
