"""Schema behaviour compared with the official SDK (memphis-py 1.3.1) on one broker: what a
schema failure reports, and what ``get_data_deserialized()`` accepts.

Both clients use the same nats-server and fake control plane (tests/memphis/conftest.py).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from memphis_sync import MemphisSchemaError
from memphis_sync.testing import wait_until

memphis_py = pytest.importorskip("memphis", reason="the official SDK (pip install memphis-py==1.3.1) is needed for interop tests")

pytestmark = [
    pytest.mark.integration,
    # memphis-py / nats-py emit asyncio deprecation warnings of their own
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}
CLIENTS_UPDATES = "$memphis_sdk_clients_updates"


@pytest.fixture
def schema_file(tmp_path):
    path = tmp_path / "order.json"
    path.write_text(json.dumps(SCHEMA), encoding="utf-8")
    return str(path)


async def _sdk_connect(server):
    sdk = memphis_py.Memphis()
    await sdk.connect(host="127.0.0.1", port=server.port, username="root", connection_token="memphis")
    return sdk


def _notifications_on(fake_plane) -> None:
    """What the broker sends when a notification integration is set up (§11.1)."""
    fake_plane.conn.publish(CLIENTS_UPDATES, json.dumps({"station_name": "", "type": "send_notification", "update": True}).encode())
    fake_plane.conn.flush()


def test_schema_failure_notifies_whatever_the_dls_setting_as_the_sdk(nats_server, fake_plane, memphis, schema_file):
    pytest.importorskip("jsonschema")
    memphis.create_schema("orders-schema", "json", schema_file)
    memphis.station("no-dls", send_schema_failed_msg_to_dls=False)
    memphis.station("with-dls")
    for station in ("no-dls", "with-dls"):
        memphis.enforce_schema("orders-schema", station)
    ours = {station: memphis.producer(station, "ours") for station in ("no-dls", "with-dls")}
    _notifications_on(fake_plane)
    wait_until(lambda: memphis._stations.send_notification, 5, "our client to take the send_notification update")
    notifications, dls = fake_plane.published["$memphis_notifications"], fake_plane.published["$memphis_schemaverse_dls"]

    with pytest.raises(MemphisSchemaError):
        ours["no-dls"].produce({"name": "no id"})
    wait_until(lambda: len(notifications) == 1, 5, "our notification (station without schema DLS)")
    with pytest.raises(MemphisSchemaError):
        ours["with-dls"].produce({"name": "no id"})
    wait_until(lambda: len(notifications) == 2 and len(dls) == 1, 5, "our notification and DLS report (station with schema DLS)")
    # one connection publishes both in order: the DLS report of the first failure would be there
    assert [report["station_name"] for report in dls] == ["with-dls"]

    async def sdk_side():
        sdk = await _sdk_connect(nats_server)
        try:
            producer = await sdk.producer(station_name="no-dls", producer_name="ours")
            _notifications_on(fake_plane)  # the SDK's producer creation reset its flag from the reply
            deadline = asyncio.get_running_loop().time() + 5
            while not sdk.cluster_configurations.get("send_notification") and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            with pytest.raises(memphis_py.MemphisSchemaError):
                await producer.produce({"name": "no id"})
        finally:
            await sdk.close()

    asyncio.run(sdk_side())
    wait_until(lambda: len(notifications) == 3, 5, "the SDK's notification (station without schema DLS)")
    assert len(dls) == 1  # neither client reports to the DLS of a station that does not want it
    mine, theirs = notifications[0], notifications[2]
    assert {k: v for k, v in mine.items() if k != "msg"} == {k: v for k, v in theirs.items() if k != "msg"}
    # the SDK's error text goes on with jsonschema's full report (schema and instance): ours stops
    # after the reason
    assert theirs["msg"].startswith(mine["msg"])
    assert theirs["title"] == "Schema validation has failed" and theirs["type"] == "schema_validation_fail_alert"
    assert theirs["msg"].startswith("Station: no-dls\nProducer: ours\nError:memphis: Schema validation has failed: ")
    assert theirs["code"] == str({"name": "no id"})


def test_get_data_deserialized_validates_first_and_differs_from_the_sdk_only_by_raising(nats_server, fake_plane, memphis, schema_file):
    pytest.importorskip("jsonschema")
    memphis.create_schema("orders-schema", "json", schema_file)
    memphis.station("checked")
    producer = memphis.producer("checked", "p")
    producer.produce(b'{"name": "valid JSON, not the schema"}')  # before the schema is attached
    memphis.enforce_schema("orders-schema", "checked")
    producer.produce({"id": 1})

    msgs = memphis.consumer("checked", "ours", batch_size=10).fetch()
    assert [bytes(m.get_data()) for m in msgs] == [b'{"name": "valid JSON, not the schema"}', b'{"id": 1}']
    with pytest.raises(MemphisSchemaError, match=(
        "Deserialization has been failed since the message format does not align with the currently attached schema: "
        "Schema validation has failed: 'id' is a required property"
    )):
        msgs[0].get_data_deserialized()
    assert msgs[1].get_data_deserialized() == {"id": 1}

    async def sdk_side():
        sdk = await _sdk_connect(nats_server)
        try:
            consumer = await sdk.consumer(station_name="checked", consumer_name="theirs", batch_size=10)
            got = []
            for _ in range(50):
                got.extend(await consumer.fetch(batch_size=10))
                if len(got) >= 2:
                    break
            return [await m.get_data_deserialized() for m in got]
        finally:
            await sdk.close()

    assert asyncio.run(sdk_side()) == [None, {"id": 1}]  # the SDK says None where we raise


def test_get_data_deserialized_without_a_schema_gives_the_bytes(memphis, fake_plane):
    memphis.station("free")
    memphis.producer("free", "p").produce(b"anything")
    (msg,) = memphis.consumer("free", "c", batch_size=1).fetch()
    assert msg.get_data_deserialized() == bytearray(b"anything")
