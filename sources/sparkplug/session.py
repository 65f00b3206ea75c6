"""The host side of Sparkplug B: one session per edge node, fed every message in order.

Per edge node (``group_id`` + ``edge_node_id``):

- **NBIRTH** starts a session: its ``bdSeq`` metric names the session, its ``seq`` starts
  the 0–255 counter, its metrics declare every name and alias. Devices of the node are
  born with **DBIRTH** (their own aliases).
- **NDATA / DBIRTH / DDATA / DDEATH** must carry the next ``seq`` (255 wraps to 0). The
  same message twice (a QoS 1 redelivery) is a *duplicate* and changes nothing; any other
  ``seq`` is a *gap*: the host's picture is unreliable, so the node and its devices become
  stale, the message is dropped, and a rebirth is requested (NCMD
  ``Node Control/Rebirth`` = true). Until the NBIRTH comes, DATA is ignored.
- **NDEATH** (the broker's will) ends the session only if its ``bdSeq`` matches the
  birth's — a late will of an earlier connection changes nothing. **DDEATH** makes one
  device stale.
- DATA from a node never seen born (the host started after the birth) asks for a rebirth.

``SparkplugHost.receive`` returns an ``Update`` saying what the message did: its outcome,
its metrics with names resolved from the aliases, what became stale or live, and the
rebirth command to publish, if any. It raises ``SparkplugError`` only for topics and
payloads that are not Sparkplug at all; such a message changes no session, so the next
valid one will show the gap.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import hashlib
import time
from collections.abc import Callable

from .errors import SparkplugError
from .payload import DataType, Metric, Payload, decode_payload, encode_payload
from .topic import NAMESPACE, Topic, parse_topic

__all__ = ["Command", "EdgeNode", "NodeState", "Outcome", "SparkplugHost", "Update", "rebirth_command"]

REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"


class NodeState(enum.Enum):
    OFFLINE = "OFFLINE"  # never born, or died cleanly
    ONLINE = "ONLINE"  # born, every seq seen in order
    STALE = "STALE"  # a gap or a death: waiting for a rebirth


class Outcome(enum.Enum):
    BIRTH = "BIRTH"  # NBIRTH or DBIRTH applied
    DATA = "DATA"  # NDATA or DDATA applied
    DEATH = "DEATH"  # NDEATH (matching bdSeq) or DDEATH applied
    DUPLICATE = "DUPLICATE"  # the same message again: ignored
    GAP = "GAP"  # seq out of order: node stale, message dropped, rebirth asked
    IGNORED = "IGNORED"  # node not live (unknown or waiting for rebirth): dropped
    OLD_DEATH = "OLD_DEATH"  # NDEATH of an earlier session (bdSeq mismatch): ignored
    COMMAND = "COMMAND"  # NCMD/DCMD seen on the bus: nothing for the host to apply
    STATE = "STATE"  # a primary host's STATE message


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    """An MQTT message the host should publish (a rebirth request)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclasses.dataclass(slots=True)
class Update:
    """What one message did to the host's picture."""

    topic: Topic
    outcome: Outcome
    payload: Payload | None = None
    metrics: list[Metric] = dataclasses.field(default_factory=list)  # names resolved
    became_stale: list[str | None] = dataclasses.field(default_factory=list)  # devices (None: the node itself)
    became_live: list[str | None] = dataclasses.field(default_factory=list)
    rebirth: Command | None = None
    detail: str = ""
    host_online: bool | None = None  # for STATE messages
    bd_seq: int | None = None  # the edge node's session (from its NBIRTH)

    @property
    def edge_node(self) -> tuple[str, str]:
        return (self.topic.group_id, self.topic.edge_node_id)


@dataclasses.dataclass(slots=True)
class _Device:
    live: bool = False
    aliases: dict[int, tuple[str, DataType | None]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class EdgeNode:
    """The host's session with one edge node."""

    group_id: str
    edge_node_id: str
    state: NodeState = NodeState.OFFLINE
    bd_seq: int | None = None
    seq: int | None = None  # last seq applied
    aliases: dict[int, tuple[str, DataType | None]] = dataclasses.field(default_factory=dict)
    devices: dict[str, _Device] = dataclasses.field(default_factory=dict)
    births: int = 0
    gaps: int = 0
    duplicates: int = 0
    rebirths_requested: int = 0
    last_rebirth_at: float | None = None
    recent: collections.deque[bytes] = dataclasses.field(default_factory=lambda: collections.deque(maxlen=32))

    def live_devices(self) -> list[str]:
        return sorted(d for d, dev in self.devices.items() if dev.live)


def rebirth_command(group_id: str, edge_node_id: str, at: dt.datetime | None = None) -> Command:
    """NCMD ``Node Control/Rebirth`` = true for one edge node."""
    now = at or dt.datetime.now(dt.UTC)
    payload = Payload(timestamp=now, metrics=[Metric(name=REBIRTH_METRIC, datatype=DataType.Boolean, value=True, timestamp=now)])
    return Command(f"{NAMESPACE}/{group_id}/NCMD/{edge_node_id}", encode_payload(payload))


class SparkplugHost:
    """Every edge node's session, as seen by one (secondary) host application.

    ``rebirth_interval_seconds`` spaces rebirth requests to one node, so a node that keeps
    sending DATA while it reboots is not flooded with commands.
    """

    def __init__(
        self,
        *,
        rebirth_interval_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.rebirth_interval_seconds = rebirth_interval_seconds
        self._monotonic = monotonic
        self._clock = clock
        self.nodes: dict[tuple[str, str], EdgeNode] = {}

    def node(self, group_id: str, edge_node_id: str) -> EdgeNode:
        key = (group_id, edge_node_id)
        node = self.nodes.get(key)
        if node is None:
            node = self.nodes[key] = EdgeNode(group_id, edge_node_id)
        return node

    def receive(self, topic: str, payload: bytes) -> Update:
        """Apply one message, in the order the broker delivered it."""
        t = parse_topic(topic)
        if t.message_type == "STATE":
            return Update(t, Outcome.STATE, host_online=_host_online(payload))
        if t.message_type in ("NCMD", "DCMD"):
            return Update(t, Outcome.COMMAND)
        node = self.node(t.group_id, t.edge_node_id)
        digest = hashlib.blake2b(topic.encode() + b"\x00" + bytes(payload), digest_size=16).digest()
        handler = {
            "NBIRTH": self._nbirth,
            "NDEATH": self._ndeath,
            "NDATA": self._data,
            "DBIRTH": self._dbirth,
            "DDATA": self._data,
            "DDEATH": self._ddeath,
        }[t.message_type]
        if digest in node.recent and t.message_type != "NDEATH":
            node.duplicates += 1
            return Update(t, Outcome.DUPLICATE, detail="the same message again (a redelivery)")
        update = handler(node, t, payload)
        update.bd_seq = node.bd_seq
        if update.outcome in (Outcome.BIRTH, Outcome.DATA, Outcome.DEATH):
            node.recent.append(digest)
        return update

    # --- births and deaths -------------------------------------------------------------

    def _nbirth(self, node: EdgeNode, t: Topic, data: bytes) -> Update:
        payload = decode_payload(data)
        bd = payload.metric(BDSEQ_METRIC)
        if bd is None or not isinstance(bd.value, int) or isinstance(bd.value, bool):
            raise SparkplugError(f"{t}: NBIRTH without an integer {BDSEQ_METRIC} metric")
        if payload.seq is None:
            raise SparkplugError(f"{t}: NBIRTH without seq")
        aliases = _declare(t, payload.metrics)
        was_live = node.state is NodeState.ONLINE
        node.state = NodeState.ONLINE
        node.bd_seq = bd.value
        node.seq = payload.seq
        node.aliases = aliases
        node.devices = {}  # devices must be born again after their node
        node.recent.clear()
        node.births += 1
        return Update(t, Outcome.BIRTH, payload, list(payload.metrics), became_live=[] if was_live else [None])

    def _ndeath(self, node: EdgeNode, t: Topic, data: bytes) -> Update:
        payload = decode_payload(data)
        bd = payload.metric(BDSEQ_METRIC)
        if bd is None or not isinstance(bd.value, int) or isinstance(bd.value, bool):
            raise SparkplugError(f"{t}: NDEATH without an integer {BDSEQ_METRIC} metric")
        if node.bd_seq is None or bd.value != node.bd_seq:
            return Update(t, Outcome.OLD_DEATH, payload, detail=f"bdSeq {bd.value} is not the live session's ({node.bd_seq})")
        stale = self._stale_all(node) if node.state is NodeState.ONLINE else []
        node.state = NodeState.OFFLINE
        return Update(t, Outcome.DEATH, payload, became_stale=stale)

    def _dbirth(self, node: EdgeNode, t: Topic, data: bytes) -> Update:
        payload = decode_payload(data)
        checked = self._in_sequence(node, t, payload)
        if checked is not None:
            return checked
        assert t.device_id is not None
        device = node.devices.setdefault(t.device_id, _Device())
        device.aliases = _declare(t, payload.metrics)
        was_live = device.live
        device.live = True
        return Update(t, Outcome.BIRTH, payload, list(payload.metrics), became_live=[] if was_live else [t.device_id])

    def _ddeath(self, node: EdgeNode, t: Topic, data: bytes) -> Update:
        payload = decode_payload(data)
        checked = self._in_sequence(node, t, payload)
        if checked is not None:
            return checked
        assert t.device_id is not None
        device = node.devices.get(t.device_id)
        was_live = device is not None and device.live
        if device is not None:
            device.live = False
        return Update(t, Outcome.DEATH, payload, became_stale=[t.device_id] if was_live else [])

    # --- data ------------------------------------------------------------------------

    def _data(self, node: EdgeNode, t: Topic, data: bytes) -> Update:
        if t.device_id is not None:
            device = node.devices.get(t.device_id)
            aliases = device.aliases if device is not None else {}
        else:
            device, aliases = None, node.aliases
        types = {a: dt_ for a, (_n, dt_) in aliases.items() if dt_ is not None}
        payload = decode_payload(data, datatypes=types)
        checked = self._in_sequence(node, t, payload)
        if checked is not None:
            return checked
        if t.device_id is not None and (device is None or not device.live):
            # A device that was never born (or died): its aliases are unknown.
            return self._lost(node, t, payload, f"DDATA from device {t.device_id!r} that is not born")
        metrics = []
        for m in payload.metrics:
            if m.name is None:
                declared = aliases.get(m.alias) if m.alias is not None else None
                if declared is None:
                    return self._lost(node, t, payload, f"alias {m.alias} not declared in the birth certificate")
                m.name = declared[0]
            metrics.append(m)
        return Update(t, Outcome.DATA, payload, metrics)

    def _in_sequence(self, node: EdgeNode, t: Topic, payload: Payload) -> Update | None:
        """None when ``payload`` is the node's next message; else the Update that drops it."""
        if node.state is not NodeState.ONLINE:
            why = "waiting for a rebirth" if node.state is NodeState.STALE else "no NBIRTH seen for this edge node"
            update = Update(t, Outcome.IGNORED, payload, detail=why)
            update.rebirth = self._request_rebirth(node)
            return update
        if payload.seq is None:
            raise SparkplugError(f"{t}: {t.message_type} without seq")
        expected = ((node.seq if node.seq is not None else -1) + 1) % 256
        if payload.seq != expected:
            node.gaps += 1
            return self._lost(node, t, payload, f"seq {payload.seq} where {expected} was due", Outcome.GAP)
        node.seq = payload.seq
        return None

    def _lost(self, node: EdgeNode, t: Topic, payload: Payload, why: str, outcome: Outcome = Outcome.GAP) -> Update:
        """The picture of ``node`` is unreliable: stale until it is born again."""
        stale = self._stale_all(node)
        node.state = NodeState.STALE
        update = Update(t, outcome, payload, became_stale=stale, detail=why)
        update.rebirth = self._request_rebirth(node)
        return update

    def _stale_all(self, node: EdgeNode) -> list[str | None]:
        stale: list[str | None] = [None] if node.state is NodeState.ONLINE else []
        for name, device in sorted(node.devices.items()):
            if device.live:
                device.live = False
                stale.append(name)
        return stale

    def _request_rebirth(self, node: EdgeNode) -> Command | None:
        now = self._monotonic()
        if node.last_rebirth_at is not None and now - node.last_rebirth_at < self.rebirth_interval_seconds:
            return None
        node.last_rebirth_at = now
        node.rebirths_requested += 1
        return rebirth_command(node.group_id, node.edge_node_id, self._clock())


def _declare(t: Topic, metrics: list[Metric]) -> dict[int, tuple[str, DataType | None]]:
    """The alias table of a birth certificate; every metric must be named, aliases unique."""
    aliases: dict[int, tuple[str, DataType | None]] = {}
    for m in metrics:
        if not m.name:
            raise SparkplugError(f"{t}: a {t.message_type} metric without a name (alias {m.alias})")
        if m.datatype is None:
            raise SparkplugError(f"{t}: {t.message_type} metric {m.name!r} without a datatype")
        if m.alias is not None:
            if m.alias in aliases and aliases[m.alias][0] != m.name:
                raise SparkplugError(f"{t}: alias {m.alias} declared for both {aliases[m.alias][0]!r} and {m.name!r}")
            aliases[m.alias] = (m.name, m.datatype)
    return aliases


def _host_online(payload: bytes) -> bool:
    """A STATE payload: ``{"online": true, ...}`` (3.0) or ``ONLINE``/``OFFLINE`` (2.x)."""
    import orjson

    text = bytes(payload).strip()
    if text in (b"ONLINE", b"OFFLINE"):
        return text == b"ONLINE"
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise SparkplugError("STATE payload is neither JSON nor ONLINE/OFFLINE") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("online"), bool):
        raise SparkplugError("STATE payload has no boolean 'online'")
    return obj["online"]
