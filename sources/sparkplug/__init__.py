"""Shop floor over MQTT: Sparkplug B (and a plain-JSON profile) decoded into MES events.

- ``topic.parse_topic`` — Sparkplug topic names.
- ``payload.decode_payload`` / ``encode_payload`` — ``org.eclipse.tahu.protobuf.Payload``.
- ``session.SparkplugHost`` — per edge node sessions: births, aliases, ``seq`` order,
  ``bdSeq`` deaths, staleness and rebirth requests.
- ``shopfloor.ShopFloorMapper`` — work-centre state, counts and confirmations as the MES
  ``SourceEvent``s pushed events already produce; ``shopfloor.JsonProfile`` for plants
  without Sparkplug.
"""

from .errors import JsonMessageError, ShopFloorError, SparkplugError
from .payload import DataType, Metric, Payload, decode_payload, encode_payload
from .session import Command, EdgeNode, NodeState, Outcome, SparkplugHost, Update, rebirth_command
from .shopfloor import STATES, JsonProfile, MetricProfile, ShopFloorMapper
from .topic import NAMESPACE, SUBSCRIPTION, Topic, parse_topic

__all__ = [
    "NAMESPACE",
    "STATES",
    "SUBSCRIPTION",
    "Command",
    "DataType",
    "EdgeNode",
    "JsonMessageError",
    "JsonProfile",
    "Metric",
    "MetricProfile",
    "NodeState",
    "Outcome",
    "Payload",
    "ShopFloorError",
    "ShopFloorMapper",
    "SparkplugError",
    "SparkplugHost",
    "Topic",
    "Update",
    "decode_payload",
    "encode_payload",
    "parse_topic",
    "rebirth_command",
]
