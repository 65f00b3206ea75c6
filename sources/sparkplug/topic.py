"""Sparkplug B topic names.

``spBv1.0/<group_id>/<NBIRTH|NDEATH|NDATA|NCMD|DBIRTH|DDEATH|DDATA|DCMD>/<edge_node_id>[/<device_id>]``
— node messages have no device, device messages must have one; ``spBv1.0/STATE/<host_id>``
(Sparkplug 3.0) or ``STATE/<host_id>`` (2.x) is a primary host's state.
"""

from __future__ import annotations

import dataclasses

from .errors import SparkplugError

NAMESPACE = "spBv1.0"
NODE_TYPES = frozenset({"NBIRTH", "NDEATH", "NDATA", "NCMD"})
DEVICE_TYPES = frozenset({"DBIRTH", "DDEATH", "DDATA", "DCMD"})
SUBSCRIPTION = f"{NAMESPACE}/#"  # what a host subscribes to (plus STATE for host state)


@dataclasses.dataclass(frozen=True, slots=True)
class Topic:
    """A parsed Sparkplug topic; ``message_type`` is ``STATE`` for a host's state."""

    message_type: str
    group_id: str = ""
    edge_node_id: str = ""
    device_id: str | None = None
    host_id: str | None = None

    @property
    def is_device(self) -> bool:
        return self.message_type in DEVICE_TYPES

    def __str__(self) -> str:
        if self.message_type == "STATE":
            return f"{NAMESPACE}/STATE/{self.host_id}"
        tail = f"/{self.device_id}" if self.device_id is not None else ""
        return f"{NAMESPACE}/{self.group_id}/{self.message_type}/{self.edge_node_id}{tail}"


def _check_id(kind: str, value: str, topic: str) -> str:
    if not value or any(c in value for c in "+#/"):
        raise SparkplugError(f"topic {topic!r}: bad {kind} {value!r} (empty, or contains + # /)")
    return value


def parse_topic(topic: str) -> Topic:
    """Parse a Sparkplug topic; raise ``SparkplugError`` for anything else."""
    if not isinstance(topic, str) or not topic:
        raise SparkplugError("empty topic")
    parts = topic.split("/")
    if parts[0] == "STATE" and len(parts) == 2:
        return Topic("STATE", host_id=_check_id("host id", parts[1], topic))
    if parts[0] != NAMESPACE:
        raise SparkplugError(f"topic {topic!r} is not in the {NAMESPACE} namespace")
    if len(parts) == 3 and parts[1] == "STATE":
        return Topic("STATE", host_id=_check_id("host id", parts[2], topic))
    if len(parts) not in (4, 5):
        raise SparkplugError(f"topic {topic!r}: expected {NAMESPACE}/<group>/<type>/<edge node>[/<device>]")
    message_type = parts[2]
    if message_type in NODE_TYPES:
        if len(parts) != 4:
            raise SparkplugError(f"topic {topic!r}: {message_type} is a node message and takes no device id")
    elif message_type in DEVICE_TYPES:
        if len(parts) != 5:
            raise SparkplugError(f"topic {topic!r}: {message_type} needs a device id")
    else:
        raise SparkplugError(f"topic {topic!r}: unknown message type {message_type!r}")
    return Topic(
        message_type,
        group_id=_check_id("group id", parts[1], topic),
        edge_node_id=_check_id("edge node id", parts[3], topic),
        device_id=_check_id("device id", parts[4], topic) if len(parts) == 5 else None,
    )
