"""A Flask app that produces and consumes Memphis messages over one shared connection.

Every request thread of a process uses the same :class:`memphis_sync.Memphis` connection (it is
thread-safe and meant to be shared). It is made lazily, on the first request that needs it, in
the process that serves the requests, so a pre-forking server (gunicorn, uWSGI) gives each
worker its own; it is closed at interpreter exit.

Configuration: the ``MEMPHIS_*`` environment variables of ``memphis_env.py`` (MEMPHIS_HOST,
MEMPHIS_PORT, MEMPHIS_USERNAME, MEMPHIS_CONNECTION_TOKEN or MEMPHIS_PASSWORD,
MEMPHIS_ACCOUNT_ID), plus ORDERS_STATION (default ``orders``).

Run it (with ``memphis-sync broker`` running in another terminal)::

    cd examples
    flask --app flask_app run --with-threads

then POST a JSON object such as ``{"id": "o-1", "qty": 2}`` to http://127.0.0.1:5000/orders.

Endpoints:

``POST /orders``
    Produce the JSON body and wait for the broker's ack. Its ``id`` (or the ``Idempotency-Key``
    header) is the message id, so a retried request is stored once. 201 with the stream
    sequence; 503 when the broker cannot be reached, 504 when it did not ack in time, 400 for a
    bad body.
``GET /orders?max=N``
    Fetch and ack up to N messages (the ``web-reader`` consumer group), 200 with them.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from typing import Any, Dict, Optional, Tuple

from flask import Flask, Response, jsonify, request
from memphis_env import connect_kwargs

import memphis_sync
from memphis_sync.errors import (
    MemphisConnectError,
    MemphisError,
    MemphisHeaderError,
    MemphisSchemaError,
    MemphisTimeoutError,
    MemphisValueError,
    NetworkError,
)

__all__ = ["MemphisHolder", "create_app", "app"]

ACK_WAIT_SEC = 5  # a request waits at most this for the broker's ack
RETRY_CONNECT_SEC = 2.0  # after a failed connect, requests fail at once for this long


class BrokerUnavailable(Exception):
    """The broker cannot be reached now (not connected, or reconnecting)."""


class MemphisHolder:
    """One lazily made Memphis connection (and reading consumer) per process, for every thread."""

    def __init__(self, kwargs: Dict[str, Any], station: str) -> None:
        self.kwargs = kwargs
        self.station = station
        self._lock = threading.Lock()
        self._memphis: Optional[memphis_sync.Memphis] = None
        self._consumer: Optional[memphis_sync.Consumer] = None
        self._pid = 0
        self._failure: Optional[Tuple[float, str]] = None  # (when, why) of the last failed connect

    def get(self) -> memphis_sync.Memphis:
        """The connection of this process, made on first use.

        A connection inherited through ``fork()`` is replaced (the library closes it in the
        child); a connection that is reconnecting is kept (it recovers by itself). After a
        failed connect, calls fail at once with its reason for ``RETRY_CONNECT_SEC``, so
        that request threads do not queue up behind connect attempts (each up to its timeout).
        """
        memphis = self._memphis
        if memphis is not None and self._pid == os.getpid():
            return memphis
        with self._lock:
            if self._memphis is None or self._pid != os.getpid():
                if self._failure is not None and time.monotonic() - self._failure[0] < RETRY_CONNECT_SEC:
                    raise BrokerUnavailable(f"{self._failure[1]} (the next attempt within {RETRY_CONNECT_SEC:g} s)")
                try:
                    self._memphis = memphis_sync.connect(**self.kwargs)
                except MemphisConnectError as exc:  # a 503 (see the error handlers)
                    self._failure = (time.monotonic(), str(exc))
                    raise
                self._failure = None
                self._consumer = None
                self._pid = os.getpid()
            return self._memphis

    def connected(self) -> memphis_sync.Memphis:
        """:meth:`get`, refusing at once (rather than after ``ACK_WAIT_SEC``) while reconnecting."""
        memphis = self.get()
        if not memphis.is_connected():
            raise BrokerUnavailable(f"the connection to {memphis.host}:{memphis.port} is down (reconnecting)")
        return memphis

    def consumer(self) -> memphis_sync.Consumer:
        """The reading consumer, created once (its ``fetch`` is safe from several threads)."""
        memphis = self.connected()
        with self._lock:
            if self._consumer is None:
                self._consumer = memphis.consumer(self.station, "web-reader", batch_size=100)
            return self._consumer

    def close(self) -> None:
        """Close the connection (waits, bounded, for what is in flight). Idempotent."""
        with self._lock:
            memphis, self._memphis, self._consumer = self._memphis, None, None
        if memphis is not None and self._pid == os.getpid():
            memphis.close()


def _error(status: int, error: str, exc: BaseException) -> Tuple[Response, int]:
    return jsonify(error=error, detail=str(exc)), status


def create_app(kwargs: Optional[Dict[str, Any]] = None, station: Optional[str] = None) -> Flask:
    """The application; ``kwargs`` for ``memphis_sync.connect`` (default: the environment)."""
    app = Flask(__name__)
    holder = MemphisHolder(kwargs or connect_kwargs(), station or os.environ.get("ORDERS_STATION", "orders"))
    app.extensions["memphis"] = holder
    atexit.register(holder.close)

    @app.post("/orders")
    def produce_order() -> Tuple[Response, int]:
        order = request.get_json(silent=True)
        if not isinstance(order, dict):
            return jsonify(error="bad request", detail="the body must be a JSON object"), 400
        msg_id = str(order.get("id") or request.headers.get("Idempotency-Key") or "") or None
        memphis = holder.connected()
        ack = memphis.produce(holder.station, "web", order, msg_id=msg_id, ack_wait_sec=ACK_WAIT_SEC)
        body = {"station": holder.station, "msg_id": msg_id, "seq": ack.seq, "duplicate": ack.duplicate,
                "connection_id": memphis.connection_id, "pid": os.getpid()}
        return jsonify(body), 201

    @app.get("/orders")
    def fetch_orders() -> Tuple[Response, int]:
        most = request.args.get("max", default=10, type=int)
        if most is None or not 1 <= most <= 100:
            return jsonify(error="bad request", detail="max must be an integer from 1 to 100"), 400
        messages = []
        for msg in holder.consumer().fetch(most):
            messages.append({"seq": msg.get_sequence_number(), "data": json.loads(bytes(msg.get_data()))})
            msg.ack()
        return jsonify(station=holder.station, messages=messages), 200

    @app.errorhandler(BrokerUnavailable)
    @app.errorhandler(NetworkError)  # could not connect, connection closed, ...
    def unavailable(exc: Exception) -> Tuple[Response, int]:
        return _error(503, "the message broker is unavailable", exc)

    @app.errorhandler(MemphisTimeoutError)
    def no_ack(exc: MemphisTimeoutError) -> Tuple[Response, int]:
        return _error(504, "the message broker did not confirm in time; retry with the same id", exc)

    @app.errorhandler(MemphisValueError)
    @app.errorhandler(MemphisSchemaError)  # the message does not fit the station's schema
    @app.errorhandler(MemphisHeaderError)
    def bad_value(exc: MemphisError) -> Tuple[Response, int]:
        return _error(400, "bad request", exc)

    @app.errorhandler(MemphisError)
    def broker_error(exc: MemphisError) -> Tuple[Response, int]:
        return _error(502, "the message broker refused the request", exc)

    return app


app = create_app()  # for `flask --app flask_app run` and `gunicorn flask_app:app`; connects on first use
