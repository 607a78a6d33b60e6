"""Former home of :class:`~memphis_sync.jetstream.JetStream`, now a re-export: :mod:`.api` (the
``$JS.API`` requests) and :mod:`.publish` (publishing) hold it. Kept for the modules that still
import ``jetstream.context``; it goes once nothing imports it."""

from .api import JetStream  # noqa: F401 (re-export)
