"""The app's configuration."""

import atexit

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self) -> None:
        # Do NOT connect here. ready() runs in every process that loads Django: each manage.py
        # command (check, migrate, shell...: they must work with the broker down), runserver's
        # autoreloader parent (which serves nothing), and a pre-forking server's master before
        # it forks (a connection does not survive into the workers). The connection is made on
        # first use instead (orders/memphis.py); here we only make sure it is closed at exit.
        from . import memphis

        atexit.register(memphis.close_memphis)
