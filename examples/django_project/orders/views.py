"""The view that produces an order."""

import json
import os

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import memphis_sync

from .memphis import get_memphis

ACK_WAIT_SEC = 5  # a request waits at most this for the broker's ack


@csrf_exempt  # a JSON API called by other programs, not a form
@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    """Produce the JSON body to the orders station and wait for the ack.

    Its ``id`` is the message id (a retried request is stored once). 201 with the stream
    sequence; 503 when the broker cannot be reached, 504 when it did not ack in time.
    """
    try:
        order = json.loads(request.body)
    except ValueError:
        order = None
    if not isinstance(order, dict):
        return JsonResponse({"error": "the body must be a JSON object"}, status=400)
    msg_id = str(order["id"]) if order.get("id") else None
    try:
        memphis = get_memphis()
        if not memphis.is_connected():
            return JsonResponse({"error": "the message broker is unavailable (reconnecting)"}, status=503)
        ack = memphis.produce(settings.ORDERS_STATION, "django-web", order, msg_id=msg_id, ack_wait_sec=ACK_WAIT_SEC)
    except memphis_sync.NetworkError as exc:  # could not connect, connection closed
        return JsonResponse({"error": "the message broker is unavailable", "detail": str(exc)}, status=503)
    except memphis_sync.MemphisTimeoutError as exc:
        return JsonResponse({"error": "the message broker did not confirm in time", "detail": str(exc)}, status=504)
    return JsonResponse({"station": settings.ORDERS_STATION, "msg_id": msg_id, "seq": ack.seq,
                         "duplicate": ack.duplicate, "connection_id": memphis.connection_id,
                         "pid": os.getpid()}, status=201)
