"""Impact analysis (what-if): apply a scenario to copies of order views and re-predict.

Nothing here changes a source: each scenario rewrites copies of the records it touches,
the prediction model (``prediction.py``) runs on the copies, and the result compares the
current and the new prediction per order. The scenarios and how they act on the records:

- ``WorkCenterDown(work_center, hours)``: the work centre goes DOWN now (or stays down since
  when it went down) and is expected up ``hours`` from now (on one already down: ``hours``
  after it is expected up now), exactly as the MES reports it when a machine breaks, and
  the MES reschedules its queue behind the downtime. The orders whose production the
  downtime holds or the queue pushes are affected.
- ``BatchBlocked(batch)``: the batch is put on quality hold now: a new inspection lot
  without usage decision. Orders whose goods already left the plant are not delayed.
- ``MaterialShort(material, quantity, until)``: ``quantity`` of the component goes missing
  until ``until``. Stock is taken from the reservations needed latest first (production
  orders not started yet, by scheduled start), as MRP would re-plan, so the earliest
  production keeps its material; the orders whose reservations are hit are affected.
- ``ShipmentDelayed(tracking_number, hours)``: the carrier's ETA (and ETA window) moves
  ``hours`` later; without an ETA, the current predicted delivery + ``hours`` becomes one.
- ``Expedite(sales_order)``: the order's production not started yet moves to the front of
  each of its work centres' queues; the jobs it passes wait for its work (less idle time).
  The result shows who gains (delivery earlier), who loses (later) and the value at risk
  relieved and added.

A work centre works through its queue in sequence (``sources.work_queue``): a downtime
pushes the running job and the queue behind it, each order by its own delay, until idle
time in the plan absorbs it, as the simulated MES reschedules when a machine breaks.

Per order the result carries current and new predicted dates, days late, value at risk
and severity (``exceptions.order_facts``); orders are ranked by commercial priority
(STRATEGIC first), then days late, then value at risk.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

from sources.records import ComponentAvailability, Customer, InspectionLot, ProductionOrder
from sources.work_queue import Job, downtime_delays, shifted
from sources.work_queue import expedite as expedite_queue

from .downtime import expected_up, held_by_downtime
from .enums import Severity
from .exception_rules import ExceptionParams, OrderFacts, order_facts, priority_rank
from .prediction import PredictionParams, predict
from .view import OrderView, lot_decided, lot_rejected, production_completed, production_started

WHAT_IF_LOT_PREFIX = "WHATIF-"


@dataclasses.dataclass(frozen=True, slots=True)
class WorkCenterDown:
    """A work centre down for ``hours`` from now; one already down: ``hours`` more than expected."""

    work_center: str
    hours: float


@dataclasses.dataclass(frozen=True, slots=True)
class BatchBlocked:
    """A batch put on quality hold now."""

    batch: str


@dataclasses.dataclass(frozen=True, slots=True)
class MaterialShort:
    """``quantity`` of a component missing until ``until``."""

    material: str
    quantity: float
    until: dt.date


@dataclasses.dataclass(frozen=True, slots=True)
class ShipmentDelayed:
    """A carrier shipment arriving ``hours`` later than its ETA."""

    tracking_number: str
    hours: float


@dataclasses.dataclass(frozen=True, slots=True)
class Expedite:
    """One order's production moved to the front of its work centres' queues."""

    sales_order: str


Scenario = WorkCenterDown | BatchBlocked | MaterialShort | ShipmentDelayed | Expedite


class ScenarioError(ValueError):
    """A scenario that cannot be analysed; the message is safe to show."""


def validate(scenario: Scenario) -> None:
    """Raise ScenarioError for values no plant could mean."""
    match scenario:
        case WorkCenterDown(work_center=wc, hours=hours):
            if not wc:
                raise ScenarioError("workCenterDown.workCenter must not be empty.")
            if not 0 < hours <= 24 * 366:
                raise ScenarioError("workCenterDown.hours must be greater than 0 and at most a year.")
        case BatchBlocked(batch=batch):
            if not batch:
                raise ScenarioError("batchBlocked.batch must not be empty.")
        case MaterialShort(material=material, quantity=quantity):
            if not material:
                raise ScenarioError("materialShort.material must not be empty.")
            if not quantity > 0:
                raise ScenarioError("materialShort.quantity must be greater than 0.")
        case Expedite(sales_order=so):
            if not so:
                raise ScenarioError("expedite.order must not be empty.")
        case ShipmentDelayed(tracking_number=tn, hours=hours):
            if not tn:
                raise ScenarioError("shipmentDelayed.trackingNumber must not be empty.")
            if not 0 < hours <= 24 * 366:
                raise ScenarioError("shipmentDelayed.hours must be greater than 0 and at most a year.")


# --- applying a scenario to copies ---------------------------------------------------------


def apply(
    scenario: Scenario,
    views: Sequence[OrderView],
    now: dt.datetime,
    prediction_params: PredictionParams = PredictionParams(),
) -> dict[str, OrderView]:
    """Changed copies of the views the scenario touches, by sales order (others left out)."""
    match scenario:
        case WorkCenterDown():
            return _work_center_down(scenario, views, now, prediction_params)
        case BatchBlocked():
            return _batch_blocked(scenario, views, now)
        case MaterialShort():
            return _material_short(scenario, views)
        case ShipmentDelayed():
            return _shipment_delayed(scenario, views, now, prediction_params)
        case Expedite():
            return _expedite(scenario, views, now, prediction_params)
    raise ScenarioError(f"unknown scenario {scenario!r}")


def _work_center_down(
    s: WorkCenterDown, views: Sequence[OrderView], now: dt.datetime, params: PredictionParams
) -> dict[str, OrderView]:
    """The work centre down for ``hours`` from now; on one already down, ``hours`` more than
    it is expected to be down (its expected-up time, or the default downtime when unknown).
    The MES reschedules its queue behind the (longer) downtime (``sources.work_queue``):
    each production order not started yet that it delays gets its new scheduled start and
    end. The orders it touches: those whose production the downtime holds or pushes."""
    record = next((v.work_centers[s.work_center] for v in views if s.work_center in v.work_centers), None)
    if record is None:
        return {}
    already_down = record.state.upper() == "DOWN"
    base = expected_up(record, now, params.default_downtime_hours) if already_down else now
    down = dataclasses.replace(
        record,
        state="DOWN",
        down_since=record.down_since if already_down else now,
        expected_up_at=base + dt.timedelta(hours=s.hours),
    )
    assert down.expected_up_at is not None
    mine = [
        po
        for view in views
        for po in view.active_production_orders
        if po.work_center == s.work_center and not production_completed(po)
    ]
    jobs = [Job(po.manufacturing_order, po.scheduled_start_date, po.scheduled_end_date, production_started(po))
            for po in mine]
    pushed = {
        key: start
        for key, start in downtime_delays(jobs, now=now, up_at=down.expected_up_at, plant=params.plant).items()
        if isinstance(start, dt.datetime)
    }
    out = {}
    for view in views:
        if s.work_center not in view.work_centers:
            continue
        orders = [_rescheduled(po, pushed.get(po.manufacturing_order), params) for po in view.production_orders]
        touched = any(
            po.work_center == s.work_center
            and (po.manufacturing_order in pushed or held_by_downtime(po, down, now, params.default_downtime_hours))
            for po in view.active_production_orders
        )
        if touched:
            out[view.sales_order.sales_order] = view.rescheduled(orders, {**view.work_centers, s.work_center: down})
    return out


def _rescheduled(po: ProductionOrder, start: dt.datetime | None, params: PredictionParams) -> ProductionOrder:
    """The production order moved to start at ``start`` (None or not later: as it is)."""
    if start is None or start <= po.scheduled_start_date:
        return po
    work = params.plant.working_time_between(po.scheduled_start_date, po.scheduled_end_date)
    return dataclasses.replace(
        po, scheduled_start_date=start, scheduled_end_date=params.plant.add_working_time(start, work)
    )


def _expedite(s: Expedite, views: Sequence[OrderView], now: dt.datetime, params: PredictionParams) -> dict[str, OrderView]:
    """The order's production not started yet goes to the front of each of its work
    centres' queues (``sources.work_queue.expedite``): it starts earlier, and the jobs it
    passes start later by its work, less idle time. The orders it touches: the expedited one
    and every order whose production moves."""
    mine = next((v for v in views if v.sales_order.sales_order == s.sales_order), None)
    if mine is None:
        return {}
    front = {
        po.work_center: set()
        for po in mine.active_production_orders
        if not production_started(po) and not production_completed(po)
    }
    for po in mine.active_production_orders:
        if po.work_center in front and not production_started(po) and not production_completed(po):
            front[po.work_center].add(po.manufacturing_order)
    shifts: dict[str, dt.timedelta] = {}
    for wc, keys in front.items():
        jobs = [
            Job(po.manufacturing_order, po.scheduled_start_date, po.scheduled_end_date, production_started(po))
            for view in views
            for po in view.active_production_orders
            if po.work_center == wc and not production_completed(po)
        ]
        shifts.update(expedite_queue(jobs, keys, now=now, plant=params.plant))
    out = {}
    for view in views:
        if not any(po.manufacturing_order in shifts for po in view.production_orders):
            continue
        orders = [_moved(po, shifts.get(po.manufacturing_order), params) for po in view.production_orders]
        out[view.sales_order.sales_order] = dataclasses.replace(view, production_orders=orders)
    return out


def _moved(po: ProductionOrder, shift: dt.timedelta | None, params: PredictionParams) -> ProductionOrder:
    """The production order moved by a working-time ``shift`` (negative: earlier)."""
    if not shift:
        return po
    start = shifted(po.scheduled_start_date, shift, params.plant)
    work = params.plant.working_time_between(po.scheduled_start_date, po.scheduled_end_date)
    return dataclasses.replace(po, scheduled_start_date=start, scheduled_end_date=params.plant.add_working_time(start, work))


def _batch_blocked(s: BatchBlocked, views: Sequence[OrderView], now: dt.datetime) -> dict[str, OrderView]:
    out = {}
    for view in views:
        lots = list(view.inspection_lots)
        hit = False
        for po in view.active_production_orders:
            if po.batch != s.batch:
                continue
            hit = True
            latest = view.latest_lot(po.manufacturing_order)
            if latest is not None and (not lot_decided(latest) or lot_rejected(latest)):
                continue  # already held, or rejected and remade: blocking changes nothing
            lots.append(
                InspectionLot(
                    inspection_lot=f"{WHAT_IF_LOT_PREFIX}{s.batch}",
                    material=po.material,
                    batch=s.batch,
                    manufacturing_order=po.manufacturing_order,
                    created_at=now,
                )
            )
        if hit:
            out[view.sales_order.sales_order] = dataclasses.replace(view, inspection_lots=lots)
    return out


def _material_short(s: MaterialShort, views: Sequence[OrderView]) -> dict[str, OrderView]:
    # Reservations that can still lose stock: unstarted production, latest needed first.
    candidates = []
    for view in views:
        for po in view.active_production_orders:
            if production_completed(po) or production_started(po):
                continue
            for c in view.components_for(po):
                if c.material == s.material and c.available_quantity > 0:
                    candidates.append((po.scheduled_start_date, c.reservation, view, c))
    candidates.sort(key=lambda t: (t[0], t[1]), reverse=True)
    remaining = s.quantity
    replaced: dict[str, dict[str, ComponentAvailability]] = {}
    views_by_so: dict[str, OrderView] = {}
    for _start, _res, view, c in candidates:
        if remaining <= 0:
            break
        take = min(remaining, c.available_quantity)
        remaining -= take
        available = round(c.available_quantity - take, 6)
        receipt = max(c.expected_receipt_date, s.until) if c.expected_receipt_date else s.until
        short = dataclasses.replace(
            c,
            available_quantity=available,
            shortage_quantity=round(max(c.required_quantity - available, 0.0), 6),
            expected_receipt_date=receipt,
        )
        so = view.sales_order.sales_order
        replaced.setdefault(so, {})[c.reservation] = short
        views_by_so[so] = view
    out = {}
    for so, changes in replaced.items():
        view = views_by_so[so]
        components = [changes.get(c.reservation, c) for c in view.components]
        out[so] = dataclasses.replace(view, components=components)
    return out


def _shipment_delayed(
    s: ShipmentDelayed, views: Sequence[OrderView], now: dt.datetime, params: PredictionParams
) -> dict[str, OrderView]:
    delay = dt.timedelta(hours=s.hours)
    out = {}
    for view in views:
        if not any(sh.tracking_number == s.tracking_number for sh in view.shipments):
            continue
        shipments = []
        for sh in view.shipments:
            if sh.tracking_number == s.tracking_number:
                eta = sh.estimated_delivery_at or sh.eta_window_end
                if eta is None:
                    eta = predict(view, now, params).delivery or now
                sh = dataclasses.replace(
                    sh,
                    estimated_delivery_at=eta + delay,
                    eta_window_start=sh.eta_window_start + delay if sh.eta_window_start else None,
                    eta_window_end=sh.eta_window_end + delay if sh.eta_window_end else None,
                )
            shipments.append(sh)
        out[view.sales_order.sales_order] = dataclasses.replace(view, shipments=shipments)
    return out


# --- the answer ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class OrderImpact:
    """One affected order: now, and under the scenario."""

    sales_order: str
    current: OrderFacts
    new: OrderFacts

    @property
    def delay_days(self) -> int:
        """Calendar days the predicted delivery moves (0 when unchanged)."""
        return (self.new.predicted - self.current.predicted).days

    @property
    def newly_late(self) -> bool:
        """Late under the scenario, not late now."""
        return self.new.late and not self.current.late


@dataclasses.dataclass(frozen=True, slots=True)
class ImpactResult:
    """The ranked affected orders and their totals."""

    scenario: Scenario
    orders: list[OrderImpact]

    @property
    def value_at_risk(self) -> float:
        """Sum of the orders' value at risk under the scenario."""
        return round(sum(o.new.value_at_risk for o in self.orders), 2)

    @property
    def added_value_at_risk(self) -> float:
        """Value at risk under the scenario minus value at risk now."""
        return round(self.value_at_risk - sum(o.current.value_at_risk for o in self.orders), 2)

    @property
    def delayed_orders(self) -> int:
        """Orders whose predicted delivery date moves later."""
        return sum(1 for o in self.orders if o.delay_days > 0)

    @property
    def earlier_orders(self) -> int:
        """Orders whose predicted delivery date moves earlier (who gains, e.g. by expedite)."""
        return sum(1 for o in self.orders if o.delay_days < 0)

    @property
    def value_at_risk_relieved(self) -> float:
        """Value no longer at risk under the scenario, over the orders that gain."""
        return round(sum(max(0.0, o.current.value_at_risk - o.new.value_at_risk) for o in self.orders), 2)

    @property
    def value_at_risk_added(self) -> float:
        """Value newly at risk under the scenario, over the orders that lose."""
        return round(sum(max(0.0, o.new.value_at_risk - o.current.value_at_risk) for o in self.orders), 2)

    @property
    def late_orders(self) -> int:
        """Orders predicted late under the scenario."""
        return sum(1 for o in self.orders if o.new.late)

    @property
    def newly_late_orders(self) -> int:
        """Orders the scenario makes late."""
        return sum(1 for o in self.orders if o.newly_late)

    @property
    def max_days_late(self) -> int:
        """The most working days late of any order under the scenario."""
        return max((o.new.days_late for o in self.orders), default=0)

    def by_severity(self) -> dict[Severity, int]:
        """How many orders end up at each severity."""
        counts = dict.fromkeys(Severity, 0)
        for o in self.orders:
            counts[o.new.severity] += 1
        return counts


def rank_key(o: OrderImpact) -> tuple[int, int, float, int, str]:
    """Commercial priority (STRATEGIC first), then days late, value at risk, delay."""
    return (
        priority_rank(o.new.commercial_priority),
        -o.new.days_late,
        -o.new.value_at_risk,
        -o.delay_days,
        o.sales_order,
    )


def analyse(
    scenario: Scenario,
    views: Sequence[OrderView],
    customers: Mapping[str, Customer | None],
    now: dt.datetime,
    *,
    params: ExceptionParams = ExceptionParams(),
    prediction_params: PredictionParams = PredictionParams(),
) -> ImpactResult:
    """Apply ``scenario`` to copies of ``views`` and compare the predictions per order.

    ``views`` are the candidate orders (those pegged to the scenario's record); the result
    lists the ones the scenario touches, delivered orders left out.
    """
    validate(scenario)
    changed = apply(scenario, views, now, prediction_params)
    # A work centre down only moves production in time and changes the work centre's
    # state (``OrderView.rescheduled``): the new view's facts that depend on neither are
    # the current view's (``order_facts``'s ``like``).
    rescheduled = isinstance(scenario, WorkCenterDown)
    out = []
    for view in views:
        so = view.sales_order.sales_order
        new_view = changed.get(so)
        if new_view is None or view.is_delivered or view.is_cancelled:
            continue
        customer = customers.get(view.sales_order.sold_to_party)
        current = order_facts(view, customer, now, params=params, prediction_params=prediction_params)
        new = order_facts(
            new_view,
            customer,
            now,
            params=params,
            prediction_params=prediction_params,
            like=current if rescheduled else None,
        )
        out.append(OrderImpact(so, current, new))
    out.sort(key=rank_key)
    return ImpactResult(scenario, out)
