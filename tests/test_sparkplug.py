"""Sparkplug B decoding, the host's per edge node sessions, and the shop-floor mapping to
MES events (plus the plain-JSON profile)."""

from __future__ import annotations

import datetime as dt

import pytest

from sources import event_registry
from sources.sparkplug import (
    DataType,
    JsonMessageError,
    JsonProfile,
    Metric,
    MetricProfile,
    NodeState,
    Outcome,
    Payload,
    ShopFloorMapper,
    SparkplugError,
    SparkplugHost,
    decode_payload,
    encode_payload,
    parse_topic,
)
from sources.sparkplug import sparkplug_b_pb2 as pb

T0 = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)
G, E = "Plant1000", "line-2"


class EdgeNodeSim:
    """Publishes what a Sparkplug edge node would, with its own seq and bdSeq."""

    def __init__(self, group: str = G, edge: str = E, bd_seq: int = 0) -> None:
        self.group, self.edge, self.bd_seq, self.seq = group, edge, bd_seq, 0
        self.at = T0

    def _next(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def _tick(self) -> dt.datetime:
        self.at += dt.timedelta(seconds=1)
        return self.at

    def nbirth(self, *metrics: Metric) -> tuple[str, bytes]:
        self.seq = 0
        body = [Metric("bdSeq", None, DataType.Int64, self.bd_seq), Metric("Node Control/Rebirth", 1, DataType.Boolean, False), *metrics]
        return f"spBv1.0/{self.group}/NBIRTH/{self.edge}", encode_payload(Payload(self._tick(), body, seq=0))

    def ndeath(self, bd_seq: int | None = None) -> tuple[str, bytes]:
        bd = self.bd_seq if bd_seq is None else bd_seq
        return f"spBv1.0/{self.group}/NDEATH/{self.edge}", encode_payload(Payload(None, [Metric("bdSeq", None, DataType.Int64, bd)]))

    def node(self, kind: str, *metrics: Metric, seq: int | None = None) -> tuple[str, bytes]:
        return f"spBv1.0/{self.group}/{kind}/{self.edge}", encode_payload(Payload(self._tick(), list(metrics), seq=self._next() if seq is None else seq))

    def device(self, kind: str, device: str, *metrics: Metric, seq: int | None = None) -> tuple[str, bytes]:
        return (
            f"spBv1.0/{self.group}/{kind}/{self.edge}/{device}",
            encode_payload(Payload(self._tick(), list(metrics), seq=self._next() if seq is None else seq)),
        )


def machine_birth(state: str = "RUNNING", order: str = "1000123") -> list[Metric]:
    return [
        Metric("State", 10, DataType.String, state),
        Metric("Order/ManufacturingOrder", 11, DataType.String, order),
        Metric("Counts/Good", 12, DataType.UInt64, 0),
        Metric("Counts/Scrap", 13, DataType.UInt64, 0),
        Metric("Temperature", 14, DataType.Float, 61.5),
    ]


TYPES = {2: DataType.Double, 10: DataType.String, 12: DataType.UInt64, 13: DataType.UInt64}


def by_alias(alias: int, value, datatype: DataType | None = None) -> Metric:
    return Metric(None, alias, datatype or TYPES[alias], value)


# --- topics and payloads ---------------------------------------------------------------


def test_topics():
    t = parse_topic("spBv1.0/Plant1000/DDATA/line-2/WC-20")
    assert (t.message_type, t.group_id, t.edge_node_id, t.device_id, t.is_device) == ("DDATA", "Plant1000", "line-2", "WC-20", True)
    assert str(t) == "spBv1.0/Plant1000/DDATA/line-2/WC-20"
    assert parse_topic("spBv1.0/Plant1000/NBIRTH/line-2").device_id is None
    assert parse_topic("spBv1.0/STATE/scada-1").host_id == "scada-1"
    assert parse_topic("STATE/scada-1").message_type == "STATE"
    for bad in ["spBv1.0/Plant1000/NDATA/line-2/WC-20", "spBv1.0/Plant1000/DDATA/line-2", "spBv1.0/Plant1000/XDATA/line-2",
                "spAv1.0/Plant1000/NDATA/line-2", "spBv1.0//NDATA/line-2", "", "spBv1.0/Plant1000/NDATA"]:
        with pytest.raises(SparkplugError):
            parse_topic(bad)


def test_payload_round_trip_of_every_kind_of_value():
    metrics = [
        Metric("i8", 1, DataType.Int8, -5),
        Metric("i32", 2, DataType.Int32, -2_000_000_000),
        Metric("i64", 3, DataType.Int64, -(2**62)),
        Metric("u64", 4, DataType.UInt64, 2**63 + 7),
        Metric("f", 5, DataType.Float, 1.5),
        Metric("d", 6, DataType.Double, 2.25),
        Metric("b", 7, DataType.Boolean, True),
        Metric("s", 8, DataType.String, "RUNNING"),
        Metric("t", 9, DataType.DateTime, T0),
        Metric("ia", 10, DataType.Int16Array, [-1, 2, 300]),
        Metric("da", 11, DataType.DoubleArray, [0.5, -1.25]),
        Metric("ba", 12, DataType.BooleanArray, [True, False, False, True, True, False, True, False, True]),
        Metric("sa", 13, DataType.StringArray, ["a", "", "ßc"]),
        Metric("n", 14, DataType.String, None),
        Metric("bytes", 15, DataType.Bytes, b"\x00\xff"),
    ]
    out = decode_payload(encode_payload(Payload(T0, metrics, seq=42, uuid="u-1")))
    assert out.seq == 42 and out.timestamp == T0 and out.uuid == "u-1"
    assert [(m.name, m.datatype, m.value) for m in out.metrics] == [(m.name, m.datatype, m.value) for m in metrics]
    assert out.metric("n").is_null


def test_bad_payloads_are_typed_errors_naming_the_metric():
    with pytest.raises(SparkplugError, match="not a Sparkplug B protobuf"):
        decode_payload(b"\xff\xff\xff\xff not protobuf")
    raw = pb.Payload(seq=1)
    raw.metrics.add(name="Counts/Good", datatype=DataType.UInt64, string_value="twelve")
    with pytest.raises(SparkplugError, match="metric 'Counts/Good': UInt64 value sent in string_value"):
        decode_payload(raw.SerializeToString())
    raw = pb.Payload(seq=300)
    with pytest.raises(SparkplugError, match="seq 300 out of range"):
        decode_payload(raw.SerializeToString())
    raw = pb.Payload(seq=1)
    raw.metrics.add(datatype=DataType.Int32, int_value=3)
    with pytest.raises(SparkplugError, match="neither a name nor an alias"):
        decode_payload(raw.SerializeToString())
    raw = pb.Payload(seq=1)
    raw.metrics.add(name="x", datatype=99, int_value=3)
    with pytest.raises(SparkplugError, match="unknown datatype 99"):
        decode_payload(raw.SerializeToString())
    raw = pb.Payload(seq=1)
    raw.metrics.add(name="x", datatype=DataType.Int8, int_value=70000)
    with pytest.raises(SparkplugError, match="out of range for Int8"):
        decode_payload(raw.SerializeToString())
    with pytest.raises(SparkplugError, match="is not a UInt8"):
        encode_payload(Payload(T0, [Metric("x", 1, DataType.UInt8, 256)], seq=1))


# --- sessions --------------------------------------------------------------------------


def test_birth_declares_aliases_and_data_by_alias_is_resolved():
    host, edge = SparkplugHost(), EdgeNodeSim()
    u = host.receive(*edge.nbirth(Metric("Line/Speed", 2, DataType.Double, 10.0)))
    assert u.outcome is Outcome.BIRTH and u.became_live == [None] and u.bd_seq == 0
    u = host.receive(*edge.device("DBIRTH", "WC-20", *machine_birth()))
    assert u.outcome is Outcome.BIRTH and u.became_live == ["WC-20"]
    u = host.receive(*edge.device("DDATA", "WC-20", by_alias(12, 40), by_alias(10, "IDLE")))
    assert u.outcome is Outcome.DATA
    # Names and datatypes come from the device's birth certificate.
    assert [(m.name, m.datatype, m.value) for m in u.metrics] == [("Counts/Good", DataType.UInt64, 40), ("State", DataType.String, "IDLE")]
    u = host.receive(*edge.node("NDATA", by_alias(2, 12.5)))
    assert [(m.name, m.value) for m in u.metrics] == [("Line/Speed", 12.5)]
    node = host.nodes[(G, E)]
    assert node.state is NodeState.ONLINE and node.seq == 3 and node.live_devices() == ["WC-20"]


def test_data_metrics_without_a_datatype_take_the_births():
    host, edge = SparkplugHost(), EdgeNodeSim()
    host.receive(*edge.nbirth(Metric("Counts/Good", 12, DataType.Int64, 0)))
    raw = pb.Payload(seq=1, timestamp=1)
    raw.metrics.add(alias=12, long_value=2**64 - 3)  # Int64 -3, datatype left out as DATA may
    u = host.receive(f"spBv1.0/{G}/NDATA/{E}", raw.SerializeToString())
    assert [(m.name, m.datatype, m.value) for m in u.metrics] == [("Counts/Good", DataType.Int64, -3)]


def test_seq_wraps_from_255_to_0():
    host, edge = SparkplugHost(), EdgeNodeSim()
    host.receive(*edge.nbirth(Metric("Line/Speed", 2, DataType.Double, 1.0)))
    outcomes = [host.receive(*edge.node("NDATA", by_alias(2, float(i)))).outcome for i in range(300)]
    assert outcomes == [Outcome.DATA] * 300
    assert host.nodes[(G, E)].seq == 300 % 256 and host.nodes[(G, E)].gaps == 0


def test_a_seq_gap_makes_the_node_stale_and_asks_for_a_rebirth_once_per_interval():
    now = [0.0]
    host, edge = SparkplugHost(rebirth_interval_seconds=5, monotonic=lambda: now[0]), EdgeNodeSim()
    host.receive(*edge.nbirth())
    host.receive(*edge.device("DBIRTH", "WC-20", *machine_birth()))
    host.receive(*edge.device("DDATA", "WC-20", by_alias(12, 1)))
    edge._next()  # a message lost on the way
    u = host.receive(*edge.device("DDATA", "WC-20", by_alias(12, 3)))
    assert u.outcome is Outcome.GAP and "seq 4 where 3 was due" in u.detail
    assert u.became_stale == [None, "WC-20"] and u.metrics == []
    assert u.rebirth is not None and u.rebirth.topic == f"spBv1.0/{G}/NCMD/{E}"
    cmd = decode_payload(u.rebirth.payload)
    assert [(m.name, m.datatype, m.value) for m in cmd.metrics] == [("Node Control/Rebirth", DataType.Boolean, True)]
    # Until the rebirth, data is dropped; the request is not repeated within the interval.
    u = host.receive(*edge.device("DDATA", "WC-20", by_alias(12, 4)))
    assert u.outcome is Outcome.IGNORED and u.rebirth is None
    now[0] = 6.0
    assert host.receive(*edge.device("DDATA", "WC-20", by_alias(12, 5))).rebirth is not None
    assert host.nodes[(G, E)].rebirths_requested == 2
    # The rebirth restores the picture.
    edge.bd_seq = 1
    assert host.receive(*edge.nbirth()).became_live == [None]
    assert host.receive(*edge.device("DBIRTH", "WC-20", *machine_birth())).outcome is Outcome.BIRTH
    assert host.receive(*edge.device("DDATA", "WC-20", by_alias(12, 9))).outcome is Outcome.DATA


def test_duplicates_are_ignored_and_do_not_break_the_sequence():
    host, edge = SparkplugHost(), EdgeNodeSim()
    birth = edge.nbirth(Metric("Line/Speed", 2, DataType.Double, 1.0))
    host.receive(*birth)
    first = edge.node("NDATA", by_alias(2, 2.0))
    assert host.receive(*first).outcome is Outcome.DATA
    assert host.receive(*first).outcome is Outcome.DUPLICATE  # a QoS 1 redelivery
    assert host.receive(*birth).outcome is Outcome.DUPLICATE
    assert host.receive(*edge.node("NDATA", by_alias(2, 3.0))).outcome is Outcome.DATA
    node = host.nodes[(G, E)]
    assert node.duplicates == 2 and node.gaps == 0 and node.state is NodeState.ONLINE


def test_ndeath_matches_the_birth_by_bdseq():
    host, edge = SparkplugHost(), EdgeNodeSim(bd_seq=7)
    host.receive(*edge.nbirth())
    host.receive(*edge.device("DBIRTH", "WC-20", *machine_birth()))
    # A late will of an earlier connection: not this session's death.
    u = host.receive(*edge.ndeath(bd_seq=6))
    assert u.outcome is Outcome.OLD_DEATH and host.nodes[(G, E)].state is NodeState.ONLINE
    u = host.receive(*edge.ndeath())
    assert u.outcome is Outcome.DEATH and u.became_stale == [None, "WC-20"]
    assert host.nodes[(G, E)].state is NodeState.OFFLINE
    u = host.receive(*edge.device("DDATA", "WC-20", by_alias(12, 1)))
    assert u.outcome is Outcome.IGNORED and u.rebirth is not None


def test_ddeath_makes_one_device_stale():
    host, edge = SparkplugHost(), EdgeNodeSim()
    host.receive(*edge.nbirth())
    host.receive(*edge.device("DBIRTH", "WC-20", *machine_birth()))
    host.receive(*edge.device("DBIRTH", "WC-30", *machine_birth()))
    u = host.receive(*edge.device("DDEATH", "WC-20"))
    assert u.outcome is Outcome.DEATH and u.became_stale == ["WC-20"]
    assert host.nodes[(G, E)].live_devices() == ["WC-30"]
    # Data from the dead device: its aliases are no longer trusted.
    u = host.receive(*edge.device("DDATA", "WC-20", by_alias(12, 1)))
    assert u.outcome is Outcome.GAP and u.rebirth is not None


def test_data_before_any_birth_asks_for_a_rebirth():
    host, edge = SparkplugHost(), EdgeNodeSim()
    edge.seq = 17
    u = host.receive(*edge.node("NDATA", Metric("Line/Speed", None, DataType.Double, 1.0)))
    assert u.outcome is Outcome.IGNORED and u.rebirth is not None and "no NBIRTH" in u.detail


def test_an_undeclared_alias_makes_the_node_stale():
    host, edge = SparkplugHost(), EdgeNodeSim()
    host.receive(*edge.nbirth(Metric("Line/Speed", 2, DataType.Double, 1.0)))
    u = host.receive(*edge.node("NDATA", by_alias(99, 5, DataType.Int32)))
    assert u.outcome is Outcome.GAP and "alias 99 not declared" in u.detail and u.rebirth is not None


def test_a_bad_payload_raises_and_the_next_message_shows_the_gap():
    host, edge = SparkplugHost(), EdgeNodeSim()
    host.receive(*edge.nbirth(Metric("Line/Speed", 2, DataType.Double, 1.0)))
    with pytest.raises(SparkplugError):
        host.receive(f"spBv1.0/{G}/NDATA/{E}", b"\x0a\xff garbage")
    edge._next()  # the garbage took seq 1's place
    u = host.receive(*edge.node("NDATA", by_alias(2, 3.0)))
    assert u.outcome is Outcome.GAP


def test_births_must_be_complete():
    host, edge = SparkplugHost(), EdgeNodeSim()
    no_bdseq = encode_payload(Payload(T0, [Metric("State", 1, DataType.String, "RUNNING")], seq=0))
    with pytest.raises(SparkplugError, match="without an integer bdSeq"):
        host.receive(f"spBv1.0/{G}/NBIRTH/{E}", no_bdseq)
    clash = edge.nbirth(Metric("A", 5, DataType.Int32, 1), Metric("B", 5, DataType.Int32, 2))
    with pytest.raises(SparkplugError, match="alias 5 declared for both 'A' and 'B'"):
        host.receive(*clash)
    assert host.nodes[(G, E)].state is NodeState.OFFLINE


def test_host_state_messages():
    host = SparkplugHost()
    assert host.receive("spBv1.0/STATE/scada-1", b'{"online": true, "timestamp": 1}').host_online is True
    assert host.receive("STATE/scada-1", b"OFFLINE").host_online is False
    with pytest.raises(SparkplugError):
        host.receive("spBv1.0/STATE/scada-1", b"maybe")


# --- the shop floor as MES events ------------------------------------------------------


def test_machine_state_counts_and_confirmations_become_mes_events():
    registry = event_registry()
    host, edge = SparkplugHost(), EdgeNodeSim()
    mapper = ShopFloorMapper(registry, MetricProfile(plant_of=lambda group: group.removeprefix("Plant")))
    host.receive(*edge.nbirth())
    events = mapper.from_sparkplug(host.receive(*edge.device("DBIRTH", "WC-20", *machine_birth())))
    state, counts = events
    assert state.type == "ordergraph.mes.workcenter.v1.WorkCenter.Changed.v1" and state.key == "WC-20"
    assert state.data is not None and (state.data["State"], state.data["MachineState"], state.data["Plant"]) == ("UP", "RUNNING", "1000")
    assert state.record is not None and state.record.state == "UP"
    assert counts.entity == "ProductionOrder" and counts.action == "Changed" and counts.key == "1000123"
    assert counts.record is None  # a notification: the gateway re-reads the order
    assert counts.refs == {"ManufacturingOrder": "1000123", "WorkCenter": "WC-20"}

    down = mapper.from_sparkplug(host.receive(*edge.device("DDATA", "WC-20", by_alias(10, "FAULT"))))
    assert [e.type for e in down] == ["ordergraph.mes.workcenter.v1.WorkCenter.Down.v1"]
    assert down[0].record is not None and down[0].record.state == "DOWN"
    assert down[0].record.down_since == edge.at
    assert mapper.from_sparkplug(host.receive(*edge.device("DDATA", "WC-20", by_alias(10, "ALARM")))) == []  # still down
    up = mapper.from_sparkplug(host.receive(*edge.device("DDATA", "WC-20", by_alias(10, 6, DataType.Int32))))  # PackML Execute
    assert [e.action for e in up] == ["Up"] and up[0].data is not None and up[0].data["MachineState"] == "RUNNING"

    confirm = mapper.from_sparkplug(host.receive(*edge.device(
        "DDATA", "WC-20",
        Metric("Confirmation/ManufacturingOrder", None, DataType.String, "1000123"),
        Metric("Confirmation/Operation", None, DataType.String, "0020"),
        Metric("Confirmation/YieldQuantity", None, DataType.Double, 11.0),
        Metric("Confirmation/ScrapQuantity", None, DataType.Double, 1.0),
        Metric("Confirmation/Final", None, DataType.Boolean, True),
    )))
    assert [(e.type, e.key) for e in confirm] == [("sap.s4.beh.productionorder.v1.ProductionOrder.Confirmed.v1", "1000123")]
    assert confirm[0].data is not None and confirm[0].data["ConfirmationYieldQuantity"] == 11.0
    # Every event survives the journal's round trip (re-parsed by type and data).
    for e in [state, counts, *down, *up, *confirm]:
        again = registry.parse({"specversion": "1.0", "id": e.id, "source": "/x/mes", "type": e.type,
                                "time": e.occurred_at.isoformat(), "subject": e.key, "data": e.data})
        assert (again.entity, again.action, again.key) == (e.entity, e.action, e.key)


def test_the_same_message_gives_the_same_event_ids_and_unknown_states_are_reported():
    registry = event_registry()
    mapper_a, mapper_b = ShopFloorMapper(registry), ShopFloorMapper(registry)
    host_a, host_b, edge = SparkplugHost(), SparkplugHost(), EdgeNodeSim()
    birth, dbirth = edge.nbirth(), edge.device("DBIRTH", "WC-20", *machine_birth())
    ids = []
    for host, mapper in ((host_a, mapper_a), (host_b, mapper_b)):
        host.receive(*birth)
        ids.append([e.id for e in mapper.from_sparkplug(host.receive(*dbirth))])
    assert ids[0] == ids[1] and len(set(ids[0])) == 2  # a journal dedupes a replay
    odd = mapper_a.from_sparkplug(host_a.receive(*edge.device("DDATA", "WC-20", by_alias(10, "WARP SPEED"))))
    assert odd == [] and "unknown State value 'WARP SPEED'" in mapper_a.problems[-1]


def test_stale_work_centres_of_a_gap():
    mapper = ShopFloorMapper(event_registry())
    host, edge = SparkplugHost(), EdgeNodeSim()
    host.receive(*edge.nbirth())
    host.receive(*edge.device("DBIRTH", "WC-20", *machine_birth()))
    edge._next()
    u = host.receive(*edge.device("DDATA", "WC-20", by_alias(12, 1)))
    assert mapper.work_centers_of(u) == [E, "WC-20"]  # node metrics belong to the edge node's id


def test_json_profile():
    mapper = ShopFloorMapper(event_registry())
    profile = JsonProfile()
    assert profile.subscription == "shopfloor/+/+/+"
    down = profile.events(mapper, "shopfloor/1000/WC-20/state",
                          b'{"state": "DOWN", "at": "2026-11-30T08:00:00Z", "expectedUpAt": "2026-11-30T12:00:00Z", "reason": "spindle"}')
    assert [e.action for e in down] == ["Down"]
    rec = down[0].record
    assert rec is not None and rec.plant == "1000" and rec.expected_up_at == dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)
    counts = profile.events(mapper, "shopfloor/1000/WC-20/counts", b'{"manufacturingOrder": "1000123", "good": 120, "scrap": 3}')
    assert counts[0].key == "1000123" and counts[0].data is not None and counts[0].data["GoodCount"] == 120.0
    again = profile.events(mapper, "shopfloor/1000/WC-20/counts", b'{"manufacturingOrder": "1000123", "good": 120, "scrap": 3}')
    assert again[0].id == counts[0].id  # the same message twice is a duplicate for the journal
    conf = profile.events(mapper, "shopfloor/1000/WC-20/confirmation",
                          b'{"id": "c-77", "manufacturingOrder": "1000123", "operation": "0010", "yield": 12, "final": false}')
    assert conf[0].action == "PartiallyConfirmed" and conf[0].id == "json:1000:WC-20:confirmation:c-77"
    for topic, body, why in [
        ("shopfloor/1000/WC-20/state", b'{"state": "SLEEPY"}', "unknown state 'SLEEPY'"),
        ("shopfloor/1000/WC-20/state", b'{"state": "DOWN", "at": "yesterday"}', "at is not an ISO 8601 time"),
        ("shopfloor/1000/WC-20/state", b'{"state": "DOWN", "at": "2026-11-30T08:00:00"}', "needs a time zone"),
        ("shopfloor/1000/WC-20/counts", b'{"good": -1, "manufacturingOrder": "1"}', "good must be a non-negative number"),
        ("shopfloor/1000/WC-21/counts", b'{"good": 3}', "counts need manufacturingOrder"),
        ("shopfloor/1000/WC-20/confirmation", b'{"yield": 3}', "needs manufacturingOrder"),
        ("shopfloor/1000/WC-20/temperature", b"{}", "unknown kind 'temperature'"),
        ("shopfloor/1000/WC-20", b"{}", "expected shopfloor/<plant>/<work centre>"),
        ("shopfloor/1000/WC-20/state", b"[1]", "expected a JSON object"),
        ("shopfloor/1000/WC-20/state", b"{oops", "not JSON"),
    ]:
        with pytest.raises(JsonMessageError, match=why):
            profile.events(mapper, topic, body)
