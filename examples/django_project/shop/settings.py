"""Settings of the example project: the smallest Django project that produces from a view and
consumes from a management command.

The Memphis connection settings come from the ``MEMPHIS_*`` environment variables (the names
the other examples use; the defaults fit ``memphis-sync broker``). Reading them here connects to
nothing: the connection is made on first use, in the process that uses it (orders/memphis.py).
"""

import os

from memphis_sync.memphis.url import settings_from_env

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = ["orders.apps.OrdersConfig"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
DATABASES: dict = {}  # the example keeps no data of its own
USE_TZ = True

# Keyword arguments of memphis_sync.connect(): the local broker's defaults, then the MEMPHIS_*
# variables (MEMPHIS_URL, MEMPHIS_HOST, MEMPHIS_PORT, MEMPHIS_USERNAME, MEMPHIS_CONNECTION_TOKEN
# or MEMPHIS_PASSWORD, MEMPHIS_ACCOUNT_ID, ...).
MEMPHIS = {"host": "127.0.0.1", "username": "root", **settings_from_env()}
if not MEMPHIS.get("connection_token") and not MEMPHIS.get("password"):
    MEMPHIS["connection_token"] = "memphis"
ORDERS_STATION = os.environ.get("ORDERS_STATION") or "orders"

LOGGING = {  # the example's connect/close lines on the console
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"orders": {"handlers": ["console"], "level": "INFO"}},
}
