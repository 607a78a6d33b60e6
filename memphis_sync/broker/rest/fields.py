"""Request bodies and replies of the REST ingress: JSON or form fields, numbers, JSON replies."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qsl

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from ..._timeouts import is_number

__all__ = ["BadField", "FormFields", "json_reply", "number_field", "read_body", "request_fields"]

_BODY_KEY = "memphis_sync.body"


def json_reply(status: int, body: Any) -> Response:
    """A JSON response."""
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")


class FormFields(Dict[str, Any]):
    """The fields of a form body: every value is a string (numbers included)."""


class BadField(Exception):
    """A request field has the wrong type (the message names it)."""


def read_body(request: Request) -> bytes:
    """The whole request body, at most ``request.max_content_length`` bytes.

    A body with a ``Content-Length`` over the limit is refused by werkzeug; a chunked one is
    read here, since werkzeug would cut it at the limit without a word.

    Raises:
        RequestEntityTooLarge: the body is over the limit (413).
    """
    cached = request.environ.get(_BODY_KEY)
    if cached is not None:
        return bytes(cached)
    limit = request.max_content_length
    if request.content_length is not None or limit is None or "wsgi.input_terminated" not in request.environ:
        body = request.get_data()
    else:
        stream = request.environ["wsgi.input"]
        chunks: List[bytes] = []
        total = 0
        while True:
            chunk = stream.read(min(65536, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise RequestEntityTooLarge()
        body = b"".join(chunks)
    request.environ[_BODY_KEY] = body
    return body


def request_fields(request: Request) -> Optional[Dict[str, Any]]:
    """The fields of a JSON or form body (None: not decodable, or another content type)."""
    mimetype = request.mimetype
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            data = json.loads(read_body(request) or b"null")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
    if mimetype == "application/x-www-form-urlencoded":
        try:
            return FormFields(parse_qsl(read_body(request).decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            return None
    if mimetype == "multipart/form-data":
        return FormFields(request.form.items())
    return None


def number_field(fields: Dict[str, Any], name: str, *, integral: bool = True) -> float:
    """Field ``name`` as a number (0 when absent); in a form body, a numeric string (JSON bodies
    need JSON numbers, as the gateway's).

    Raises:
        BadField: not a number (or not a whole one when ``integral``).
    """
    value = fields.get(name)
    if value is None or value == "":
        return 0
    if isinstance(value, str) and isinstance(fields, FormFields):
        try:
            value = float(value)
        except ValueError:
            raise BadField(f"{name} must be a number, got {value!r}") from None
    if not is_number(value) or value in (float("inf"), float("-inf")):
        raise BadField(f"{name} must be a number, got {value!r}")
    if integral and value != int(value):
        raise BadField(f"{name} must be a whole number, got {value!r}")
    return value


