"""Request bodies and replies of the REST ingress: JSON or form fields, numbers, JSON replies."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from werkzeug.wrappers import Request, Response

__all__ = ["BadField", "FormFields", "json_reply", "number_field", "request_fields"]


def json_reply(status: int, body: Any) -> Response:
    """A JSON response."""
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class FormFields(Dict[str, Any]):
    """The fields of a form body: every value is a string (numbers included)."""


class BadField(Exception):
    """A request field has the wrong type (the message names it)."""


def request_fields(request: Request) -> Optional[Dict[str, Any]]:
    """The fields of a JSON or form body (None: not decodable, or another content type)."""
    mimetype = request.mimetype
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            data = json.loads(request.get_data() or b"null")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
    if mimetype in _FORM_TYPES:
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
        raise BadField(f"{name} must be a number, got {value!r}")
    if integral and value != int(value):
        raise BadField(f"{name} must be a whole number, got {value!r}")
    return value


