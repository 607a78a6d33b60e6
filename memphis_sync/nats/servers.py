"""Where to connect: server addresses (the pool) and TLS options.

Addresses are parsed once, up front, so a bad URL fails in the caller; the pool then grows
with servers learned from INFO ``connect_urls``.
"""

from __future__ import annotations

import ssl
from typing import List, Optional, Sequence, Union
from urllib.parse import unquote, urlsplit

import attrs

from .. import _defaults
from ..errors import LocalProtocolError

__all__ = ["TlsOptions", "ServerAddress", "parse_servers"]


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
        """Return the ``SSLContext`` these options describe."""
        if self.context is not None:
            return self.context
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file or None)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file or None)
        return ctx


@attrs.define
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

    @classmethod
    def parse(cls, text: str, *, discovered: bool = False, default_port: int = _defaults.NATS_PORT) -> "ServerAddress":
        """Parse ``nats://[user:pass@]host:port``, ``tls://...``, ``host:port`` or ``host``."""
        raw = text.strip()
        if not raw:
            raise LocalProtocolError("empty server address")
        if "://" not in raw:
            raw = "nats://" + raw
        parts = urlsplit(raw)
        scheme = parts.scheme.lower()
        if scheme not in ("nats", "tls"):
            raise LocalProtocolError(f"unsupported server URL scheme {parts.scheme!r} in {text!r}")
        try:
            port = parts.port or default_port
        except ValueError as exc:
            raise LocalProtocolError(f"bad port in server address {text!r}") from exc
        host = parts.hostname
        if not host:
            raise LocalProtocolError(f"no host in server address {text!r}")
        user = password = token = None
        if parts.username is not None:
            if parts.password is not None:
                user, password = unquote(parts.username), unquote(parts.password)
            else:
                token = unquote(parts.username)
        return cls(host=host, port=port, tls=scheme == "tls", discovered=discovered, user=user, password=password, token=token)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'tls' if self.tls else 'nats'}://{host}:{self.port}"


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
