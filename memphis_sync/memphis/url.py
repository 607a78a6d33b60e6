"""Connection settings from a URL or from ``MEMPHIS_*`` environment variables.

A Memphis URL names everything :func:`memphis_sync.connect` takes::

    memphis://USERNAME[:SECRET]@HOST[:PORT][?account_id=N&auth=token|password&...]

``SECRET`` is the connection token (``auth=token``, the default) or the password
(``auth=password``); percent-encode reserved characters in it. The query takes the other
arguments of :func:`memphis_sync.connect` by name (``account_id``, ``reconnect``,
``max_reconnect``, ``reconnect_interval_ms``, ``timeout_ms``, ``cert_file``, ``key_file``,
``ca_file``). The port defaults to 6666.

The environment variables (:data:`ENVIRONMENT`) are read by :func:`settings_from_env`:
``MEMPHIS_URL`` (a URL as above), or ``MEMPHIS_HOST``, ``MEMPHIS_PORT``, ``MEMPHIS_USERNAME``,
``MEMPHIS_CONNECTION_TOKEN`` / ``MEMPHIS_PASSWORD``, ``MEMPHIS_ACCOUNT_ID``,
``MEMPHIS_CERT_FILE``, ``MEMPHIS_KEY_FILE``, ``MEMPHIS_CA_FILE``; the single variables win over
the parts of ``MEMPHIS_URL``.

Errors never quote a secret: a URL is shown through
:func:`memphis_sync.nats.servers.redact_url`, its secret replaced by ``***``.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any, Callable, Dict, Mapping, Optional

from ..errors import MemphisValueError
from ..nats.servers import redact_url

__all__ = ["ENVIRONMENT", "merge_url", "parse_url", "settings_from_env"]

#: The schemes a Memphis URL may have.
SCHEMES = ("memphis",)

#: Environment variable -> :func:`memphis_sync.connect` argument.
ENVIRONMENT: Mapping[str, str] = {
    "MEMPHIS_HOST": "host",
    "MEMPHIS_PORT": "port",
    "MEMPHIS_USERNAME": "username",
    "MEMPHIS_CONNECTION_TOKEN": "connection_token",
    "MEMPHIS_PASSWORD": "password",
    "MEMPHIS_ACCOUNT_ID": "account_id",
    "MEMPHIS_CERT_FILE": "cert_file",
    "MEMPHIS_KEY_FILE": "key_file",
    "MEMPHIS_CA_FILE": "ca_file",
}


def _integer(minimum: int) -> Callable[[str, str], int]:
    def convert(text: str, what: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise MemphisValueError(f"{what} must be an integer, got {text!r}") from None
        if value < minimum:
            raise MemphisValueError(f"{what} must be >= {minimum}, got {value}")
        return value

    return convert


def _boolean(text: str, what: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise MemphisValueError(f"{what} must be true or false, got {text!r}")


def _text(text: str, what: str) -> str:
    return text


#: Query parameters of a Memphis URL and how each is read.
_QUERY: Dict[str, Callable[[str, str], Any]] = {
    "account_id": _integer(0),
    "reconnect": _boolean,
    "max_reconnect": _integer(-1),
    "reconnect_interval_ms": _integer(0),
    "timeout_ms": _integer(1),
    "cert_file": _text,
    "key_file": _text,
    "ca_file": _text,
}
_INT_ENV = {"port": _integer(1), "account_id": _integer(0)}


def parse_url(url: str) -> Dict[str, Any]:
    """The :func:`memphis_sync.connect` arguments that ``url`` gives.

    Raises:
        MemphisValueError: not a str, another scheme, no host or user name, a bad port, an
            unknown or repeated query parameter, or a bad value (the URL is shown redacted).
    """
    if not isinstance(url, str):
        raise MemphisValueError(f"url must be a str, got {type(url).__name__}")
    shown = redact_url(url)
    if any(c in url for c in "\r\n\t\x00 "):
        raise MemphisValueError(f"a Memphis URL may not contain whitespace or control characters: {shown!r}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise MemphisValueError(f"a Memphis URL starts with memphis://, got {shown!r}")
    if not parts.hostname:
        raise MemphisValueError(f"no host in Memphis URL {shown!r}")
    try:
        port = parts.port
    except ValueError:
        raise MemphisValueError(f"bad port in Memphis URL {shown!r}") from None
    if parts.path not in ("", "/") or parts.fragment:
        raise MemphisValueError(f"a Memphis URL has no path or fragment: {shown!r}")
    if not parts.username:
        raise MemphisValueError(f"no user name in Memphis URL {shown!r} (memphis://USERNAME:TOKEN@HOST:PORT)")
    settings: Dict[str, Any] = {"host": parts.hostname, "username": urllib.parse.unquote(parts.username)}
    if port is not None:
        settings["port"] = port
    auth = "token"
    try:
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise MemphisValueError(f"bad query in Memphis URL {shown!r}") from None
    seen = set()
    for name, value in query:
        if name in seen:
            raise MemphisValueError(f"{name} given twice in Memphis URL {shown!r}")
        seen.add(name)
        if name == "auth":
            if value not in ("token", "password"):
                raise MemphisValueError(f"auth must be token or password in Memphis URL {shown!r}, got {value!r}")
            auth = value
        elif name in _QUERY:
            settings[name] = _QUERY[name](value, f"{name} in Memphis URL {shown!r}")
        else:
            known = ", ".join(["auth", *_QUERY])
            raise MemphisValueError(f"unknown parameter {name!r} in Memphis URL {shown!r} (known: {known})")
    if parts.password is not None:
        settings["password" if auth == "password" else "connection_token"] = urllib.parse.unquote(parts.password)
    return settings


def settings_from_env(environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """The :func:`memphis_sync.connect` arguments that the ``MEMPHIS_*`` variables give (empty
    variables count as unset).

    Args:
        environ: the variables (default ``os.environ``).

    Raises:
        MemphisValueError: a bad ``MEMPHIS_URL``, or a bad number in ``MEMPHIS_PORT`` /
            ``MEMPHIS_ACCOUNT_ID`` (naming the variable).
    """
    env = os.environ if environ is None else environ
    settings: Dict[str, Any] = {}
    url = env.get("MEMPHIS_URL", "")
    if url:
        settings.update(parse_url(url))
    token, password = env.get("MEMPHIS_CONNECTION_TOKEN", ""), env.get("MEMPHIS_PASSWORD", "")
    if token and password:
        raise MemphisValueError("set MEMPHIS_CONNECTION_TOKEN or MEMPHIS_PASSWORD, not both")
    if token or password:  # replaces what MEMPHIS_URL said about authentication
        settings.pop("connection_token", None)
        settings.pop("password", None)
    for variable, name in ENVIRONMENT.items():
        value = env.get(variable, "")
        if value:
            settings[name] = _INT_ENV[name](value, variable) if name in _INT_ENV else value
    return settings


def merge_url(url: Optional[str], given: Mapping[str, Any], defaults: Mapping[str, Any]) -> Dict[str, Any]:
    """The arguments of a ``connect(url=..., ...)`` call: what ``url`` gives, plus each argument
    in ``given`` that differs from its default in ``defaults`` (``None`` means not given).

    Raises:
        MemphisValueError: a bad URL, an argument that the URL gives another value, or (without
            a URL) no ``host`` or ``username``.
    """
    if url is None:
        missing = [name for name in ("host", "username") if given.get(name) is None]
        if missing:
            raise MemphisValueError(f"connect() needs {' and '.join(missing)} (or url='memphis://USER:TOKEN@HOST:PORT')")
        return dict(given)
    settings = parse_url(url)
    for name, value in given.items():
        if value is None or (name in defaults and value == defaults[name]):
            continue
        if name in settings and settings[name] != value:
            shown = "***" if name in ("connection_token", "password") else repr(value)
            raise MemphisValueError(f"{name} is given twice: {shown} and in the URL {redact_url(url)!r}")
        settings[name] = value
    if settings.get("connection_token") and settings.get("password"):
        raise MemphisValueError("connection_token and password given together (one in the URL, one as an argument)")
    return {**{k: v for k, v in given.items() if v is not None}, **settings}
