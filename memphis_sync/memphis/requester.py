"""The control-plane requester: management requests to the broker's ``$memphis_*`` subjects.

One per :class:`~memphis_sync.memphis.client.Memphis` connection. It holds what every request
needs (the connection, the Memphis user and this connection's id), sends a JSON body and
re-sends it ``timeout_retries`` times when no reply comes in time (wire contract §3), and reads
the replies: an error text, or a creation reply's JSON. Station, Producer, Consumer and
Message get it through their constructors.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Dict, Mapping, Optional

from ..errors import ConnectionClosedError, MemphisRequestError, NoRespondersError, RequestTimeout
from ..nats.connection import Connection
from .validate import check_int

__all__ = ["Requester", "APP_ID"]

logger = logging.getLogger("memphis_sync.client")  # the name users configure (kept from the flat layout)

#: One id per process, sent as ``app_id`` in creation requests (memphis-py does the same).
APP_ID = str(uuid.uuid4())


class Requester:
    """Sends the control-plane requests of one connection; thread-safe (the connection is).

    Attributes:
        conn: the NATS connection.
        username: the Memphis user, sent in the request bodies.
        connection_id: this connection's id, sent in the request bodies and message headers.
    """

    def __init__(self, conn: Connection, username: str, connection_id: str) -> None:
        self.conn = conn
        self.username = username
        self.connection_id = connection_id

    def __repr__(self) -> str:
        return f"<Requester user={self.username!r} connection_id={self.connection_id!r}>"

    def checked_conn(self) -> Connection:
        """The connection, if it is not closed.

        Raises:
            ConnectionClosedError: the connection is closed.
        """
        conn = self.conn
        if conn.is_closed():
            raise ConnectionClosedError("Connection is dead")
        return conn

    def request(self, subject: str, body: Mapping[str, Any], timeout: float, timeout_retries: int) -> str:
        """Send a control-plane request; re-send it up to ``timeout_retries`` times on timeout.

        Returns:
            The reply as text.

        Raises:
            MemphisValueError: a bad ``timeout_retries``.
            MemphisRequestError: nothing serves ``subject`` (not a Memphis broker).
            RequestTimeout: no reply after every try.
            ConnectionClosedError: the connection is closed.
        """
        check_int(timeout_retries, "timeout_retries", 0)
        conn = self.checked_conn()
        payload = json.dumps(body).encode("utf-8")
        last: Optional[BaseException] = None
        for _ in range(timeout_retries + 1):
            try:
                msg = conn.request(subject, payload, timeout=timeout)
            except RequestTimeout as exc:
                last = exc
                logger.warning("request on %s timed out after %s s; retrying", subject, timeout)
                continue
            except NoRespondersError as exc:
                raise MemphisRequestError(
                    f"no responders on {subject!r}: is this a Memphis broker (not a plain NATS server)?"
                ) from exc
            return msg.payload.decode("utf-8", "replace")
        raise RequestTimeout(
            f"no reply on {subject!r} after {timeout_retries + 1} tries of {timeout} s (timeout)"
        ) from last

    @staticmethod
    def raise_for_text(reply: str, *, ignore: str, what: str) -> None:
        """Raise MemphisRequestError for a non-empty error reply, unless it contains ``ignore``."""
        if reply and ignore not in reply:
            raise MemphisRequestError(f"{what}: {reply}")

    @staticmethod
    def parse_creation_reply(reply: str, what: str) -> Dict[str, Any]:
        """A creation reply: JSON (1.x brokers), ``""`` (old brokers: success) or an error text.

        Raises:
            MemphisRequestError: an error text, or a JSON reply with an ``error``.
        """
        if reply == "":
            return {}
        try:
            data = json.loads(reply)
        except ValueError:
            raise MemphisRequestError(f"{what}: {reply}") from None
        if not isinstance(data, dict):
            raise MemphisRequestError(f"{what}: unexpected reply {reply[:200]!r}")
        error = data.get("error")
        if error:
            raise MemphisRequestError(f"{what}: {error}")
        return data

    def publish_json(self, subject: str, body: Mapping[str, Any]) -> None:
        """Publish ``body`` as JSON to ``subject`` (no reply expected)."""
        self.checked_conn().publish(subject, json.dumps(body).encode("utf-8"))

    def notify(self, title: str, msg: str, failed_msg: str, not_type: str) -> None:
        """Publish an alert to ``$memphis_notifications`` (§11.3)."""
        self.publish_json("$memphis_notifications", {"title": title, "msg": msg, "type": not_type, "code": failed_msg})
