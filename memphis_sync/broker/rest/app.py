"""The REST ingress as a WSGI application: routes, bearer authentication and the auth routes.

Routes (memphis-rest-gateway 1.2.8, ``router/*.go``; matched without regard to case or a
trailing slash, as its HTTP framework does):

========================================  ===========================  ===============
``POST /auth/authenticate``               :meth:`RestApp.authenticate`  no token
``POST /auth/refreshToken``               :meth:`RestApp.refresh`       refresh token
``POST /stations/{station}/produce/single``  produce one message         bearer token
``POST /stations/{station}/produce/batch``   produce a JSON array        bearer token
``POST /stations/{station}/consume/batch``   fetch a batch               bearer token
``GET /monitoring/status``                ``{"status": "ok"}``          no token
========================================  ===========================  ===============

Auth bodies are JSON or form-encoded (the gateway's body parser takes both). Replies are JSON
with the gateway's fields and status codes: ``401 {"message": "Unauthorized"}`` (here with an
``error`` field that says why), ``400`` for bad fields. The station routes live in
:mod:`memphis_sync.broker.rest.stations`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, Tuple

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .fields import BadField, FormFields, json_reply, number_field, request_fields
from .sessions import Sessions
from .settings import RestSettings, UserDirectory
from .stations import StationRoutes
from .tokens import Identity, TokenError, TokenIssuer, bearer_token

__all__ = ["RestApp"]

logger = logging.getLogger("memphis_sync.broker.rest")

#: The gateway's text for an authenticate body it cannot decode (``handlers/auth.go``).
BAD_AUTH_BODY = (
    "Some of your fields are not valid it is usually because you are missing some fields or you are sending "
    "wrong data types, also please notice that account_id field should be sent as a number rather than a string"
)

URLS = Map(
    [
        Rule("/auth/authenticate", methods=["POST"], endpoint="authenticate"),
        Rule("/auth/refreshtoken", methods=["POST"], endpoint="refresh"),
        Rule("/stations/<station>/produce/single", methods=["POST"], endpoint="produce_single"),
        Rule("/stations/<station>/produce/batch", methods=["POST"], endpoint="produce_batch"),
        Rule("/stations/<station>/consume/batch", methods=["POST"], endpoint="consume_batch"),
        Rule("/monitoring/status", methods=["GET"], endpoint="status"),
    ],
    strict_slashes=False,
    merge_slashes=False,
)

def unauthorized(reason: str) -> Response:
    """``401 {"message": "Unauthorized"}`` (the gateway's reply) with the reason added."""
    response = json_reply(401, {"message": "Unauthorized", "error": reason})
    response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


class RestApp:
    """The WSGI application of one REST ingress.

    Args:
        users: Who may log in.
        issuer: Issues and checks the tokens.
        sessions: The per-user Memphis connections.
        settings: Limits and lifetimes.
    """

    def __init__(self, users: UserDirectory, issuer: TokenIssuer, sessions: Sessions, settings: RestSettings) -> None:
        self._users = users
        self._issuer = issuer
        self._settings = settings
        self._stations = StationRoutes(sessions, settings)
        self._routes: Dict[str, Tuple[bool, Callable[..., Response]]] = {
            "authenticate": (False, self.authenticate),
            "refresh": (False, self.refresh),
            "status": (False, self.status),
            "produce_single": (True, self._stations.produce_single),
            "produce_batch": (True, self._stations.produce_batch),
            "consume_batch": (True, self._stations.consume_batch),
        }

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = self._settings.max_body
        try:
            response = self._dispatch(request)
        except HTTPException as exc:  # 404, 405, 413 (a body over max_body) ...
            response = json_reply(exc.code or 500, {"success": False, "error": exc.description or exc.name})
            if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
                response.headers["Allow"] = ", ".join(exc.valid_methods)
        except Exception:
            logger.exception("REST ingress: %s %s failed", request.method, request.path)
            response = json_reply(500, {"success": False, "error": "Server error"})
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = request.path.lower()
        if len(path) > 1:
            path = path.rstrip("/")
        endpoint, args = URLS.bind("localhost").match(path, request.method)
        needs_token, handler = self._routes[endpoint]
        if not needs_token:
            return handler(request, **args)
        token, problem = bearer_token(request.headers.get("Authorization"), request.args.get("authorization"))
        if token is None:
            return unauthorized(problem)
        try:
            identity = self._issuer.verify(token, "access")
        except TokenError as exc:
            return unauthorized(str(exc))
        user = self._users.canonical(identity.username)
        if user is None or identity.account_id != self._users.account_id:
            return unauthorized("the token's user is not a user of this broker")
        return handler(request, user=user, **args)

    # -- routes without a bearer token -------------------------------------------------------

    def status(self, request: Request) -> Response:
        """``GET /monitoring/status``."""
        return json_reply(200, {"status": "ok"})

    def _lifetimes(self, fields: Dict[str, Any]) -> Tuple[float, float]:
        """Token and refresh-token lifetimes in seconds (minutes in the request; 0 = default)."""
        minutes = number_field(fields, "token_expiry_in_minutes", integral=False)
        refresh_minutes = number_field(fields, "refresh_token_expiry_in_minutes", integral=False)
        lifetime = minutes * 60 if minutes > 0 else self._settings.token_expiry
        refresh = refresh_minutes * 60 if refresh_minutes > 0 else self._settings.refresh_token_expiry
        return lifetime, refresh

    def authenticate(self, request: Request) -> Response:
        """``POST /auth/authenticate``: check the credentials, issue a token pair."""
        fields = request_fields(request)
        if fields is None:
            return json_reply(400, {"message": BAD_AUTH_BODY})
        username = fields.get("username")
        if not isinstance(username, str) or not username:
            return json_reply(400, {"message": [{"field": "Username", "reason": "required"}]})
        token, password = fields.get("connection_token") or "", fields.get("password") or ""
        if not isinstance(token, str) or not isinstance(password, str):
            return json_reply(400, {"message": BAD_AUTH_BODY})
        try:
            account_id = int(number_field(fields, "account_id"))
            lifetime, refresh = self._lifetimes(fields)
            if account_id == 0:
                query = request.args.get("accountId")
                if query:
                    account_id = int(number_field(FormFields(accountId=query), "accountId"))
                elif "$" in username:
                    username, _, tenant = username.partition("$")
                    account_id = int(number_field(FormFields(account=tenant), "account"))
        except BadField as exc:
            return json_reply(400, {"message": BAD_AUTH_BODY, "error": str(exc)})
        user = self._users.verify(username, account_id or 1, token, password)
        if user is None:
            logger.info("REST ingress: authentication of %r refused", username)
            return unauthorized("wrong user name, account id, connection token or password")
        return json_reply(200, self._issuer.issue(Identity(user, account_id or 1), lifetime, refresh))

    def refresh(self, request: Request) -> Response:
        """``POST /auth/refreshToken``: a new token pair for a valid refresh token."""
        fields = request_fields(request)
        if fields is None:
            return json_reply(400, {"message": BAD_AUTH_BODY})
        refresh_token = fields.get("jwt_refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            return unauthorized("jwt_refresh_token is missing")
        try:
            identity = self._issuer.verify(refresh_token, "refresh")
            lifetime, refresh = self._lifetimes(fields)
        except TokenError as exc:
            return unauthorized(str(exc))
        except BadField as exc:
            return json_reply(400, {"message": BAD_AUTH_BODY, "error": str(exc)})
        user = self._users.canonical(identity.username)
        if user is None or identity.account_id != self._users.account_id:
            return unauthorized("the token's user is not a user of this broker")
        return json_reply(200, self._issuer.issue(Identity(user, identity.account_id), lifetime, refresh))
