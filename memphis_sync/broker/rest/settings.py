"""Settings of the local broker's REST ingress (:class:`RestSettings`) and the users it knows
(:class:`UserDirectory`).

The defaults are the Memphis REST gateway's (1.2.8): tokens live 15 minutes
(``JWT_EXPIRES_IN_MINUTES``), request bodies up to 4 MiB (the gateway's HTTP framework default).
The refresh token lives 300 minutes, the gateway's configured ``REFRESH_JWT_EXPIRES_IN_MINUTES``
(its code uses the access-token lifetime instead, which makes the refresh token useless).
"""

from __future__ import annotations

import hmac
from typing import Any, Dict, Mapping, Optional

import attrs

from ... import _defaults
from ..._timeouts import is_number

__all__ = ["RestSettings", "UserDirectory"]


def _positive(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not is_number(value) or not value > 0:
        raise ValueError(f"RestSettings.{attribute.name} must be a number > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RestSettings:
    """Limits and lifetimes of the REST ingress; every field is optional.

    Attributes:
        token_expiry: Seconds an access token lives when the request names no
            ``token_expiry_in_minutes`` (15 minutes).
        refresh_token_expiry: Seconds a refresh token lives when the request names no
            ``refresh_token_expiry_in_minutes`` (300 minutes).
        max_body: Largest request body in bytes (4 MiB); bigger ones get 413.
        request_timeout: Seconds a connection may stay silent while the request is read or the
            reply written (30); then it is closed.
        max_connections: Connections served at once (64); more get 503 at once.
        max_wait_ms: Largest ``batch_max_wait_time_ms`` a consume may ask (30000).
        consume_max_ack_time_ms: A consumed message not acknowledged within this is delivered
            again (30000, the ``FetchMessages`` default of memphis.go that the gateway uses).
        consume_max_msg_deliveries: Deliveries of a message to a REST consumer group (2): a
            reply that could not be written is delivered once more.
        ack_wait_sec: Seconds a produce waits for the broker's acknowledgement (15).
    """

    token_expiry: float = attrs.field(default=15 * 60.0, validator=_positive)
    refresh_token_expiry: float = attrs.field(default=300 * 60.0, validator=_positive)
    max_body: int = attrs.field(default=4 * 1024 * 1024, validator=_positive)
    request_timeout: float = attrs.field(default=30.0, validator=_positive)
    max_connections: int = attrs.field(default=64, validator=_positive)
    max_wait_ms: int = attrs.field(default=30000, validator=_positive)
    consume_max_ack_time_ms: int = attrs.field(default=30000, validator=_positive)
    consume_max_msg_deliveries: int = attrs.field(default=2, validator=_positive)
    ack_wait_sec: float = attrs.field(default=15.0, validator=_positive)


def _copy(users: Mapping[str, str]) -> Dict[str, str]:
    return dict(users)


@attrs.frozen(kw_only=True)
class UserDirectory:
    """The users of the local broker, as the REST ingress checks them.

    Token mode (``token`` set): any configured user name (any case) with the connection token.
    Password mode: a configured user (exact name) with its password. Both: the broker's account
    id only. Secrets are compared in constant time.

    Attributes:
        token: The connection token (``""`` in password mode).
        users: User name → password (the passwords are ignored in token mode).
        account_id: The one account id of the broker.
    """

    token: str
    users: Mapping[str, str] = attrs.field(converter=_copy)
    account_id: int = _defaults.MEMPHIS_ACCOUNT_ID

    @property
    def password_mode(self) -> bool:
        """True when users log in with passwords."""
        return not self.token

    def canonical(self, username: str) -> Optional[str]:
        """The configured spelling of ``username``, or None if there is no such user."""
        if username in self.users:
            return username
        if not self.password_mode:
            lowered = username.lower()
            for name in self.users:
                if name.lower() == lowered:
                    return name
        return None

    def verify(self, username: str, account_id: int, connection_token: str, password: str) -> Optional[str]:
        """The canonical user name if these credentials are good, else None."""
        name = self.canonical(username)
        if name is None or account_id != self.account_id:
            return None
        if self.password_mode:
            good = hmac.compare_digest(password.encode("utf-8"), self.users[name].encode("utf-8"))
        else:
            good = hmac.compare_digest(connection_token.encode("utf-8"), self.token.encode("utf-8"))
        return name if good else None

    def connect_kwargs(self, username: str) -> Dict[str, Any]:
        """Credentials for :func:`memphis_sync.connect` as ``username`` (a configured name)."""
        if self.password_mode:
            return {"username": username, "password": self.users[username], "account_id": self.account_id}
        return {"username": username, "connection_token": self.token}
