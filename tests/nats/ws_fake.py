"""A scripted NATS-over-WebSocket server for the fault cases a real nats-server never produces
(HTTP errors on the upgrade, fragmented and ping frames, a close frame, a malformed frame).

It speaks the server side of RFC 6455 with wsproto (which refuses unmasked client frames, so every
exchange also checks that the client masks) and just enough NATS: INFO on accept, PONG to each
PING. One thread accepts and serves connections one after the other on a free loopback port;
:meth:`FakeWsServer.close` stops and joins it.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import List, Optional

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
)

INFO = {"server_id": "FAKEWS", "version": "2.10.0", "proto": 1, "headers": True, "max_payload": 1048576}


class FakeWsServer:
    """Answers upgrades with ``reject`` (an HTTP status) or accepts them and plays NATS."""

    def __init__(self, reject: Optional[int] = None) -> None:
        self.reject = reject
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self.requests: List[Request] = []  # every upgrade request
        self.received: List[Event] = []  # every WebSocket event from clients
        self.nats_in = b""  # NATS bytes from the current client
        self.accepted = 0
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._ws: Optional[WSConnection] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-ws-server", daemon=True)
        self._thread.start()

    def send(self, *events: Event) -> None:
        """Send these events to the current client in one write."""
        with self._lock:
            assert self._ws is not None and self._sock is not None, "no client connected"
            self._sock.sendall(b"".join(self._ws.send(e) for e in events))

    def send_raw(self, data: bytes) -> None:
        with self._lock:
            assert self._sock is not None, "no client connected"
            self._sock.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            with sock:
                sock.settimeout(0.05)
                self._serve(sock)
            with self._lock:
                self._sock = self._ws = None

    def _serve(self, sock: socket.socket) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        with self._lock:
            self._sock, self._ws, self.nats_in = sock, ws, b""
        while not self._stop.is_set():
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            with self._lock:
                ws.receive_data(data)
                out = b""
                for event in ws.events():
                    out += self._answer(ws, event)
                if out:
                    sock.sendall(out)
                if self.reject is not None and self.requests:
                    return  # an HTTP error ends the connection

    def _answer(self, ws: WSConnection, event: Event) -> bytes:
        if isinstance(event, Request):
            self.requests.append(event)
            if self.reject is not None:
                return ws.send(RejectConnection(status_code=self.reject, has_body=True)) + ws.send(RejectData(data=b"go away"))
            self.accepted += 1
            return ws.send(AcceptConnection()) + ws.send(BytesMessage(data=b"INFO " + json.dumps(INFO).encode() + b"\r\n"))
        self.received.append(event)
        if isinstance(event, Message):
            self.nats_in += bytes(event.data)
            pongs = b""
            while b"PING\r\n" in self.nats_in:
                self.nats_in = self.nats_in.replace(b"PING\r\n", b"", 1)
                pongs += b"PONG\r\n"
            return ws.send(BytesMessage(data=pongs)) if pongs else b""
        if isinstance(event, Ping):
            return ws.send(event.response())
        if isinstance(event, CloseConnection):
            try:
                return ws.send(event.response())
            except Exception:  # we started the close: the client's frame ends it
                return b""
        if isinstance(event, Pong):
            return b""
        return b""
