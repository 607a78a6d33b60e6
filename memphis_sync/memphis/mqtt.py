"""The MQTT topic of a station partition.

A Memphis broker has nats-server's MQTT listener compiled in (off by default). nats-server maps
an MQTT topic name to a NATS subject by turning each ``/`` into ``.`` and each ``.`` into ``//``
(``mqttToNATSSubjectConversion`` in ``server/mqtt.go``); ``$``, ``-`` and ``_`` pass unchanged, and
the wildcards ``#`` and ``+`` are refused in a published topic. A station partition is the
subject ``<internal station>$<partition>.final``, so its topic is
``<internal station>$<partition>/final``. The internal name is the station name lower-cased with
``.`` replaced by ``#``: a station name with a ``.`` has no MQTT topic at all.
"""

from __future__ import annotations

from typing import Final

from ..errors import MemphisValueError
from .validate import check_int, internal_name, validate_name

__all__ = ["mqtt_topic", "MQTT_TOPIC_SUFFIX"]

#: The last level of a partition's topic (the subject ``<stream>.final`` producers publish to).
MQTT_TOPIC_SUFFIX: Final = "/final"


def mqtt_topic(station_name: str, partition: int = 1) -> str:
    """The MQTT topic name of one partition of a station, for MQTT devices and subscribers.

    An MQTT client publishing QoS 1 to this topic stores the message in that partition (it
    carries no Memphis headers); one subscribing to it receives what producers send to the
    partition from then on (QoS 0). See :doc:`protocols_mqtt`. Nothing is sent: whether the
    station and the partition exist is not checked.

    Args:
        station_name: The station, as given to :meth:`~memphis_sync.Memphis.station` (any case).
        partition: The partition number, from 1 (stations created by Memphis 1.2 and later
            have partitions ``1..partitions_number``).

    Returns:
        ``"<internal station name>$<partition>/final"``, e.g. ``"sensors$1/final"`` for
        ``mqtt_topic("Sensors")``.

    Raises:
        MemphisValueError: ``station_name`` is not a valid station name (the broker's rules and
            texts), or it holds a ``.``, which the internal name turns into ``#``, an MQTT
            wildcard that no topic name may contain; ``partition`` is not an int ``>= 1``.
    """
    lowered = validate_name(station_name, "Station")
    internal = internal_name(lowered)
    if "#" in internal:
        raise MemphisValueError(
            f"station {station_name!r} cannot be reached over MQTT: its internal name {internal!r} "
            "holds '#' (a '.' in a station name becomes '#'), the MQTT multi-level wildcard, which "
            "a topic name may not contain; use a station name without '.'"
        )
    check_int(partition, "partition", 1)
    return f"{internal}${partition}{MQTT_TOPIC_SUFFIX}"
