"""The control plane's pure rules (memphis_sync.broker.rules): names, settings, configs."""

from __future__ import annotations

import pytest

from memphis_sync.broker import rules as st


@pytest.mark.parametrize(
    "name, error",
    [
        ("a", None),
        ("a" * 128, None),
        ("orders.eu-1_x", None),
        ("", "Station name can not be empty"),
        ("a" * 129, "Station should be under 128 characters"),
        ("Upper", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ("a#b", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ("a b", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ("-a", "Station name can not start or end with non alphanumeric character"),
        ("a.", "Station name can not start or end with non alphanumeric character"),
        ("_", "Station name can not start or end with non alphanumeric character"),
        # the whole string is checked: a final newline is no exception ($ would match before it)
        ("abc\n", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ("abc\r\n", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ("\nabc", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ("ab\x00c", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
    ],
)
def test_validate_name(name: str, error: str) -> None:
    assert st.validate_name(name, "Station") == error


def test_names() -> None:
    assert st.internal_name("Orders.EU") == "orders#eu"
    assert st.stream_name("Orders.EU", 3) == "orders#eu$3"
    assert st.station_name_from_str("Orders.EU") == ("orders.eu", None)
    assert st.split_username("root$1") == ("root", 1)
    assert st.split_username("root") == ("root", -1)
    assert st.split_username("a$b$12") == ("a$b", 12)
    assert st.split_username("root$1\n") == ("root$1\n", -1)  # the whole string, a final newline too


@pytest.mark.parametrize(
    "start, last, last_seq, expected",
    [
        (1, -1, 10, ("all", None)),
        (1, 0, 10, ("new", None)),
        (1, 3, 10, ("by_start_sequence", 8)),
        (1, 30, 10, ("by_start_sequence", 1)),
        (1, 2, 0, ("by_start_sequence", 1)),
        (5, -1, 10, ("by_start_sequence", 5)),
    ],
)
def test_deliver_policy(start: int, last: int, last_seq: int, expected: tuple) -> None:
    assert st.deliver_policy(start, last, last_seq) == expected


def test_station_settings_defaults_and_clamps() -> None:
    settings = st.station_settings({"name": "S", "partitions_number": 2, "replicas": 4, "idempotency_window_in_ms": 7})
    assert isinstance(settings, st.StationSettings)
    assert (settings.name, settings.replicas, settings.idempotency_window_in_ms) == ("s", 3, 100)
    assert (settings.retention_type, settings.retention_value, settings.storage_type) == ("message_age_sec", 3600, "file")
    assert settings.partitions_list == [1, 2]
    assert st.station_settings({"name": "s", "partitions_number": 1, "replicas": 9}).replicas == 5
    assert st.station_settings({"name": "s", "partitions_number": 1, "dls_configuration": {"Schemaverse": True}}).dls_schemaverse
    record = st.station_settings({"name": "x", "partitions_number": 3}).to_record()
    assert st.StationSettings.from_record(record) == st.station_settings({"name": "x", "partitions_number": 3})


def test_consumer_settings_clamps() -> None:
    settings = st.consumer_settings({"name": "C", "consumer_type": "Application", "max_ack_time_ms": -1, "max_msg_deliveries": 11})
    assert isinstance(settings, st.ConsumerSettings)
    assert (settings.name, settings.consumers_group, settings.consumer_type) == ("c", "c", "application")
    assert (settings.max_ack_time_ms, settings.max_msg_deliveries) == (30000, 10)
    assert (settings.start_consume_from_sequence, settings.last_messages) == (1, -1)


def test_configs_have_exactly_the_documented_fields() -> None:
    settings = st.station_settings({"name": "s", "partitions_number": 1, "retention_type": "bytes", "retention_value": 9})
    assert isinstance(settings, st.StationSettings)
    config = st.stream_config(settings, 1)
    assert set(config) == {
        "name", "subjects", "retention", "max_consumers", "max_msgs", "max_bytes", "max_age", "max_msgs_per_subject",
        "discard", "storage", "num_replicas", "no_ack", "duplicate_window",
    }
    assert (config["max_bytes"], config["max_age"], config["duplicate_window"]) == (9, 0, 120_000_000_000)
    durable = st.durable_config("s$1", "G.1", max_ack_time_ms=1000, max_msg_deliveries=3, policy="all", opt_start_seq=None)
    assert durable == {
        "durable_name": "g#1", "deliver_policy": "all", "ack_policy": "explicit", "ack_wait": 1_000_000_000,
        "max_deliver": 3, "filter_subject": "s$1.final", "replay_policy": "instant", "max_ack_pending": -1,
        "headers_only": False,
    }
