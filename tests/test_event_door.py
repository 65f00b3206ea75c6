"""What ``POST /events`` checks before it stores anything: sizes, key shapes, nesting, time.

Every event refused here is one that could never be applied; before these checks each of
them got a 202 (and then blocked the processor), or a 500.
"""

from __future__ import annotations

import datetime as dt
import json

import orjson
import pytest

from gateway.config import DEV_SECRETS, ConfigError, load_config
from sources import event_registry
from sources.events import EventError, EventLimits
from sources.keys import KeyFormats
from sources.signing import HEADER, SignatureError, sign, verify

from .events_util import SINGLE, make_event, post_events


async def _count(app) -> int:
    return await app.state.gateway.journal.count()


async def _refused(http, url, app, event, *, status: int = 400, **kwargs) -> str:
    before = await _count(app)
    code, body = await post_events(http, url, event, **kwargs)
    assert code == status, (code, body)
    assert await _count(app) == before, "a refused event must store nothing"
    return body["error"]


async def test_oversized_attributes_are_refused(http, gateway):
    url, app = gateway
    # The reported case: a 70 KB subject was journaled, then refused by ERP forever.
    error = await _refused(http, url, app, make_event("erp", "SalesOrder", "Changed", "1" * 70_000))
    assert "subject" in error and "70000 characters" in error
    assert len(error) < 300, "the message must not echo the whole attribute"
    long_id = make_event("erp", "SalesOrder", "Changed", "10000001", id="x" * 300)
    assert "`id` is 300 characters long" in await _refused(http, url, app, long_id)
    long_source = {**make_event("erp", "SalesOrder", "Changed", "10000001"), "source": "/" + "p" * 300 + "/erp"}
    assert "`source`" in await _refused(http, url, app, long_source)


@pytest.mark.parametrize(
    ("system", "entity", "key", "data"),
    [
        ("erp", "SalesOrder", "10000001,10000002", None),  # a comma splits a batch read in two
        ("erp", "SalesOrder", "12345678901", None),  # SAP's VBELN holds 10 characters
        ("erp", "SalesOrder", "1000 0001", None),
        ("mes", "WorkCenter", "WC-10\n", None),
        ("mes", "ProductionOrder", "1000001", {"ManufacturingOrder": "1000001", "SalesOrder": "x" * 64}),
        ("tms", "Shipment", "1Z" + "9" * 40, None),
        ("qms", "InspectionLot", "4000000000000001", None),
    ],
    ids=["comma", "too-long-sales-order", "space", "newline", "bad-join-key", "too-long-tracking", "too-long-lot"],
)
async def test_keys_of_the_wrong_shape_are_refused(http, gateway, system, entity, key, data):
    url, app = gateway
    event = make_event(system, entity, "Changed" if entity != "Shipment" else "StatusUpdated", key, data=data)
    event["subject"] = key
    assert "is not a valid key" in await _refused(http, url, app, event)


async def test_real_sap_keys_pass_the_door(http, gateway):
    url, _app = gateway
    # External number ranges and leading zeros are real: the checks must not refuse them.
    for event in (
        make_event("erp", "SalesOrder", "Changed", "0000012345"),
        make_event("erp", "SalesOrder", "Changed", "SO2024A1"),
        make_event("mes", "WorkCenter", "Down", "PRESS_01"),
        make_event("tms", "Shipment", "StatusUpdated", "JJD000390007880123456"),
        make_event("qms", "InspectionLot", "Changed", "010000000123"),
    ):
        status, body = await post_events(http, url, event)
        assert status == 202, (event["subject"], body)


async def test_deeply_nested_data_is_a_400_not_a_500(http, gateway):
    url, app = gateway
    nested: dict = {"v": 1}
    for _ in range(600):
        nested = {"n": nested}
    event = make_event("mes", "WorkCenter", "Changed", "WC-10", data={"WorkCenter": "WC-10", "extra": nested})
    body = json.dumps(event).encode()  # orjson itself refuses to write 600 levels
    assert "nests deeper than 32 levels" in await _refused(http, url, app, event, body=body)
    # a record's ordinary nesting (sales order → items → schedule lines) passes
    ok = make_event("mes", "WorkCenter", "Changed", "WC-10", data={"WorkCenter": "WC-10", "a": [{"b": [{"c": 1}]}]})
    assert (await post_events(http, url, ok))[0] == 202


@pytest.mark.parametrize(
    "header",
    [
        "t=" + "9" * 400 + ",v1=" + "0" * 64,  # was a 500: OverflowError comparing with the clock
        "t=²,v1=" + "0" * 64,  # str.isdigit() says yes, int() says no
        "t=1700000000,v1=zz",
        "t=1700000000,v1=" + "é" * 64,  # hmac.compare_digest refuses non-ASCII text
    ],
    ids=["400-nines", "superscript-two", "short-mac", "non-ascii-mac"],
)
async def test_malformed_signatures_are_401(http, gateway, header):
    url, app = gateway
    event = make_event("mes", "WorkCenter", "Down", "WC-10")
    body = orjson.dumps(event)
    before = await _count(app)
    async with http.post(
        f"{url}/events", data=body, headers={"Content-Type": SINGLE, HEADER: header.encode("utf-8").decode("latin-1")}
    ) as resp:
        assert resp.status == 401, await resp.text()
        assert "malformed" in (await resp.json())["error"]
    assert await _count(app) == before


def test_verify_refuses_malformed_headers_without_crashing():
    body = b"{}"
    good = sign("s", body)
    assert verify("s", body, good)
    for header in ("t=" + "9" * 400 + ",v1=" + "0" * 64, "t=١٢٣,v1=" + "0" * 64, "t=1,v1=" + "é" * 64):
        with pytest.raises(SignatureError, match="malformed"):
            verify("s", body, header, now=1.0)


def _at(text: str) -> dict:
    event = make_event("mes", "WorkCenter", "Down", "WC-10")
    event["time"] = text
    return event


async def test_event_time_must_be_zoned_and_not_in_the_future(http, gateway):
    url, app = gateway
    now = dt.datetime.now(dt.UTC)
    refused = {
        "2099-01-01T00:00:00Z": "ahead of the gateway's clock",
        "9999-12-31T23:59:59Z": "ahead of the gateway's clock",
        "9999-12-31T23:59:59-14:00": "outside the years 1-9999",
        "0001-01-01T00:00:00+14:00": "outside the years 1-9999",
        "0001-01-01T00:00:00Z": "in the past",
        (now + dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ"): "ahead of the gateway's clock",
        now.strftime("%Y-%m-%dT%H:%M:%S"): "has no timezone",
        "yesterday": "not an RFC 3339 timestamp",
    }
    for text, why in refused.items():
        error = await _refused(http, url, app, _at(text))
        assert why in error, (text, error)
    accepted = [
        (now + dt.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),  # within the clock skew
        (now - dt.timedelta(days=7)).isoformat(),  # late events are real
        (now - dt.timedelta(hours=1)).astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat(),
    ]
    for text in accepted:
        status, body = await post_events(http, url, _at(text))
        assert status == 202, (text, body)


def test_limits_and_key_formats_are_configurable(tmp_path):
    config = tmp_path / "ordergraph.toml"
    config.write_text(
        '[events]\nmax_future_seconds = 30\nmax_data_depth = 4\nkey_formats = {SalesOrder = "SO-[0-9]{6}"}\n'
    )
    cfg = load_config(config, env={})
    registry = event_registry(cfg.events.limits())
    now = dt.datetime.now(dt.UTC)
    ok = make_event("erp", "SalesOrder", "Changed", "SO-123456")
    assert registry.parse(ok, now=now).key == "SO-123456"
    with pytest.raises(EventError, match="not a valid key"):
        registry.parse(make_event("erp", "SalesOrder", "Changed", "10000001"), now=now)
    with pytest.raises(EventError, match="ahead"):
        registry.parse({**ok, "time": (now + dt.timedelta(minutes=1)).isoformat()}, now=now)
    with pytest.raises(EventError, match="nests deeper than 4"):
        registry.parse({**ok, "data": {"SalesOrder": "SO-123456", "a": {"b": {"c": {"d": {"e": 1}}}}}}, now=now)
    # a broken pattern is a configuration error, not a crash at the first event
    config.write_text('[events]\nkey_formats = {SalesOrder = "[0-9"}\n')
    with pytest.raises(ConfigError, match="key_formats.SalesOrder"):
        load_config(config, env={})
    with pytest.raises(ConfigError, match="TOML"):
        load_config(None, env={"ORDERGRAPH_EVENTS_KEY_FORMATS": "x"})


def test_default_key_formats_take_every_key_of_the_simulated_plant():
    from sources.events import JOIN_KEYS
    from sources.simulator.world import World

    formats = KeyFormats()
    world = World.generate(orders=300)
    seen = 0
    for table in world.tables.values():
        for record in table.records():
            for field, value in record.to_api().items():
                if field in JOIN_KEYS and isinstance(value, str) and value:
                    assert formats.problem(field, value) is None, (field, value)
                    seen += 1
    assert seen > 1000
    assert EventLimits().key_formats.problem("SalesOrder", "A,B") is not None


async def test_the_signing_system_decides_the_secret_even_for_a_long_source(http, gateway):
    url, app = gateway
    # A body whose source names no known system is refused with a short message.
    event = {**make_event("mes", "WorkCenter", "Down", "WC-10"), "source": "/x/" + "y" * 5000}
    body = orjson.dumps(event)
    headers = {"Content-Type": SINGLE, HEADER: sign(DEV_SECRETS["mes"], body)}
    async with http.post(f"{url}/events", data=body, headers=headers) as resp:
        assert resp.status == 400
        assert len((await resp.json())["error"]) < 200
