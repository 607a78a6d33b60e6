"""The JetStream context, :class:`JetStream`, and its ``$JS.API`` requests: streams, consumers,
stored messages and binding to pull consumers. Publishing comes from its base class
:class:`~memphis_sync.jetstream.publish.Publisher`.

API requests are core requests to ``$JS.API.<...>`` (or ``$JS.<domain>.API``); a reply with an
``error`` object becomes the exception that :func:`~memphis_sync.errors.jetstream_error` picks
from its table.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Mapping, Optional, Union

from .. import _defaults
from .._timeouts import check_timeout
from ..errors import JetStreamNotEnabledError, LocalProtocolError, NoRespondersError, jetstream_error
from ..nats.connection import Connection
from ..nats.protocol.encoder import check_int, validate_publish_subject, validate_subject
from .publish import Publisher
from .pull import PullSubscription, RawStreamMsg
from .types import ConsumerConfig, ConsumerInfo, StreamConfig, StreamInfo, _decode, validate_name

__all__ = ["JetStream"]

logger = logging.getLogger("memphis_sync.jetstream")  # the name users configure (kept from the flat layout)


class JetStream(Publisher):
    """JetStream API, publish and pull consumers over one shared connection. Thread-safe.

    Args:
        conn: a connected :class:`~memphis_sync.nats.connection.Connection`.
        domain: JetStream domain (API prefix ``$JS.<domain>.API``).
        prefix: explicit API prefix (overrides ``domain``).
        timeout: default seconds for API requests and publish acks (``_defaults.JS_API_TIMEOUT``).
        max_pending: pipelined publishes in flight before ``publish_async`` blocks
            (``_defaults.JS_PUB_MAX_PENDING``).
        max_block: longest ``publish_async`` waits for room in a full window, in seconds
            (default: the connection's ``max_block``; None = no limit).

    Raises:
        LocalProtocolError: a bad prefix, ``timeout``, ``max_pending`` or ``max_block``.
    """

    def __init__(
        self,
        conn: Connection,
        *,
        domain: Optional[str] = None,
        prefix: Optional[str] = None,
        timeout: float = _defaults.JS_API_TIMEOUT,
        max_pending: int = _defaults.JS_PUB_MAX_PENDING,
        max_block: Union[float, None, str] = "connection",
    ) -> None:
        if prefix is None:
            prefix = f"$JS.{domain}.API" if domain else _defaults.JS_API_PREFIX
        validate_publish_subject(prefix)
        if check_timeout(timeout) == 0:
            raise LocalProtocolError(f"timeout must be > 0, got {timeout!r}")
        self.conn = conn
        self.prefix = prefix
        self.timeout = timeout
        self._init_publisher(conn, max_pending, max_block)

    def __repr__(self) -> str:
        return f"<JetStream {self.prefix} on {self.conn!r} inflight={len(self._inflight)}>"

    # -- API requests --------------------------------------------------------------------

    def api_request(self, suffix: str, body: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Send ``<prefix>.<suffix>`` with a JSON body and return the decoded reply.

        Raises:
            JetStreamError: (or a subclass) the server answered with an error.
            JetStreamNotEnabledError: nothing answers JetStream API requests.
            RequestTimeout: no answer in time.
        """
        subject = f"{self.prefix}.{suffix}"
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        try:
            msg = self.conn.request(subject, payload, timeout=timeout or self.timeout)
        except NoRespondersError as exc:
            raise JetStreamNotEnabledError(f"JetStream is not available ({subject!r} has no responders)", code=503) from exc
        data = _decode(msg, suffix)
        error = data.get("error")
        if error is not None:
            raise jetstream_error(error)
        return data

    def account_info(self) -> Dict[str, Any]:
        """The account's JetStream usage and limits (``$JS.API.INFO``)."""
        return self.api_request("INFO")

    def add_stream(self, config: Union[StreamConfig, Mapping[str, Any]], **kwargs: Any) -> StreamInfo:
        """Create a stream (idempotent for an identical config).

        Raises:
            LocalProtocolError: a bad name (nothing was sent).
            StreamNameInUseError: a stream with that name and another config exists.
        """
        config = self._stream_config(config, kwargs)
        return StreamInfo.from_response(self.api_request(f"STREAM.CREATE.{config.name}", config.to_request()))

    def update_stream(self, config: Union[StreamConfig, Mapping[str, Any]], **kwargs: Any) -> StreamInfo:
        """Change a stream's configuration.

        Raises:
            LocalProtocolError: a bad name (nothing was sent).
            StreamNotFoundError: no such stream.
        """
        config = self._stream_config(config, kwargs)
        return StreamInfo.from_response(self.api_request(f"STREAM.UPDATE.{config.name}", config.to_request()))

    @staticmethod
    def _stream_config(config: Union[StreamConfig, Mapping[str, Any], None], kwargs: Dict[str, Any]) -> StreamConfig:
        if isinstance(config, StreamConfig):
            return config if not kwargs else StreamConfig(**{**_fields(config), **kwargs})
        return StreamConfig(**{**dict(config or {}), **kwargs})

    def stream_info(self, name: str) -> StreamInfo:
        """A stream's configuration and state.

        Raises:
            LocalProtocolError: a bad name (nothing was sent).
            StreamNotFoundError: no such stream.
        """
        validate_name(name, "stream name")
        return StreamInfo.from_response(self.api_request(f"STREAM.INFO.{name}"))

    def delete_stream(self, name: str) -> None:
        """Delete a stream and its messages.

        Raises:
            LocalProtocolError: a bad name (nothing was sent).
            StreamNotFoundError: no such stream.
        """
        validate_name(name, "stream name")
        self.api_request(f"STREAM.DELETE.{name}")

    def purge_stream(self, name: str) -> int:
        """Remove every message of a stream; returns how many were purged."""
        validate_name(name, "stream name")
        return int(self.api_request(f"STREAM.PURGE.{name}").get("purged", 0))

    def stream_names(self, subject: Optional[str] = None) -> List[str]:
        """Names of all streams, or of the ones that capture ``subject``.

        Raises:
            LocalProtocolError: a bad ``subject`` (nothing was sent).
        """
        if subject is not None:
            validate_subject(subject)
        names: List[str] = []
        offset = 0
        while True:
            body: Dict[str, Any] = {"offset": offset}
            if subject is not None:
                body["subject"] = subject
            data = self.api_request("STREAM.NAMES", body)
            page = data.get("streams") or []
            names.extend(page)
            offset += len(page)
            if not page or offset >= int(data.get("total", 0)):
                return names

    def consumer_names(self, stream: str) -> List[str]:
        """Names of the consumers of ``stream`` (durables included).

        Raises:
            StreamNotFoundError: no such stream.
        """
        validate_name(stream, "stream name")
        names: List[str] = []
        offset = 0
        while True:
            data = self.api_request(f"CONSUMER.NAMES.{stream}", {"offset": offset})
            page = data.get("consumers") or []
            names.extend(page)
            offset += len(page)
            if not page or offset >= int(data.get("total", 0)):
                return names

    def get_msg(self, stream: str, seq: Optional[int] = None, *, last_by_subject: Optional[str] = None) -> RawStreamMsg:
        """Read one stored message by sequence, or the last one on a subject.

        Raises:
            MessageNotFoundError: nothing stored there.
            LocalProtocolError: a bad stream name, ``seq`` or subject (nothing was sent).
        """
        validate_name(stream, "stream name")
        if (seq is None) == (last_by_subject is None):
            raise LocalProtocolError("give exactly one of seq or last_by_subject")
        if seq is not None:
            check_int(seq, "seq", 1)
        else:
            validate_subject(last_by_subject)  # type: ignore[arg-type]
        body: Dict[str, Any] = {"seq": seq} if seq is not None else {"last_by_subj": last_by_subject}
        return RawStreamMsg.from_response(self.api_request(f"STREAM.MSG.GET.{stream}", body)["message"])

    def delete_msg(self, stream: str, seq: int) -> None:
        """Delete one stored message.

        Raises:
            LocalProtocolError: a bad stream name or ``seq`` (nothing was sent).
        """
        validate_name(stream, "stream name")
        check_int(seq, "seq", 1)
        self.api_request(f"STREAM.MSG.DELETE.{stream}", {"seq": seq})

    def add_consumer(
        self,
        stream: str,
        config: Union[ConsumerConfig, Mapping[str, Any], None] = None,
        *,
        action: str = "",
        legacy_durable_api: bool = False,
        **kwargs: Any,
    ) -> ConsumerInfo:
        """Create (or, with ``action="update"``/``""``, update) a consumer on ``stream``.

        Uses ``CONSUMER.CREATE.<stream>.<name>[.<filter>]`` (server >= 2.9); with
        ``legacy_durable_api`` the older ``CONSUMER.DURABLE.CREATE.<stream>.<durable>``.

        Raises:
            StreamNotFoundError: no such stream.
            ConsumerNameInUseError: exists with another configuration (``action="create"``).
            LocalProtocolError: a bad name or config value (nothing was sent).
        """
        validate_name(stream, "stream name")
        if isinstance(config, ConsumerConfig):
            cfg = config if not kwargs else ConsumerConfig(**{**_fields(config), **kwargs})
        else:
            cfg = ConsumerConfig(**{**dict(config or {}), **kwargs})
        if action not in ("", "create", "update"):
            raise LocalProtocolError(f"action must be '', 'create' or 'update', got {action!r}")
        body: Dict[str, Any] = {"stream_name": stream, "config": cfg.to_request()}
        if action:
            body["action"] = action
        name = cfg.consumer_name
        if legacy_durable_api:
            if not cfg.durable_name:
                raise LocalProtocolError("the durable API needs durable_name")
            suffix = f"CONSUMER.DURABLE.CREATE.{stream}.{cfg.durable_name}"
        elif name is None:
            suffix = f"CONSUMER.CREATE.{stream}"
        elif cfg.filter_subject and ">" not in cfg.filter_subject and "*" not in cfg.filter_subject:
            suffix = f"CONSUMER.CREATE.{stream}.{name}.{cfg.filter_subject}"
        else:
            suffix = f"CONSUMER.CREATE.{stream}.{name}"
        return ConsumerInfo.from_response(self.api_request(suffix, body))

    def consumer_info(self, stream: str, name: str) -> ConsumerInfo:
        """A consumer's configuration and state.

        Raises:
            LocalProtocolError: a bad name (nothing was sent).
            ConsumerNotFoundError: no such consumer.
        """
        validate_name(stream, "stream name")
        validate_name(name, "consumer name")
        return ConsumerInfo.from_response(self.api_request(f"CONSUMER.INFO.{stream}.{name}"))

    def delete_consumer(self, stream: str, name: str) -> None:
        """Delete a consumer (its position is lost).

        Raises:
            LocalProtocolError: a bad name (nothing was sent).
            ConsumerNotFoundError: no such consumer.
        """
        validate_name(stream, "stream name")
        validate_name(name, "consumer name")
        self.api_request(f"CONSUMER.DELETE.{stream}.{name}")

    def pull_subscribe(self, stream: str, consumer: str) -> PullSubscription:
        """Bind to an existing pull consumer; fetch from the returned subscription.

        Raises:
            LocalProtocolError: a bad stream or consumer name (nothing was sent).
        """
        validate_name(stream, "stream name")
        validate_name(consumer, "consumer name")
        return PullSubscription(self.conn, self.prefix, stream, consumer)


def _fields(obj: Any) -> Dict[str, Any]:
    import attrs

    return attrs.asdict(obj, recurse=False)
