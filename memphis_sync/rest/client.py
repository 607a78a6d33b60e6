"""A blocking, thread-safe client of the Memphis REST gateway (and of the local broker's ingress).

For places where only HTTP reaches the broker. :class:`RestClient` logs in
(``POST /auth/authenticate``), keeps its token fresh by itself (``POST /auth/refreshToken``
before it expires, a new login when the refresh token is gone or refused), and produces and
consumes through ``/stations/{station}/...``. One client may be shared by any number of
threads: urllib3's pool carries the requests, a lock guards the token.

Retries (urllib3's ``Retry``): a request that never reached the gateway (connection refused)
is retried always; a 5xx or a dropped connection only where doing it twice is harmless: logins,
and produces that carry a ``msg_id`` (the broker drops the repeat). A 401 on a token the client
thought valid (a restarted gateway) gets one new login and one more try.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type
from urllib.parse import quote, urlsplit

import urllib3

from .. import _defaults
from .._timeouts import is_number
from ..errors import (
    MemphisConnectError,
    MemphisValueError,
    RequestTimeout,
    RestAuthError,
    RestError,
    RestSchemaError,
    RestServerError,
)
from ..memphis.message import HeadersArg
from .encoding import RestMessage, decode_messages, encode_body, http_headers

__all__ = ["RestClient"]

logger = logging.getLogger("memphis_sync.rest")

_RETRY_STATUSES = frozenset({500, 502, 503, 504})


def _error_class(status: int, text: str) -> Type[RestError]:
    if status == 401:
        return RestAuthError
    if status == 400 and "schema validation" in text.lower():
        return RestSchemaError
    if status >= 500:
        return RestServerError
    return RestError


def _reply_text(reply: Any) -> str:
    if isinstance(reply, dict):
        parts = [reply.get(k) for k in ("error", "message") if reply.get(k)]
        return "; ".join(p if isinstance(p, str) else json.dumps(p) for p in parts) or json.dumps(reply)
    return str(reply)[:500]


class RestClient:
    """A client of a Memphis REST gateway. Thread-safe; use it as a context manager or call
    :meth:`close`.

    Args:
        url: The gateway, ``http://host:port`` (``https://`` for TLS); a URL without a port
            means 4444 (``_defaults.REST_GATEWAY_PORT``).
        username: The Memphis user (``user$account`` also works, as with the gateway).
        connection_token: Token-mode credential (exclusive with ``password``).
        password: Password-mode credential.
        account_id: The account (tenant) id of password mode (0: the gateway's default, 1).
        timeout: Seconds for connecting and for each reply (a consume adds its wait).
        retries: Retries of a request where they are safe (see the module text).
        token_expiry_minutes: Lifetime asked for access tokens (the real gateway wants a whole
            number; the local ingress takes fractions).
        refresh_token_expiry_minutes: Lifetime asked for refresh tokens.
        ca_certs: CA bundle (PEM file) for ``https://``.
        pool_size: Connections kept per host (the threads that may send at once).

    Raises:
        MemphisValueError: a bad argument.
    """

    def __init__(
        self,
        url: str,
        username: str,
        *,
        connection_token: str = "",
        password: str = "",
        account_id: int = 0,
        timeout: float = 10.0,
        retries: int = 2,
        token_expiry_minutes: float = 15,
        refresh_token_expiry_minutes: float = 300,
        ca_certs: Optional[str] = None,
        pool_size: int = 10,
    ) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MemphisValueError(f"url must be http://host[:port] or https://host[:port], got {url!r}")
        if not isinstance(username, str) or not username:
            raise MemphisValueError("username must be a non-empty str")
        if bool(connection_token) == bool(password):
            raise MemphisValueError("give exactly one of connection_token and password")
        numbers = (
            (timeout, "timeout"), (token_expiry_minutes, "token_expiry_minutes"),
            (refresh_token_expiry_minutes, "refresh_token_expiry_minutes"),
        )
        for value, what in numbers:
            if not is_number(value) or not value > 0:
                raise MemphisValueError(f"{what} must be a number > 0, got {value!r}")
        if type(retries) is not int or retries < 0:
            raise MemphisValueError(f"retries must be an int >= 0, got {retries!r}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self._base = f"{parts.scheme}://{host}:{parts.port or _defaults.REST_GATEWAY_PORT}{parts.path.rstrip('/')}"
        self._credentials: Dict[str, Any] = {"username": username}
        if connection_token:
            self._credentials["connection_token"] = connection_token
        else:
            self._credentials["password"] = password
        if account_id:
            self._credentials["account_id"] = account_id
        self._lifetimes = (float(token_expiry_minutes), float(refresh_token_expiry_minutes))
        self._timeout = float(timeout)
        self._retries = retries
        self._pool = urllib3.PoolManager(
            num_pools=4, maxsize=pool_size, block=False, ca_certs=ca_certs,
            cert_reqs="CERT_REQUIRED" if parts.scheme == "https" else None,
        )
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._expires = 0.0  # monotonic time to refresh by
        self._refresh_token: Optional[str] = None
        self._refresh_expires = 0.0

    def __repr__(self) -> str:
        return f"<RestClient {self._base} user={self._credentials['username']!r}>"

    def __enter__(self) -> "RestClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections (idempotent)."""
        self._pool.clear()

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return self._base

    # -- HTTP ------------------------------------------------------------------------------

    def _retry(self, safe: bool) -> urllib3.Retry:
        return urllib3.Retry(
            total=self._retries, connect=self._retries, read=self._retries if safe else 0,
            status=self._retries if safe else 0, other=0, redirect=0, allowed_methods=None,
            status_forcelist=_RETRY_STATUSES if safe else (), backoff_factor=0.1, raise_on_status=False,
        )

    def _send(
        self, method: str, path: str, body: Optional[bytes], headers: List[Tuple[str, str]], *,
        safe: bool, read_timeout: Optional[float] = None,
    ) -> Tuple[int, Any]:
        """One request (with its retries): (status, decoded reply)."""
        fields = urllib3.HTTPHeaderDict()
        for name, value in headers:
            fields.add(name, value)
        timeout = urllib3.Timeout(connect=self._timeout, read=read_timeout or self._timeout)
        url = self._base + path
        try:
            response = self._pool.request(
                method, url, body=body, headers=fields, retries=self._retry(safe), timeout=timeout, redirect=False,
            )
        except urllib3.exceptions.MaxRetryError as exc:
            reason = exc.reason
            timed_out = (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ConnectTimeoutError)
            # NewConnectionError (refused, unreachable) derives from ConnectTimeoutError
            if isinstance(reason, timed_out) and not isinstance(reason, urllib3.exceptions.NewConnectionError):
                raise RequestTimeout(f"{method} {path}: no reply from the REST gateway at {self._base} in time ({reason})") from exc
            raise MemphisConnectError(f"{method} {path}: the REST gateway at {self._base} cannot be reached: {reason}") from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise RequestTimeout(f"{method} {path}: no reply from the REST gateway at {self._base} in time ({exc})") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise MemphisConnectError(f"{method} {path}: the REST gateway at {self._base} failed: {exc}") from exc
        data = response.data
        try:
            reply: Any = json.loads(data) if data else None
        except ValueError:
            reply = data.decode("utf-8", "replace")
        return response.status, reply

    def _raise_for(self, what: str, status: int, reply: Any) -> None:
        if 200 <= status < 300:
            return
        text = _reply_text(reply)
        raise _error_class(status, text)(f"{what}: HTTP {status}: {text}", status=status, reply=reply)

    # -- tokens ----------------------------------------------------------------------------

    def authenticate(self) -> None:
        """Log in now (the other calls do it by themselves when needed).

        Raises:
            RestAuthError: wrong credentials.
            RestError / MemphisConnectError / RequestTimeout: the gateway failed.
        """
        with self._lock:
            self._login()

    def _login(self) -> None:
        body = dict(self._credentials)
        body["token_expiry_in_minutes"], body["refresh_token_expiry_in_minutes"] = self._lifetimes
        self._store_tokens(self._post_json("/auth/authenticate", body, "authenticate"))

    def _post_json(self, path: str, body: Dict[str, Any], what: str) -> Dict[str, Any]:
        status, reply = self._send("POST", path, json.dumps(body).encode(), [("Content-Type", "application/json")], safe=True)
        self._raise_for(what, status, reply)
        if not isinstance(reply, dict) or not isinstance(reply.get("jwt"), str):
            raise RestError(f"{what}: the gateway's reply has no jwt: {reply!r:.200}", status=status, reply=reply)
        return reply

    def _store_tokens(self, reply: Dict[str, Any]) -> None:
        now = time.monotonic()
        self._token = reply["jwt"]
        self._expires = now + self._refresh_after(self._lifetimes[0] * 60, reply.get("expires_in"))
        refresh = reply.get("jwt_refresh_token")
        self._refresh_token = refresh if isinstance(refresh, str) and refresh else None
        self._refresh_expires = now + self._refresh_after(self._lifetimes[1] * 60, reply.get("refresh_token_expires_in"))

    @staticmethod
    def _refresh_after(asked: float, expires_in_ms: Any) -> float:
        """Seconds until a token should be renewed: its lifetime (the one asked for, or the
        reply's ``expires_in`` when that is a shorter duration; the real gateway sends a
        meaningless number there) less a margin of a fifth, at most a minute."""
        lifetime = asked
        if is_number(expires_in_ms) and 0 < expires_in_ms / 1000 < asked:
            lifetime = expires_in_ms / 1000
        return lifetime - min(lifetime / 5, 60.0)

    def _bearer(self) -> str:
        with self._lock:
            now = time.monotonic()
            if self._token is not None and now < self._expires:
                return self._token
            if self._refresh_token is not None and now < self._refresh_expires:
                body: Dict[str, Any] = {"jwt_refresh_token": self._refresh_token}
                body["token_expiry_in_minutes"], body["refresh_token_expiry_in_minutes"] = self._lifetimes
                try:
                    self._store_tokens(self._post_json("/auth/refreshToken", body, "refresh the token"))
                    logger.debug("REST token refreshed")
                    assert self._token is not None
                    return self._token
                except RestAuthError:
                    logger.info("REST refresh token refused; logging in again")
            self._login()
            assert self._token is not None
            return self._token

    def _forget(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token, self._refresh_token = None, None

    def _station_call(
        self, what: str, station: str, route: str, body: bytes, headers: List[Tuple[str, str]], *,
        safe: bool, read_timeout: Optional[float] = None,
    ) -> Tuple[int, Any]:
        if not isinstance(station, str) or not station:
            raise MemphisValueError(f"station must be a non-empty str, got {station!r}")
        path = f"/stations/{quote(station, safe='')}/{route}"
        for attempt in (1, 2):
            token = self._bearer()
            status, reply = self._send(
                "POST", path, body, [*headers, ("Authorization", f"Bearer {token}")], safe=safe, read_timeout=read_timeout,
            )
            if status != 401 or attempt == 2:
                break
            self._forget(token)  # refused before anything was done: log in again, once
        self._raise_for(what, status, reply)
        return status, reply

    # -- stations --------------------------------------------------------------------------

    def produce(
        self, station: str, message: Any, *, headers: HeadersArg = None, msg_id: Optional[str] = None,
        content_type: Optional[str] = None,
    ) -> None:
        """Produce one message (``produce/single``); returns once the gateway answered 200.

        Args:
            station: The station (created by the broker if missing, as for any producer).
            message: ``bytes``, ``str``, ``dict`` (JSON) or a protobuf message.
            headers: Message headers (a dict or :class:`~memphis_sync.Headers`).
            msg_id: Idempotency id (the ``msg-id`` header): the broker drops repeats, which makes
                retries safe.
            content_type: Overrides the content type chosen from the message's type.

        Raises:
            MemphisHeaderError / MemphisMessageTypeError: bad headers or message (nothing sent).
            RestSchemaError: the station's schema refused the message.
            RestAuthError: the credentials were refused.
            RestServerError: the gateway or the broker failed (retry with the same ``msg_id``).
            RestError: any other HTTP error (415 content type, 413 too large, 400 bad name...).
            MemphisConnectError / RequestTimeout: no (timely) reply.
        """
        body, ctype = encode_body(message, content_type)
        hdrs = [("Content-Type", ctype), *self._extra(headers, msg_id)]
        self._station_call(f"produce to {station!r}", station, "produce/single", body, hdrs, safe=bool(msg_id))

    def produce_batch(
        self, station: str, messages: Sequence[Dict[str, Any]], *, headers: HeadersArg = None, msg_id: Optional[str] = None,
    ) -> None:
        """Produce JSON objects, one message each (``produce/batch``), with the same headers.

        Args:
            station: The station.
            messages: JSON objects (dicts), the only kind the gateway's batch takes.
            headers: Headers of every message.
            msg_id: Makes the batch idempotent: message ``i`` gets the id ``<msg_id>-<i>`` on the
                local broker's ingress (the real gateway 1.2.8 would give them all ``msg_id``:
                only the first would be stored).

        Raises:
            RestSchemaError / RestServerError / RestError: some messages failed; ``results``
                says which (when the gateway tells: the local ingress does), the others were
                stored.
            MemphisValueError: ``messages`` is not a list of dicts (nothing sent).
            MemphisHeaderError / RestAuthError / MemphisConnectError / RequestTimeout: as for
                :meth:`produce`.
        """
        if isinstance(messages, (str, bytes, dict)) or not all(isinstance(m, dict) for m in messages):
            raise MemphisValueError("messages must be a sequence of dicts (JSON objects)")
        body = json.dumps(list(messages)).encode("utf-8")
        hdrs = [("Content-Type", "application/json"), *self._extra(headers, msg_id)]
        self._station_call(f"produce a batch to {station!r}", station, "produce/batch", body, hdrs, safe=bool(msg_id))

    def consume_batch(
        self, station: str, consumer_name: str, *, consumer_group: str = "", batch_size: int = 10,
        batch_max_wait_time_ms: int = 5000,
    ) -> List[RestMessage]:
        """Fetch up to ``batch_size`` messages (``consume/batch``); the gateway acknowledges them.

        Args:
            station: The station.
            consumer_name: The consumer's name.
            consumer_group: The group (the gateway appends ``-rest-gateway``; empty:
                ``rest-gateway``).
            batch_size: Most messages.
            batch_max_wait_time_ms: Longest wait for the batch (the reply timeout adds it).

        Returns:
            The messages (empty when none came in time).

        Raises:
            RestError / RestAuthError / RestServerError: HTTP errors (a consume is never
                retried once sent; the local ingress delivers the messages of a reply it could
                not write again).
            MemphisConnectError / RequestTimeout: no (timely) reply.
        """
        for value, what in ((batch_size, "batch_size"), (batch_max_wait_time_ms, "batch_max_wait_time_ms")):
            if type(value) is not int or value < 1:
                raise MemphisValueError(f"{what} must be an int >= 1, got {value!r}")
        fields = {
            "consumer_name": consumer_name, "consumer_group": consumer_group,
            "batch_size": batch_size, "batch_max_wait_time_ms": batch_max_wait_time_ms,
        }
        _, reply = self._station_call(
            f"consume from {station!r}", station, "consume/batch", json.dumps(fields).encode(),
            [("Content-Type", "application/json")], safe=False, read_timeout=self._timeout + batch_max_wait_time_ms / 1000,
        )
        try:
            return decode_messages(reply)
        except ValueError as exc:
            raise RestError(f"consume from {station!r}: {exc}", status=200, reply=reply) from exc

    def status(self) -> bool:
        """True when ``GET /monitoring/status`` answers ``{"status": "ok"}``."""
        try:
            status, reply = self._send("GET", "/monitoring/status", None, [], safe=True)
        except (MemphisConnectError, RequestTimeout):
            return False
        return status == 200 and isinstance(reply, dict) and reply.get("status") == "ok"

    @staticmethod
    def _extra(headers: HeadersArg, msg_id: Optional[str]) -> List[Tuple[str, str]]:
        pairs = http_headers(headers)
        if msg_id is not None:
            if not isinstance(msg_id, str) or not msg_id or "\r" in msg_id or "\n" in msg_id:
                raise MemphisValueError(f"msg_id must be a non-empty str without CR/LF, got {msg_id!r}")
            pairs.append(("msg-id", msg_id))
        return pairs
