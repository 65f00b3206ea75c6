"""Carrier tracking messages: AfterShip webhooks and EDI 214, as shipment events.

- ``aftership.verify_signature`` / ``parse_webhook`` → ``AfterShipWebhook`` with
  ``statuses`` and ``events(registry)``;
- ``edi214.parse_edi214`` → ``Edi214Message``s with ``statuses``, ``weights``,
  ``references`` and ``events(registry)``;
- ``status.CarrierStatus`` / ``status_events`` — the common shape both map to;
- ``codes`` — AT7 status and reason codes, time codes, AfterShip tags.
"""

from .aftership import HEADER as AFTERSHIP_HEADER
from .aftership import AfterShipError, AfterShipWebhook, parse_webhook, verify_signature
from .edi214 import Edi214Error, Edi214Message, Edi214Status, parse_edi214
from .status import CarrierStatus, status_events

__all__ = [
    "AFTERSHIP_HEADER",
    "AfterShipError",
    "AfterShipWebhook",
    "CarrierStatus",
    "Edi214Error",
    "Edi214Message",
    "Edi214Status",
    "parse_edi214",
    "parse_webhook",
    "status_events",
    "verify_signature",
]
