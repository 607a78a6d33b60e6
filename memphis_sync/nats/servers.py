"""Where to connect: server addresses (the pool) and TLS options.

Addresses are parsed once, up front, so a bad URL fails in the caller; the pool then grows
with servers learned from INFO ``connect_urls``.
"""

from __future__ import annotations

import re
import ssl
from typing import List, Optional, Sequence, Union
from urllib.parse import unquote, urlsplit

import attrs

from .. import _defaults
from ..errors import LocalProtocolError
from .tlsfiles import build_tls_context

__all__ = ["TlsOptions", "ServerAddress", "parse_servers", "redact_url", "REDACTED"]

#: What replaces a password or token wherever a URL is shown (errors, reprs, logs).
REDACTED = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def redact_url(text: str) -> str:
    """``text`` (a server URL, well-formed or not) with the secret of its userinfo replaced.

    ``nats://user:pass@host`` becomes ``nats://user:***@host`` and the token form
    ``nats://TOKEN@host`` becomes ``nats://***@host``. Everything before the *last* ``@`` is
    taken as userinfo (as ``urlsplit`` does), so a password holding ``@``, ``/`` or ``:`` is
    hidden whole; text without ``@`` is returned as is. Use it for every URL that is shown.
    """
    match = _SCHEME.match(text)
    head = match.end() if match else 0
    at = text.rfind("@", head)
    if at < 0:
        return text
    user, colon, _ = text[head:at].partition(":")
    if colon and not any(c in user for c in "/?#"):
        return f"{text[:head]}{user}:{REDACTED}{text[at:]}"
    return f"{text[:head]}{REDACTED}{text[at:]}"

#: Default ports of the WebSocket schemes (those of HTTP and HTTPS, as browsers and nats.go).
_WS_PORTS = {"ws": 80, "wss": 443}
_SCHEMES = ("nats", "tls", *_WS_PORTS)


@attrs.frozen(kw_only=True)
class TlsOptions:
    """TLS settings. Server verification is on by default.

    Attributes:
        ca_file: CA bundle that signs the server certificate (default: the system store).
        cert_file: client certificate, for mutual TLS.
        key_file: private key of ``cert_file``.
        verify: verify the server's certificate chain and host name (keep on outside tests).
        hostname: name to verify instead of the URL's host (useful for IP addresses).
        context: a ready ``ssl.SSLContext``; overrides the file options.
    """

    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    verify: bool = True
    hostname: Optional[str] = None
    context: Optional[ssl.SSLContext] = None

    def build_context(self) -> ssl.SSLContext:
        """Return the ``SSLContext`` these options describe, after checking every file.

        Raises:
            MemphisConnectError: a file is missing, unreadable, not PEM, or holds the wrong
                thing (a key that does not match the certificate, a CA given as the client
                certificate, a client certificate given as the CA...); the message names the
                option and the path.
        """
        if self.context is not None:
            return self.context
        return build_tls_context(self.ca_file, self.cert_file, self.key_file, self.verify)


@attrs.define(repr=False)
class ServerAddress:
    """One server of the pool."""

    host: str
    port: int
    tls: bool = False
    discovered: bool = False
    user: Optional[str] = None
    password: Optional[str] = None
    token: Optional[str] = None
    tls_name: Optional[str] = None
    auth_failures: int = 0
    #: NATS over WebSocket (``ws://``, ``wss://``: see :mod:`memphis_sync.nats.websocket`)
    websocket: bool = False
    #: the HTTP path (and query) of the WebSocket upgrade
    path: str = "/"

    @classmethod
    def parse(cls, text: str, *, discovered: bool = False, default_port: int = _defaults.NATS_PORT) -> "ServerAddress":
        """Parse ``nats://[user:pass@]host:port``, ``tls://...``, ``ws://...``, ``wss://...``
        (NATS over WebSocket, default ports 80 and 443, optional path), ``host:port`` or ``host``."""
        if not isinstance(text, str):
            raise LocalProtocolError(f"a server address must be a str, got {type(text).__name__}")
        raw = text.strip()
        if not raw:
            raise LocalProtocolError("empty server address")
        if "://" not in raw:
            raw = "nats://" + raw
        shown = redact_url(text.strip())
        # urlsplit's own errors quote pieces of the URL (a password holding "/" ends up in the
        # "port"): they are replaced by ours, raised outside the except so nothing chains them
        try:
            parts = urlsplit(raw)
        except ValueError:
            parts = None
        if parts is None:
            raise LocalProtocolError(f"malformed server address {shown!r}")
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise LocalProtocolError(f"unsupported server URL scheme {parts.scheme!r} in {shown!r}")
        websocket = scheme in _WS_PORTS
        if websocket:
            default_port = _WS_PORTS[scheme]
        port: Optional[int] = None
        try:
            port = parts.port or default_port
        except ValueError:
            pass
        if port is None:
            raise LocalProtocolError(f"bad port in server address {shown!r}")
        host = parts.hostname
        if not host:
            raise LocalProtocolError(f"no host in server address {shown!r}")
        user = password = token = None
        if parts.username is not None:
            if parts.password is not None:
                user, password = unquote(parts.username), unquote(parts.password)
            else:
                token = unquote(parts.username)
        path = "/"
        if websocket:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(
            host=host, port=port, tls=scheme in ("tls", "wss"), discovered=discovered, user=user, password=password,
            token=token, websocket=websocket, path=path,
        )

    def __repr__(self) -> str:
        return f"ServerAddress({self.redacted_url!r}, discovered={self.discovered})"

    @property
    def url(self) -> str:
        """``scheme://host:port``, without credentials (safe to show)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.websocket:
            return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}{'' if self.path == '/' else self.path}"
        return f"{'tls' if self.tls else 'nats'}://{host}:{self.port}"

    @property
    def redacted_url(self) -> str:
        """:attr:`url` with the user and a redacted password or token, if any."""
        scheme, rest = self.url.split("://", 1)
        if self.token is not None:
            return f"{scheme}://{REDACTED}@{rest}"
        if self.user is not None:
            return f"{scheme}://{self.user}:{REDACTED}@{rest}"
        return self.url


def parse_servers(servers: Union[str, Sequence[str]]) -> List[ServerAddress]:
    """The addresses of a ``servers`` argument: a str (comma-separated) or a list of str.

    Raises:
        LocalProtocolError: not a str or a list of str, none given, or a bad address (a
            whitespace or control character inside one included: ``urlsplit`` would drop it).
    """
    if isinstance(servers, str):
        items = [s for s in servers.split(",") if s.strip()]
    elif isinstance(servers, (list, tuple)) and all(isinstance(s, str) for s in servers):
        items = list(servers)
    else:
        raise LocalProtocolError(f"servers must be a str or a list of str, got {type(servers).__name__}")
    if not items:
        raise LocalProtocolError("no server address given")
    addresses = [ServerAddress.parse(s) for s in items]
    for item, address in zip(items, addresses):
        _check_address(item.strip(), address.host)
    return addresses


def _check_address(text: str, host: str) -> None:
    if any(c.isspace() or not c.isprintable() for c in text):
        raise LocalProtocolError(f"server address {len(text)} characters long has a whitespace or control character")
    try:
        host.encode("idna")
    except UnicodeError:
        raise LocalProtocolError(f"server address has a host that is not a valid host name: {host!r}") from None
