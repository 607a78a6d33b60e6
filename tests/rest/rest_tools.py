"""Helpers of the HTTP tests: raw requests (stdlib http.client), logins, draining a station."""

from __future__ import annotations

import http.client as httplib
import json
import uuid
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import memphis_sync
from memphis_sync.broker.local import LocalBroker
from memphis_sync.memphis.message import Message

Body = Union[bytes, str, Dict[str, Any], List[Any], None]


def http(
    base_url: str, method: str, path: str, body: Body = None, headers: Optional[Mapping[str, str]] = None, timeout: float = 20.0,
) -> Tuple[int, Dict[str, str], Any]:
    """One raw HTTP request (stdlib http.client): (status, headers, decoded JSON or text)."""
    host, port = base_url.split("//", 1)[1].rsplit(":", 1)
    conn = httplib.HTTPConnection(host, int(port), timeout=timeout)
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        payload: Optional[bytes] = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        payload = body.encode()
    else:
        payload = body
    try:
        conn.request(method, path, body=payload, headers=hdrs)
        response = conn.getresponse()
        data = response.read()
        try:
            decoded: Any = json.loads(data)
        except ValueError:
            decoded = data.decode("utf-8", "replace")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, decoded
    finally:
        conn.close()


def login(broker: LocalBroker, **fields: Any) -> Dict[str, Any]:
    """``POST /auth/authenticate`` as root (fields override); the 200 reply."""
    body = {"username": "root", "connection_token": broker.connection_token, **fields}
    status, _, reply = http(broker.rest_url, "POST", "/auth/authenticate", body)
    assert status == 200, reply
    return reply  # type: ignore[no-any-return]


def bearer(token: str) -> Dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def drain(memphis: memphis_sync.Memphis, station: str, group: Optional[str] = None, wait_ms: int = 300) -> List[Message]:
    """Every message of ``station`` for a new consumer group (acked), fetched over NATS."""
    group = group or f"g{uuid.uuid4().hex[:8]}"
    out: List[Message] = []
    while True:
        batch = memphis.fetch_messages(station, group, consumer_group=group, batch_size=100, batch_max_time_to_wait_ms=wait_ms)
        if not batch:
            return out
        for msg in batch:
            msg.ack()
        out.extend(batch)


def json_schema_file(tmp_path: Path) -> str:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
    }))
    return str(path)
