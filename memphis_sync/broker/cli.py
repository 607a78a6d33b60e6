"""``memphis-sync broker``: run a local Memphis broker in the foreground until Ctrl-C / SIGTERM.

``memphis-sync broker dls STATION`` lists the dead-letter records of a station of a running
broker (same connection options).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any, Dict, TextIO

from memphis_sync import _defaults
from memphis_sync.broker.config import TlsFiles
from memphis_sync.broker.local import LocalBroker, default_store_dir
from memphis_sync.errors import BrokerError, MemphisError

__all__ = ["add_arguments", "run"]

#: Seconds between checks that the nats-server process is still alive.
WATCH_INTERVAL = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``broker`` options (and its ``dls`` subcommand) to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=_defaults.MEMPHIS_PORT, help="client port, 0 = any free port (default: %(default)s)")
    parser.add_argument("--store", default=None, help=f"data directory (default: {default_store_dir()})")
    parser.add_argument("--username", default=_defaults.MEMPHIS_USERNAME, help="Memphis user (default: %(default)s)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--token", default=None, help=f"token mode with this connection token (the default mode; token {_defaults.MEMPHIS_CONNECTION_TOKEN!r})")
    mode.add_argument("--password", default=None, help="password mode: users <username>$<account-id> and <username> with this password")
    parser.add_argument("--account-id", type=int, default=_defaults.MEMPHIS_ACCOUNT_ID, help="account id of password mode (default: %(default)s)")
    parser.add_argument("--cluster", type=int, choices=(1, 3), default=1, help="1 server, or a 3-node cluster on free ports")
    ws = parser.add_mutually_exclusive_group()
    ws.add_argument("--websocket-port", type=int, default=None,
                    help=f"port of NATS over WebSocket, 0 = any free port (default: {_defaults.MEMPHIS_WS_PORT}, any free port with --port 0)")
    ws.add_argument("--no-websocket", action="store_true", help="do not serve NATS over WebSocket")
    parser.add_argument("--mqtt-port", type=int, default=None, help="also serve MQTT (0 = free port)")
    parser.add_argument("--rest-port", type=int, default=_defaults.REST_GATEWAY_PORT, help="REST gateway port, 0 = any free port (default: %(default)s)")
    parser.add_argument("--no-rest", action="store_true", help="do not serve the REST gateway ingress")
    parser.add_argument("--tls-cert", default=None, help="serve TLS with this certificate (PEM)")
    parser.add_argument("--tls-key", default=None, help="private key of --tls-cert")
    parser.add_argument("--tls-ca", default=None, help="CA of client certificates (with --tls-verify)")
    parser.add_argument("--tls-verify", action="store_true", help="require client certificates")
    sub = parser.add_subparsers(dest="broker_command")
    dls = sub.add_parser("dls", help="list the dead-letter records of a station of a running broker")
    dls.add_argument("station", help="station name")


def _broker(args: argparse.Namespace) -> LocalBroker:
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise BrokerError("--tls-cert and --tls-key go together")
        tls = TlsFiles(cert_file=args.tls_cert, key_file=args.tls_key, ca_file=args.tls_ca, verify=args.tls_verify)
    kwargs: Dict[str, Any] = {}
    if args.password is not None:
        kwargs["password"] = args.password
    elif args.token is not None:
        kwargs["connection_token"] = args.token
    return LocalBroker(
        host=args.host,
        port=args.port,
        store_dir=args.store,
        username=args.username,
        account_id=args.account_id,
        tls=tls,
        cluster_size=args.cluster,
        websocket_port=None if args.no_websocket else _websocket_port(args),
        mqtt_port=args.mqtt_port,
        rest_port=None if args.no_rest else args.rest_port,
        **kwargs,
    )


def _websocket_port(args: argparse.Namespace) -> int:
    if args.websocket_port is not None:
        return int(args.websocket_port)
    return 0 if args.port == 0 else _defaults.MEMPHIS_WS_PORT


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the ``broker`` command; returns the exit code."""
    if getattr(args, "broker_command", None) == "dls":
        return _run_dls(args, out, err)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        broker = _broker(args)
        try:
            broker.start()
            secret = f"password {broker.password!r}" if broker.password else f"connection token {broker.connection_token!r}"
            rest = "" if args.no_rest else f", REST gateway {broker.rest_url}"
            websocket = f" and {', '.join(broker.websocket_urls)}" if broker.websocket_urls else ""
            websocket += f", MQTT {', '.join(broker.mqtt_urls)}" if broker.mqtt_urls else ""
            print(
                f"memphis broker ready on {', '.join(broker.urls)}{websocket} (nats-server pid "
                f"{', '.join(map(str, broker.pids))}, store {broker.store_dir}{rest}); "
                f"connect with username {broker.username!r} and {secret}. Ctrl-C to stop.",
                file=out,
                flush=True,
            )
            while not stop.wait(WATCH_INTERVAL):
                if not broker.nats_server.is_running():
                    print("memphis broker: nats-server exited unexpectedly", file=err, flush=True)
                    return 1
        finally:
            broker.close()
    except BrokerError as exc:
        print(f"memphis-sync broker: {exc}", file=err, flush=True)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("memphis broker stopped", file=out, flush=True)
    return 0


def _run_dls(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from memphis_sync.broker.handlers.dls import list_dls_remote

    try:
        records = list_dls_remote(
            f"nats://{args.host}:{args.port}",
            args.station,
            token=None if args.password is not None else (args.token or _defaults.MEMPHIS_CONNECTION_TOKEN),
            user=None if args.password is None else f"{args.username}${args.account_id}",
            password=args.password,
            username=args.username,
        )
    except MemphisError as exc:
        print(f"memphis-sync broker dls: {exc}", file=err, flush=True)
        return 1
    for record in records:
        print(json.dumps(record, sort_keys=True), file=out)
    print(f"{len(records)} dead-letter message(s) in station {args.station}", file=err, flush=True)
    return 0
