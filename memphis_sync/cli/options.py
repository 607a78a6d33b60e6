"""The connection options every client command shares (``produce``, ``consume``, ``stations``,
``bench``), read from the command line, a URL and ``MEMPHIS_*`` environment variables.

Precedence, lowest first: the defaults (``localhost:6666``, user ``root``, the local broker's
token ``memphis`` when no token or password is given anywhere), the environment
(:func:`memphis_sync.memphis.url.settings_from_env`), ``--url``, the single options.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, Optional

from .. import _defaults
from ..memphis.client import Memphis
from ..memphis.url import parse_url, settings_from_env

__all__ = ["add_connection_arguments", "connection_settings", "connect"]

_FLAGS = {
    # option -> connect() argument
    "host": "host",
    "port": "port",
    "username": "username",
    "token": "connection_token",
    "password": "password",
    "account_id": "account_id",
    "cert_file": "cert_file",
    "key_file": "key_file",
    "ca_file": "ca_file",
}


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the connection options to a command's parser."""
    group = parser.add_argument_group(
        "connection", "where the broker is and who you are; each option also reads a MEMPHIS_* environment variable"
    )
    group.add_argument("--url", help="memphis://USER:TOKEN@HOST:PORT?account_id=N (env MEMPHIS_URL); "
                                     "add auth=password when the secret is a password")
    group.add_argument("--host", help="broker host (env MEMPHIS_HOST; default localhost)")
    group.add_argument("--port", type=int, help=f"broker client port (env MEMPHIS_PORT; default {_defaults.MEMPHIS_PORT})")
    group.add_argument("-u", "--username", help=f"Memphis user (env MEMPHIS_USERNAME; default {_defaults.MEMPHIS_USERNAME})")
    secret = group.add_mutually_exclusive_group()
    secret.add_argument("--token", help="connection token (env MEMPHIS_CONNECTION_TOKEN; default: the local broker's "
                                        f"{_defaults.MEMPHIS_CONNECTION_TOKEN!r} when no password is given either)")
    secret.add_argument("--password", help="password, for a broker in password mode (env MEMPHIS_PASSWORD)")
    group.add_argument("--account-id", type=int, help=f"account (tenant) id (env MEMPHIS_ACCOUNT_ID; default {_defaults.MEMPHIS_ACCOUNT_ID})")
    group.add_argument("--cert-file", help="client certificate for TLS, with --key-file and --ca-file (env MEMPHIS_CERT_FILE)")
    group.add_argument("--key-file", help="private key of --cert-file (env MEMPHIS_KEY_FILE)")
    group.add_argument("--ca-file", help="CA that signed the broker's certificate (env MEMPHIS_CA_FILE)")
    group.add_argument("--connect-timeout", type=float, default=None, metavar="SECONDS",
                       help="time to connect and authenticate (default 2 s)")


def connection_settings(args: argparse.Namespace, environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The :func:`memphis_sync.connect` arguments the options, ``--url`` and environment give.

    Raises:
        MemphisValueError: a bad URL or environment variable (naming it).
    """
    settings: Dict[str, Any] = {"host": "localhost", "username": _defaults.MEMPHIS_USERNAME}
    settings.update(settings_from_env(environ))
    if args.url:
        from_url = parse_url(args.url)
        if "connection_token" in from_url or "password" in from_url:
            settings.pop("connection_token", None)
            settings.pop("password", None)
        settings.update(from_url)
    if args.token is not None or args.password is not None:
        settings.pop("connection_token", None)
        settings.pop("password", None)
    for option, name in _FLAGS.items():
        value = getattr(args, option, None)
        if value is not None:
            settings[name] = value
    if not settings.get("connection_token") and not settings.get("password"):
        settings["connection_token"] = _defaults.MEMPHIS_CONNECTION_TOKEN
    if args.connect_timeout is not None:
        settings["timeout_ms"] = int(args.connect_timeout * 1000)
    return settings


def connect(args: argparse.Namespace) -> Memphis:
    """Connect with the command's options.

    Raises:
        MemphisError: bad settings, or the broker could not be reached or refused us.
    """
    settings = connection_settings(args)
    return Memphis().connect(**settings)


def describe(settings: Dict[str, Any]) -> str:
    """Where a command connects, for its messages (no secret)."""
    return f"{settings['username']}@{settings['host']}:{settings.get('port', _defaults.MEMPHIS_PORT)}"
