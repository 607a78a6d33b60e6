"""``python manage.py consume_orders --count N``: consume, print and ack N orders."""

import json
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

import memphis_sync
from orders.memphis import get_memphis


class Command(BaseCommand):
    help = "Consume orders from the Memphis orders station: print each as a JSON line and ack it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=10, help="orders to consume before exiting (default: 10)")
        parser.add_argument("--group", default="order-workers", help="consumer group (default: order-workers)")
        parser.add_argument("--timeout", type=float, default=30.0,
                            help="give up after this many seconds without all of them (default: 30)")

    def handle(self, *args: Any, count: int, group: str, timeout: float, **options: Any) -> None:
        if count < 1:
            raise CommandError("--count must be >= 1")
        received = 0
        deadline = time.monotonic() + timeout
        try:
            consumer = get_memphis().consumer(settings.ORDERS_STATION, group, batch_size=min(count, 1000),
                                              batch_max_time_to_wait_ms=500)
            while received < count and time.monotonic() < deadline:
                for msg in consumer.fetch(min(count - received, 1000)):
                    order = json.loads(bytes(msg.get_data()))
                    self.stdout.write(json.dumps({"seq": msg.get_sequence_number(), "order": order}))
                    msg.ack()
                    received += 1
        except memphis_sync.MemphisError as exc:
            raise CommandError(f"consuming {settings.ORDERS_STATION!r}: {exc}") from exc
        if received < count:
            raise CommandError(f"only {received} of {count} orders within {timeout:g} s")
