"""Proactive customer notices: what to tell a customer about an order, and when.

Pure functions over an order's view (no I/O): ``order_facts`` derives what the customer
may be told of an order now; ``decide`` compares it with what the customer was last told
(``NoticeState``) and returns the new state and the notice items to send. The gateway
(``gateway/notices.py``) keeps the state and the outbox durably and in one step.

The rules (``NoticeRules``, from ``[notices]``):

- ``DELIVERY_DELAYED``: the predicted delivery date moves past the promise by at least
  ``date_move_working_days`` working days of the ship-to's calendar; once the customer
  knows a late date, a further move of at least that many working days (later or earlier
  but still late) is told again, with the new date.
- ``BACK_ON_TRACK``: after a delay was told, the predicted date is back within the promise.
- ``SHIPPED``: every ordered quantity (rejected items aside) left the plant and every
  delivery is with a carrier that gave a tracking number (told with the numbers; until
  the carrier has it, the goods issue alone is not told). A partial shipment is not
  "shipped".
- ``DELIVERED``: the carrier delivered every delivery and the delivered quantities cover
  every ordered quantity. A partial delivery is not "delivered"; an order read without its
  items is never "delivered" (nothing can be said by quantity).

An order seen for the first time gets a baseline, not a notice: starting the gateway does
not tell every customer everything at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sources.calendars import FactoryCalendar

from .prediction import PredictionParams, predict
from .view import OrderView

DELIVERY_DELAYED = "DELIVERY_DELAYED"
BACK_ON_TRACK = "BACK_ON_TRACK"
SHIPPED = "SHIPPED"
DELIVERED = "DELIVERED"
CRITICAL_UNACKNOWLEDGED = "CRITICAL_UNACKNOWLEDGED"  # internal
CUSTOMER_KINDS = (DELIVERY_DELAYED, BACK_ON_TRACK, SHIPPED, DELIVERED)
ALL_KINDS = (*CUSTOMER_KINDS, CRITICAL_UNACKNOWLEDGED)
LANGUAGES = ("en", "de")


@dataclasses.dataclass(frozen=True, slots=True)
class NoticeRules:
    """Which customer notices are on, and the date rule's threshold."""

    date_move_working_days: int = 1
    delayed: bool = True
    shipped: bool = True
    delivered: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class OrderFacts:
    """What a customer may be told about one order now (customer-safe only)."""

    sales_order: str
    customer: str
    customer_name: str
    language: str  # "en" or "de"
    promised: dt.date
    predicted: dt.date | None  # None once delivered
    shipped: bool
    delivered: bool
    delivered_at: dt.datetime | None
    tracking: tuple[tuple[str, str], ...]  # (carrier, tracking number)
    purchase_order: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class NoticeState:
    """What the customer was last told of an order: ``announced`` is the late date told
    (None: the customer counts on the promise); shipped and delivered, once told."""

    announced: dt.date | None = None
    shipped: bool = False
    delivered: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "announced": self.announced.isoformat() if self.announced else None,
            "shipped": self.shipped,
            "delivered": self.delivered,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NoticeState:
        a = data.get("announced")
        return cls(dt.date.fromisoformat(a) if a else None, bool(data.get("shipped")), bool(data.get("delivered")))


def language_of(code: str | None) -> str:
    """The notice language for an ERP language key (ISO 639-1, or SAP's one-letter D/E)."""
    c = (code or "").strip().lower()
    if c in ("de", "d", "ger", "deu"):
        return "de"
    return "en"


def fully_shipped(view: OrderView) -> bool:
    """Every ordered quantity (rejected items aside) left the plant, by the records."""
    quantities = view.item_quantities
    legs = view.legs
    if not quantities or not legs:
        return False
    if not all(leg.goods_issued for leg in legs) or not view.all_items_in_deliveries:
        return False
    return all(q.rejection_reason or q.shipped >= q.ordered for q in quantities) and any(
        not q.rejection_reason for q in quantities
    )


def fully_delivered(view: OrderView) -> bool:
    """The carrier delivered everything and the delivered quantities cover every ordered
    quantity (rejected items aside). A partial delivery is not delivered."""
    quantities = view.item_quantities
    if not quantities or not view.is_delivered:
        return False
    return all(q.rejection_reason or q.delivered >= q.ordered for q in quantities) and any(
        not q.rejection_reason for q in quantities
    )


def order_facts(view: OrderView, now: dt.datetime, params: PredictionParams = PredictionParams()) -> OrderFacts:
    """What the customer may be told about ``view``'s order at ``now``."""
    so = view.sales_order
    customer = view.customer
    delivered = fully_delivered(view)
    predicted = None if delivered else predict(view, now, params).predicted_delivery_date
    tracking = tuple(
        (leg.shipment.carrier, leg.shipment.tracking_number)
        for leg in view.legs
        if leg.shipment is not None and leg.goods_issued
    )
    return OrderFacts(
        sales_order=so.sales_order,
        customer=so.sold_to_party,
        customer_name=customer.customer_name if customer is not None else so.sold_to_party,
        language=language_of(getattr(customer, "language", None)),
        promised=view.promised_delivery_date,
        predicted=predicted,
        shipped=delivered or (fully_shipped(view) and all(leg.shipment is not None for leg in view.legs)),
        delivered=delivered,
        delivered_at=view.delivered_at if delivered else None,
        tracking=tracking,
        purchase_order=getattr(so, "purchase_order_by_customer", None) or None,
    )


def baseline(facts: OrderFacts, calendar: FactoryCalendar, rules: NoticeRules = NoticeRules()) -> NoticeState:
    """The state of an order seen for the first time: as if told (no notice at start)."""
    late = facts.predicted is not None and calendar.working_days_between(facts.promised, facts.predicted) >= max(
        1, rules.date_move_working_days
    )
    return NoticeState(facts.predicted if late else None, facts.shipped, facts.delivered)


def decide(
    state: NoticeState, facts: OrderFacts, calendar: FactoryCalendar, rules: NoticeRules = NoticeRules()
) -> tuple[NoticeState, list[dict[str, Any]]]:
    """The new state and the notice items (JSON-ready dicts, ``kind`` first) for ``facts``.

    ``calendar`` is the ship-to's delivery calendar (working days count there)."""
    items: list[dict[str, Any]] = []
    n = max(1, rules.date_move_working_days)
    announced, shipped, delivered = state.announced, state.shipped, state.delivered
    if facts.delivered:
        if not delivered and rules.delivered:
            items.append(
                {
                    "kind": DELIVERED,
                    "deliveredAt": facts.delivered_at.isoformat() if facts.delivered_at else None,
                    "tracking": [list(t) for t in facts.tracking],
                }
            )
        return NoticeState(None, True, True), items
    # Not (or no longer) delivered by the records: never say so; say nothing of a reversal.
    delivered = False
    if facts.shipped and not shipped and rules.shipped:
        items.append({"kind": SHIPPED, "tracking": [list(t) for t in facts.tracking]})
    shipped = facts.shipped
    if facts.predicted is not None and rules.delayed:
        predicted = facts.predicted
        if announced is None:
            if calendar.working_days_between(facts.promised, predicted) >= n:
                items.append(_date_item(DELIVERY_DELAYED, facts, None))
                announced = predicted
        elif predicted <= facts.promised:
            items.append(_date_item(BACK_ON_TRACK, facts, announced))
            announced = None
        elif abs(calendar.working_days_between(announced, predicted)) >= n:
            items.append(_date_item(DELIVERY_DELAYED, facts, announced))
            announced = predicted
    return NoticeState(announced, shipped, delivered), items


def _date_item(kind: str, facts: OrderFacts, previous: dt.date | None) -> dict[str, Any]:
    return {
        "kind": kind,
        "promised": facts.promised.isoformat(),
        "predicted": facts.predicted.isoformat() if facts.predicted else None,
        "previous": previous.isoformat() if previous else None,
    }


def merge(pending: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items of a notice still in its debounce window, with newer items folded in: one
    notice per order per window, saying the net change since the customer was last told.

    A delay and a recovery within one window cancel out when the customer had been told
    nothing late before; a later date replaces an earlier one; DELIVERED makes the date
    items moot."""
    items = [dict(i) for i in pending]
    for item in new:
        kind = item["kind"]
        if kind in (DELIVERY_DELAYED, BACK_ON_TRACK):
            old = next((i for i in items if i["kind"] in (DELIVERY_DELAYED, BACK_ON_TRACK)), None)
            if old is None:
                items.append(dict(item))
                continue
            items.remove(old)
            previous = old.get("previous")  # what the customer knew before this window
            if kind == BACK_ON_TRACK and previous is None:
                continue  # told nothing late before, and not late now: nothing to say
            if kind == DELIVERY_DELAYED and previous is not None and item.get("predicted") == previous:
                continue  # back to the late date the customer already knows
            items.append({**item, "previous": previous})
        else:
            items = [i for i in items if i["kind"] != kind]
            items.append(dict(item))
    if any(i["kind"] == DELIVERED for i in items):
        items = [i for i in items if i["kind"] not in (DELIVERY_DELAYED, BACK_ON_TRACK)]
    order = {k: n for n, k in enumerate(ALL_KINDS)}
    return sorted(items, key=lambda i: order.get(i["kind"], 99))
