"""The REST ingress's bearer tokens: HS256 JWTs (PyJWT) that carry the user and the expiry only.

The Memphis REST gateway puts the user's password and connection token in clear into its JWTs
(a JWT is signed, not encrypted). Here a token carries ``username``, ``account_id``, ``iat``,
``exp`` and ``typ`` (``access`` or ``refresh``), signed with secrets made at random for each
:class:`TokenIssuer` (one per broker object, so tokens survive a broker restart but no other
broker accepts them). Access and refresh tokens have secrets of their own, as in the gateway,
so that one can never stand for the other.

The reply fields are honest: ``expires_in`` and ``refresh_token_expires_in`` are the lifetimes
in milliseconds (the gateway sends its expiry Unix time multiplied by 60000, and the access
token's expiry in both).
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Dict, Optional, Tuple

import attrs
import jwt

__all__ = ["Identity", "TokenError", "TokenIssuer"]

_ALGORITHM = "HS256"


class TokenError(Exception):
    """A token is missing, malformed, forged, of the wrong kind or expired (``str()`` says which)."""


@attrs.frozen
class Identity:
    """Who a valid token stands for."""

    username: str
    account_id: int


class TokenIssuer:
    """Issues and checks the tokens of one broker. Thread-safe (it holds no mutable state)."""

    def __init__(self) -> None:
        self._secrets = {"access": secrets.token_bytes(32), "refresh": secrets.token_bytes(32)}

    def _encode(self, identity: Identity, kind: str, lifetime: float, now: float) -> str:
        claims = {
            "username": identity.username,
            "account_id": identity.account_id,
            "iat": int(now),
            "exp": int(now + lifetime + 0.999),  # whole seconds, never shorter than asked
            "typ": kind,
        }
        return jwt.encode(claims, self._secrets[kind], algorithm=_ALGORITHM)

    def issue(self, identity: Identity, lifetime: float, refresh_lifetime: float) -> Dict[str, Any]:
        """A new token pair as the gateway's reply object (lifetimes in seconds)."""
        now = time.time()
        return {
            "jwt": self._encode(identity, "access", lifetime, now),
            "expires_in": int(lifetime * 1000),
            "jwt_refresh_token": self._encode(identity, "refresh", refresh_lifetime, now),
            "refresh_token_expires_in": int(refresh_lifetime * 1000),
        }

    def verify(self, token: str, kind: str = "access") -> Identity:
        """The identity of a valid token of ``kind``.

        Raises:
            TokenError: expired, forged, malformed, or of the other kind.
        """
        try:
            claims = jwt.decode(
                token, self._secrets[kind], algorithms=[_ALGORITHM],
                options={"require": ["exp", "username", "account_id", "typ"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError(f"the {kind} token has expired") from None
        except jwt.InvalidTokenError:
            raise TokenError(f"the {kind} token is not valid") from None
        username, account_id = claims.get("username"), claims.get("account_id")
        if claims.get("typ") != kind or not isinstance(username, str) or type(account_id) is not int:
            raise TokenError(f"the {kind} token is not valid")
        return Identity(username, account_id)


def bearer_token(authorization: Optional[str], query: Optional[str]) -> Tuple[Optional[str], str]:
    """The token of a request, from ``Authorization: Bearer <jwt>`` or else ``?authorization=``
    (as the gateway reads them), and what was wrong when there is none."""
    if authorization:
        parts = authorization.split(" ")
        if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1]:
            return None, "the Authorization header must be 'Bearer <token>'"
        return parts[1], ""
    if query:
        return query, ""
    return None, "no token: send 'Authorization: Bearer <token>' or ?authorization=<token>"
