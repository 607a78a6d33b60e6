"""Connect-time checks of token mode: a nats-server authorization callout.

A Memphis broker refuses an unknown user when it connects (``memphis-wire.md`` §1.3); stock
nats-server, configured with a token, checks only the token. The local broker closes that gap with
nats-server's *auth callout* (nats-server 2.10+): the server is configured with one ordinary user,
the control plane's own, listed in ``auth_users`` (it is never called out for), and the public key
of an account nkey that only :class:`AuthCallout` holds. For every other client the server
publishes an authorization request (a JWT signed by the server) on ``$SYS.REQ.USER.AUTH`` and
waits, up to its ``authorization.timeout`` (2 s by default), for an authorization response, a JWT
signed with that account key. The response carries either a user JWT, which admits the client to
the global account ``$G`` with the permissions it names, or an error, which the client sees as the
usual ``-ERR 'Authorization Violation'`` (the reason goes to the server log only).

:class:`ConnectCheck` holds the Memphis rules; :class:`AuthCallout` answers the requests on a
subscription of a connection it is given (the control plane's, queue group
:data:`AUTH_CALLOUT_QUEUE`, so that several control planes share the work). JWTs are three
base64url parts (header, claims, signature) signed with ed25519 through the ``nkeys`` library.

While no callout service is subscribed (the control plane restarting, or the window between a
nats-server start and the control plane's first subscription), the server's request goes
unanswered and connecting clients are refused after the authorization timeout: a Memphis broker
too refuses connections while its metadata store is not ready. Connected clients are not affected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from typing import Any, Dict, Final, Mapping, Optional, Tuple

import attrs

from memphis_sync import _defaults
from memphis_sync.broker.rules import Refusal
from memphis_sync.errors import BrokerError, MemphisError
from memphis_sync.nats.connection import Connection
from memphis_sync.nats.protocol import Msg
from memphis_sync.nats.subscription import Subscription

__all__ = [
    "AuthCallout",
    "ConnectCheck",
    "AUTH_CALLOUT_SUBJECT",
    "AUTH_CALLOUT_QUEUE",
    "CONNECT_USER_TYPES",
    "UNCHECKED_NAME_MARKERS",
    "encode_jwt",
    "decode_jwt",
]

logger = logging.getLogger(__name__)

#: Where nats-server sends its authorization requests.
AUTH_CALLOUT_SUBJECT: Final = "$SYS.REQ.USER.AUTH"
#: Queue group of the callout subscriptions (one answer per request with several control planes).
AUTH_CALLOUT_QUEUE: Final = "memphis_sync_auth_callout"
#: User types that may connect (``"please use a user of type Root/Application..."`` otherwise).
CONNECT_USER_TYPES: Final = ("root", "application")
#: Client names that skip the user check (the token is still checked), as in the Memphis broker
#: (``server/parser.go``): the NATS CLI and the broker's internal services.
UNCHECKED_NAME_MARKERS: Final = (
    "NATS CLI",
    "MEMPHIS HTTP LOGGER",
    "MEMPHIS CLOUD FUNCTIONS ADMINISTRATION",
    "MEMPHIS CLOUD FUNCTIONS ENGINE",
    "MEMPHIS CLOUD CONNECTORS ENGINE",
)
#: The account a callout-admitted client is placed in (nats-server's global account).
GLOBAL_ACCOUNT: Final = "$G"
_SEP: Final = "::"  # "<connection_id>::<username>" names, "<username>::<token>" tokens
_TENANT_SUFFIX: Final = re.compile(r"\$([0-9]+)\Z")
_INSTALL_HINT: Final = 'pip install "memphis-sync[broker]" (it installs nkeys)'


# -- JWTs ----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_JWT_HEADER: Final = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}, separators=(",", ":")).encode())


class _AccountKey:
    """A fresh account nkey (ed25519, public key ``A...``); the seed never leaves the object."""

    def __init__(self) -> None:
        try:
            import nkeys
        except ImportError as exc:  # pragma: no cover - the broker extra installs it
            raise BrokerError(f"token mode of the local broker needs the nkeys package; install it with: {_INSTALL_HINT}") from exc
        seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_ACCOUNT)
        self._pair = nkeys.from_seed(bytearray(seed))
        self.public_key: str = self._pair.public_key.decode("ascii")

    def sign(self, data: bytes) -> bytes:
        return bytes(self._pair.sign(data))

    def __repr__(self) -> str:
        return f"<account nkey {self.public_key}>"


def encode_jwt(claims: Mapping[str, Any], key: Any) -> str:
    """A NATS JWT of ``claims``, issued (``iss``, ``iat``, ``jti`` set here) and signed by ``key``
    (an object with ``public_key`` and ``sign(bytes) -> bytes``)."""
    body: Dict[str, Any] = {**claims, "iss": key.public_key, "iat": int(time.time())}
    body.pop("jti", None)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    body["jti"] = base64.b32encode(digest).rstrip(b"=").decode("ascii")  # a unique id, as NATS JWTs have
    signed = f"{_JWT_HEADER}.{_b64(json.dumps(body, separators=(',', ':')).encode())}"
    return f"{signed}.{_b64(key.sign(signed.encode('ascii')))}"


def decode_jwt(token: str) -> Dict[str, Any]:
    """The claims of a JWT (the signature is not checked: see :meth:`AuthCallout.answer`).

    Raises:
        ValueError: not a JWT with a JSON object as claims.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("expected a JWT of three parts")
    try:
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:  # binascii.Error is a ValueError
        raise ValueError(f"unreadable JWT claims: {exc}") from exc
    if not isinstance(claims, dict):
        raise ValueError("the JWT claims are not an object")
    return claims


# -- the Memphis rules ---------------------------------------------------------------------


def _lower_keys(users: Mapping[str, str]) -> Dict[str, str]:
    return {name.lower(): user_type for name, user_type in users.items()}


@attrs.frozen(kw_only=True)
class ConnectCheck:
    """The token-mode connect rules of a Memphis broker (``memphis-wire.md`` §1.3).

    * A client whose name contains ``::`` (a Memphis SDK: ``"<connection_id>::<username>"``)
      presents the connection token as is; any other client (plain NATS) presents
      ``"<username>::<connection_token>"`` and only the part after ``::`` is compared.
    * Then, except for websocket and MQTT clients and names containing one of
      :data:`UNCHECKED_NAME_MARKERS`, the user must exist and be of a type in
      :data:`CONNECT_USER_TYPES`. The user name is the part of the name after ``::`` (lower-cased),
      or for a plain NATS client the part of the token before ``::`` (lower-cased, without a
      ``$<account_id>`` suffix); a name with more than one ``::`` is refused.

    Attributes:
        connection_token: The broker's token (kept out of the repr).
        users: User name (lower case) → user type (``root``, ``application``, ``management``).
        account_id: The account id a plain NATS client may append to its user name.
    """

    connection_token: str = attrs.field(repr=False)
    users: Mapping[str, str] = attrs.field(converter=_lower_keys)
    account_id: int = _defaults.MEMPHIS_ACCOUNT_ID

    def check(self, connect_opts: Mapping[str, Any], client_type: str = "nats") -> str:
        """Check one client's CONNECT options (``name``, ``auth_token``).

        Args:
            connect_opts: The ``connect_opts`` of the authorization request.
            client_type: ``nats``, ``websocket`` or ``mqtt`` (``client_info.type``).

        Returns:
            The Memphis user name the client connects as (``""`` where no user is checked).

        Raises:
            Refusal: the client is refused; the text says why (never quoting the token).
        """
        name = str(connect_opts.get("name") or "")
        token = str(connect_opts.get("auth_token") or "")
        native = _SEP in name
        if native:
            presented = token
        else:
            parts = token.split(_SEP)
            if len(parts) != 2:
                raise Refusal("a client whose name has no '::' must present the token as '<username>::<token>'")
            presented = parts[1]
        if not hmac.compare_digest(presented.encode("utf-8", "replace"), self.connection_token.encode()):
            raise Refusal("wrong connection token")
        if client_type != "nats" or any(marker in name for marker in UNCHECKED_NAME_MARKERS):
            return ""
        names = name.split(_SEP)
        if len(names) > 2:
            raise Refusal("missing username or connectionId")
        if native:
            username = names[1].lower()
        else:  # §15.21: the user of the token (Memphis 1.1+ loses it and refuses every such client)
            username = token.split(_SEP)[0].lower()
            suffix = _TENANT_SUFFIX.search(username)
            if suffix is not None and int(suffix.group(1)) == self.account_id:
                username = username[: suffix.start()]
        user_type = self.users.get(username)
        if user_type is None:
            raise Refusal("user doesn't exist")
        if user_type not in CONNECT_USER_TYPES:
            raise Refusal("please use a user of type Root/Application and not Management")
        return username


# -- the callout service -------------------------------------------------------------------


class AuthCallout:
    """Answers nats-server's authorization requests with the rules of a :class:`ConnectCheck`.

    Args:
        check: The rules.
        account: The account admitted clients are placed in (the global account).

    Attributes:
        issuer: The public account nkey the server must be configured with (``issuer``).
    """

    def __init__(self, check: ConnectCheck, *, account: str = GLOBAL_ACCOUNT) -> None:
        self._check = check
        self._account = account
        self._key = _AccountKey()
        self.issuer = self._key.public_key

    def server_config(self, auth_users: Tuple[str, ...]) -> Dict[str, Any]:
        """The nats-server ``authorization.auth_callout`` block; ``auth_users`` (configured users
        of the same ``authorization`` block) are never called out for."""
        return {"issuer": self.issuer, "auth_users": list(auth_users)}

    def subscribe(self, conn: Connection) -> Subscription:
        """Answer the requests arriving on ``conn`` (in queue group :data:`AUTH_CALLOUT_QUEUE`),
        on the subscription's callback thread. The caller flushes and, in the end, unsubscribes."""

        def on_request(msg: Msg) -> None:
            if not msg.reply:
                return
            answer = self.answer(bytes(msg.payload))
            if answer is None:
                return
            try:
                conn.publish(msg.reply, answer)
            except MemphisError as exc:  # the client then times out and is refused
                logger.warning("auth callout: the answer could not be sent: %s", exc)

        return conn.subscribe(AUTH_CALLOUT_SUBJECT, queue=AUTH_CALLOUT_QUEUE, callback=on_request)

    def answer(self, request_jwt: bytes) -> Optional[bytes]:
        """The authorization response to one request, or None if it is not one (unanswered).

        The request's signature is not checked: only nats-server can publish on
        :data:`AUTH_CALLOUT_SUBJECT` (it denies the subject to every client of the account) and a
        forged request could only obtain a response for a user key and server id of its own.
        """
        try:
            claims = decode_jwt(request_jwt.decode("ascii"))
            request = claims["nats"]
            if request.get("type") != "authorization_request":
                raise ValueError(f"not an authorization request: {request.get('type')!r}")
            user_key, server_id = str(request["user_nkey"]), str(request["server_id"]["id"])
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("auth callout: ignored a message that is not an authorization request: %s", exc)
            return None
        opts = request.get("connect_opts") or {}
        info = request.get("client_info") or {}
        response: Dict[str, Any] = {"type": "authorization_response", "version": 2}
        try:
            username = self._check.check(opts, str(info.get("type") or "nats"))
        except Refusal as exc:
            logger.info("auth callout: refused %r from %s: %s", opts.get("name"), info.get("host"), exc.text)
            response["error"] = exc.text
        else:
            response["jwt"] = self._user_jwt(user_key, username)
        return encode_jwt({"sub": user_key, "aud": server_id, "nats": response}, self._key).encode("ascii")

    def _user_jwt(self, user_key: str, username: str) -> str:
        """A user JWT admitting ``user_key`` to the account: no limits, everything allowed except
        seeing the other clients' authorization requests (their CONNECT options)."""
        user: Dict[str, Any] = {
            "pub": {},
            "sub": {"deny": [AUTH_CALLOUT_SUBJECT]},
            "subs": -1,
            "data": -1,
            "payload": -1,
            "type": "user",
            "version": 2,
        }
        claims: Dict[str, Any] = {"sub": user_key, "aud": self._account, "nats": user}
        if username:
            claims["name"] = username  # shown as the connection's user in /connz
        return encode_jwt(claims, self._key)

    def __repr__(self) -> str:
        return f"<AuthCallout issuer={self.issuer} {self._check!r}>"
