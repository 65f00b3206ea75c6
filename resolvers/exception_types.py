"""GraphQL surface of exceptions and impact analysis.

Thin types over the pure records of ``exception_rules.py`` and ``impact.py``. The open set and
the transitions come from the gateway's exception tracker (``info.context.exceptions``,
typed as ``rules.ExceptionSource``); ``Order.exceptions`` (``fetch.order_exceptions``) and
``impact`` compute live from order views loaded through ``fetch`` and the request's loaders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry import Info

from sources.memory import gc_paused, gc_paused_for_this_step, reads_frozen

from . import enums, fetch, impact, workflow
from . import exception_board as board
from . import exception_rules as rules
from .context import Context
from .execution import KeptItems
from .needs import field_needs
from .orders import build_orders
from .pagination import (
    Cursors,
    PageInfo,
    decode_board_cursor,
    encode_board_cursor,
    encode_transition_cursor,
    page_info,
    process_cursors,
)
from .types import CommercialPriority, Money, Order
from .workflow_types import (
    ExceptionWorkflowType,
    WorkflowStatus,
    escalated_impact,
    exception_workflow,
)

Severity = strawberry.enum(enums.Severity, description="How badly an exception threatens delivery promises.")
ExceptionKind = strawberry.enum(enums.ExceptionKind, description="What went wrong (DOMAIN.md exception kinds).")
ExceptionAction = strawberry.enum(enums.ExceptionAction, description="A step in an exception's life.")



def _bad_input(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


def _ctx(info: Info) -> Context:
    return info.context


def _tracker(ctx: Context) -> rules.ExceptionSource:
    tracker = ctx.exceptions
    if tracker is None:
        raise GraphQLError("Exception tracking is not running in this gateway.", extensions={"code": "UNAVAILABLE"})
    return tracker


def _is_customer(ctx: Any) -> bool:
    viewer = getattr(ctx, "viewer", None)
    return viewer is not None and viewer.is_customer


def kind_for_viewer(ctx: Any, kind: enums.ExceptionKind) -> enums.ExceptionKind:
    """The kind a viewer sees: customers see both blocks as AWAITING_RELEASE (never their
    credit status)."""
    return rules.customer_kind(kind) if _is_customer(ctx) else kind


def text_for_viewer(ctx: Any, internal_text: str, customer_text: str) -> str:
    """Which description a viewer sees: the one place that decides it.

    Internal viewers (planners, customer service) get the internal text; customer viewers
    (``resolvers.policy``) the customer-safe one.
    """
    viewer = getattr(ctx, "viewer", None)
    return customer_text if viewer is not None and viewer.is_customer else internal_text


def visible_to(ctx: Any, record: rules.ExceptionRecord) -> rules.ExceptionRecord | None:
    """The exception as the viewer may see it: a customer sees only its own orders in it
    (and the severity, days late and value at risk of those), or nothing if none is."""
    viewer = getattr(ctx, "viewer", None)
    if viewer is None or not viewer.is_customer:
        return record
    own = {so: d for so, d in record.affected.items() if d.customer == viewer.customer}
    if not own:
        return None
    return dataclasses.replace(record, affected=own)


def _money(amount: float, currency: str) -> Money:
    return Money(amount=round(amount, 2), currency=currency)


# --- exceptions ------------------------------------------------------------------------------


@strawberry.type(description="The record an exception comes from, in its source system.")
class RootCause:
    system: str = strawberry.field(description="erp, mes, wms, qms or tms.")
    entity: str = strawberry.field(description="WorkCenter, InspectionLot, Material, Shipment, SalesOrder, ...")
    key: str = strawberry.field(description="The record's key in that system, e.g. WC-20.")
    label: str = strawberry.field(description="Plant words for it, e.g. the work centre's name or the batch.")


@strawberry.type(description="One order an exception hits, with that order's severity and value at risk.")
class AffectedOrder:
    # One per affected order of every open exception, made before ready and kept with it
    # (``affected_orders``): no instance dict, one object each (78,000 at 100,000 orders).
    __slots__ = ("detection",)

    detection: strawberry.Private[rules.Detection]

    @strawberry.field
    def order_id(self) -> strawberry.ID:
        return strawberry.ID(self.detection.sales_order)

    @strawberry.field
    async def order(self, info: Info) -> Order | None:
        rec = await _ctx(info).loaders.sales_order.load(self.detection.sales_order)
        return Order(record=rec) if rec else None

    @strawberry.field
    def customer_id(self) -> strawberry.ID:
        return strawberry.ID(self.detection.customer)

    @strawberry.field
    def commercial_priority(self) -> CommercialPriority:
        return CommercialPriority(self.detection.commercial_priority)

    @strawberry.field(description="This order's severity.")
    def severity(self) -> Severity:
        return self.detection.severity

    @strawberry.field(description="Working days past the promise (0 when on time).")
    def days_late(self) -> int:
        return self.detection.days_late

    @strawberry.field(description="The order's net value while its promise is in jeopardy, else 0.")
    def value_at_risk(self) -> Money:
        return _money(self.detection.value_at_risk, self.detection.currency)

    @strawberry.field
    def net_value(self) -> Money:
        return _money(self.detection.net_value, self.detection.currency)

    @strawberry.field(description="The delivery promise (confirmed delivery date).")
    def confirmed_delivery_date(self) -> dt.date:
        return self.detection.promised_delivery_date

    @strawberry.field(description="null while a block holds the order (no date is known until it is released).")
    def predicted_delivery_date(self) -> dt.date | None:
        return None if self.detection.held else self.detection.predicted_delivery_date

    @strawberry.field(
        description="True when the order is predicted to keep its promise despite this exception (not late, not "
        "held by a block). MACHINE_DOWN counts value at risk only for orders whose promise breaks."
    )
    def promise_holds(self) -> bool:
        return self.detection.promise_holds

    @strawberry.field(
        description="Working days from the predicted to the promised delivery date (ship-to's calendar); "
        "negative when late. What the order can absorb before its promise breaks."
    )
    def slack_working_days(self) -> int:
        return self.detection.slack

    @strawberry.field(description="What happens to this order, for the viewer (see customerDescription).")
    def description(self, info: Info) -> str:
        return text_for_viewer(info.context, self.detection.internal_text, self.detection.customer_text)

    @strawberry.field(description="Customer-safe text: no internal records, priorities or values.")
    def customer_description(self) -> str:
        return self.detection.customer_text


def _affected_orders(detections: list[rules.Detection]) -> KeptItems:
    """An exception's affected orders for the schema, kept with it (``orders_view``) while
    its orders are the same: ``AffectedOrder`` reads nothing but its frozen detection
    without ``info``, so the fast executor may keep their completed fields too."""
    return KeptItems(AffectedOrder(detection=d) for d in detections)


def affected_orders(record: rules.ExceptionRecord) -> KeptItems:
    """``OrderException.affected``: the record's affected orders in page order, wrapped for
    the schema once per state of its orders (``ExceptionRecord.orders_view``). The exception
    tracker calls it for every open exception before its ready line, so the first page asked
    for after ready does not wrap each of its orders (34,000 at 100,000 orders) itself."""
    return record.orders_view(_affected_orders)  # type: ignore[no-any-return]


@strawberry.type(description="An exception: one root cause and every order it hits.")
class OrderException:
    record: strawberry.Private[rules.ExceptionRecord]
    # Read as one order's exception (Order.exceptions): its texts are that order's own.
    for_order: strawberry.Private[bool] = False

    @strawberry.field(description="Stable id: <KIND>:<system>:<key>, e.g. MACHINE_DOWN:mes:WC-20.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.record.id)

    @strawberry.field(description="Customers see CREDIT_BLOCK and DELIVERY_BLOCK as AWAITING_RELEASE.")
    def kind(self, info: Info) -> ExceptionKind:
        return kind_for_viewer(info.context, self.record.kind)

    @strawberry.field(description="The most severe of the affected orders.")
    def severity(self) -> Severity:
        return self.record.severity

    @strawberry.field
    def root_cause(self) -> RootCause:
        r = self.record.root
        return RootCause(system=r.system, entity=r.entity, key=r.key, label=r.label)

    @strawberry.field(description="When it was first raised.")
    def detected_at(self) -> dt.datetime:
        return self.record.detected_at

    @strawberry.field
    def cleared_at(self) -> dt.datetime | None:
        return self.record.cleared_at

    @strawberry.field(
        description="How long it has been open (until clearedAt once cleared), in seconds on the clock detectedAt "
        "is on: the plant's, which the demo runs faster than the wall clock."
    )
    def age_seconds(self, info: Info) -> int:
        end = self.record.cleared_at or info.context.now
        return max(0, int((end - self.record.detected_at).total_seconds()))

    @strawberry.field(name="open")
    def is_open(self) -> bool:
        return self.record.open

    @strawberry.field(description="The most working days late of the affected orders.")
    def days_late(self) -> int:
        return self.record.days_late

    @strawberry.field(description="Sum of the affected orders' value at risk.")
    def value_at_risk(self) -> Money:
        return _money(self.record.value_at_risk, self.record.currency)

    @strawberry.field(description="Sum of the affected orders' net value.")
    def net_value(self) -> Money:
        return _money(self.record.net_value, self.record.currency)

    @strawberry.field
    def affected_order_count(self) -> int:
        return len(self.record.affected)

    @strawberry.field(description="Each affected order with its own severity, days late and value at risk.")
    def affected(self) -> list[AffectedOrder]:
        return affected_orders(self.record)

    @strawberry.field(description="The affected orders, most severe first.")
    async def affected_orders(self, info: Info) -> list[Order]:
        ids = [d.sales_order for d in self.record.orders()]
        recs = await _ctx(info).loaders.sales_order.load_many(ids)
        return await build_orders(_ctx(info), [rec for rec in recs if rec is not None], field_needs(info))  # type: ignore[return-value]

    @strawberry.field(description="What happened, for the viewer (see customerDescription).")
    def description(self, info: Info) -> str:
        if self.for_order:
            d = self._detection()
            return text_for_viewer(info.context, d.internal_text, d.customer_text)
        return text_for_viewer(info.context, self.record.internal_text, self.record.customer_text)

    @strawberry.field(
        description="Customer-safe text: no internal records, priorities or values. Under "
        "Order.exceptions, the order's own text, with its new expected delivery date when late."
    )
    def customer_description(self) -> str:
        if self.for_order:
            return self._detection().customer_text
        return self.record.customer_text

    def _detection(self) -> rules.Detection:
        return next(iter(self.record.affected.values()))

    @strawberry.field(description="Internal roles: acknowledgement, owner, snooze, resolution and audit trail.")
    def workflow(self, info: Info) -> ExceptionWorkflowType:
        # Synchronous when the request's snapshot is read already (a board page: no
        # awaitable per row), else an awaitable that reads it.
        return exception_workflow(info, self.record.id)


@strawberry.input(description="Which exceptions to list; all given filters must match.")
class ExceptionFilter:
    kinds: list[ExceptionKind] | None = None
    min_severity: Severity | None = None
    customer: strawberry.ID | None = strawberry.field(default=None, description="Hits an order of this customer.")
    work_center: strawberry.ID | None = strawberry.field(
        default=None, description="Rooted at this work centre, or hits an order with open production on it."
    )
    open_only: bool = strawberry.field(default=True, description="false adds recently cleared exceptions.")
    # Workflow filters (internal roles; resolvers/workflow.py)
    status: list[WorkflowStatus] | None = strawberry.field(
        default=None, description="Internal roles: in one of these workflow states (NEW, ACKNOWLEDGED, SNOOZED, RESOLVED)."
    )
    mine: bool | None = strawberry.field(
        default=None, description="Internal roles: true = assigned to you (a person named as your token's subject)."
    )
    unassigned: bool | None = strawberry.field(
        default=None, description="Internal roles: true = nobody owns it; false = someone does."
    )


@strawberry.type
class ExceptionEdge:
    cursor: str
    node: OrderException


@strawberry.type(description="A page of exceptions, most severe first, then by value at risk.")
class ExceptionConnection:
    edges: list[ExceptionEdge]
    page_info: PageInfo
    # The request's choice from the board: counted and summed only when asked.
    selection: strawberry.Private[board.Selection]

    @strawberry.field(description="Exceptions matching the filter, over all pages.")
    def total_count(self) -> int:
        return self.selection.count()

    @strawberry.field(description="Their value at risk, over all pages.")
    def total_value_at_risk(self) -> Money:
        amount, currency = self.selection.totals()
        return _money(amount, currency)

    # Resolvers too (after the totals), so the schema lists the fields in the same order.
    transition: strawberry.Private[str]

    @strawberry.field(
        description="Subscribe to exceptionsChanged with `after` set to this to get every change since this answer."
    )
    def transition_cursor(self) -> str:
        return self.transition

    @strawberry.field
    def nodes(self) -> list[OrderException]:
        return [e.node for e in self.edges]


def matches(
    record: rules.ExceptionRecord,
    *,
    kinds: set[enums.ExceptionKind] | None = None,
    min_severity: enums.Severity | None = None,
    customer: str | None = None,
    work_center: str | None = None,
) -> bool:
    """The exception board's filters, shared by ``exceptions`` and ``exceptionsChanged``."""
    if kinds and record.kind not in kinds:
        return False
    if min_severity is not None and record.severity.rank < min_severity.rank:
        return False
    if customer is not None and customer not in record.customers:
        return False
    return work_center is None or work_center in record.work_centers


def _filter_kinds(ctx: Context, kinds: list[Any] | None) -> set[enums.ExceptionKind] | None:
    """The rule kinds a kinds filter selects, as the viewer names kinds: AWAITING_RELEASE
    is both blocks; a customer naming a block kind gets what AWAITING_RELEASE gets (the
    answer must not tell the two apart)."""
    if not kinds:
        return None
    out: set[enums.ExceptionKind] = set()
    for k in kinds:
        kind = enums.ExceptionKind(k.value)
        out |= rules.kinds_matching(kind_for_viewer(ctx, kind))
    return out


def _ready_view(ctx: Context) -> workflow.WorkflowView | None:
    """The request's workflow snapshot, once read (``fetch.workflow_view``)."""
    view = ctx.workflow_view
    return view if isinstance(view, workflow.WorkflowView) else None


def _workflow_filter(ctx: Context, f: ExceptionFilter) -> Any:
    """The filter's workflow part as a predicate on exception ids, or None when not asked."""
    if f.status is None and f.mine is None and f.unassigned is None:
        return None
    if _is_customer(ctx):
        raise GraphQLError("Workflow filters (status, mine, unassigned) are for internal roles.", extensions={"code": "FORBIDDEN"})
    view = _ready_view(ctx)
    if view is None:
        raise GraphQLError("The workflow store is not running in this gateway.", extensions={"code": "UNAVAILABLE"})
    statuses = {workflow.WorkflowStatus(s.value) for s in f.status} if f.status else None
    me = workflow.Assignee(workflow.AssigneeKind.PERSON, ctx.viewer.subject)
    mine = f.mine

    def keep(exception_id: str) -> bool:
        if not view.matches(exception_id, statuses=statuses, unassigned=f.unassigned):
            return False
        return mine is None or (view.state(exception_id).assignee == me) == mine

    return keep


def list_exceptions(ctx: Context, f: ExceptionFilter, first: int, after: str | None) -> ExceptionConnection:
    """``Query.exceptions``: the tracker's open set (plus recently cleared), filtered and
    paged. The tracker keeps both in board order (``resolvers/exception_board.py``): a page
    costs what it shows, not the whole set's sort; the answer is the same."""
    if first < 0:
        raise _bad_input("`first` must not be negative.")
    if first > ctx.max_first:
        raise _bad_input(f"`first` is at most {ctx.max_first}; page with `after`.")
    start = decode_board_cursor(ctx.cursors, after) if after else None
    tracker = _tracker(ctx)
    cursor = tracker.last_cursor  # read first: the records below are at least this fresh
    boards = [tracker.board()]
    if not f.open_only:
        boards.append(tracker.board(closed=True))
    wf = _workflow_filter(ctx, f)
    view = _ready_view(ctx)  # escalated orders count one severity higher (internal viewers)
    escalated = view.escalated if view is not None else frozenset()
    kinds = _filter_kinds(ctx, f.kinds)
    min_severity = enums.Severity(f.min_severity.value) if f.min_severity else None
    customer = str(f.customer) if f.customer is not None else None
    work_center = str(f.work_center) if f.work_center is not None else None

    def show(record: rules.ExceptionRecord) -> rules.ExceptionRecord | None:
        v = visible_to(ctx, record)
        if v is not None and view is not None:
            v = workflow.escalate_record(v, escalated)
        return v

    def chosen(r: rules.ExceptionRecord) -> bool:
        return matches(r, kinds=kinds, min_severity=min_severity, customer=customer, work_center=work_center) and (
            wf is None or wf(r.id)
        )

    # A customer viewer sees only records of its own orders (restricted to them); a
    # customer filter keeps only records of that customer: both read that customer's alone.
    customers = {ctx.viewer.customer} if _is_customer(ctx) else {customer} if customer is not None else None
    chosen_page = board.select(
        boards,
        first=first,
        start=start,
        show=show,
        chosen=chosen,
        escalated=escalated,
        customers=customers,
        min_rank=min_severity.rank if min_severity is not None else None,
        kinds=kinds,
        work_center=work_center,
        keep_id=wf,
    )
    edges = [
        ExceptionEdge(cursor=encode_board_cursor(ctx.cursors, key), node=OrderException(record=r))
        for key, r in chosen_page.page
    ]
    return ExceptionConnection(
        edges=edges,
        page_info=page_info([e.cursor for e in edges], has_next=chosen_page.has_next, has_previous=start is not None),
        selection=chosen_page,
        transition=encode_transition_cursor(ctx.cursors, cursor),
    )


def get_exception(ctx: Context, exception_id: str) -> OrderException | None:
    """``Query.exception``: one open or recently cleared exception."""
    record = _tracker(ctx).get(exception_id)
    if record is not None and (view := _ready_view(ctx)) is not None:
        record = workflow.escalate_record(record, view.escalated)
    visible = visible_to(ctx, record) if record is not None else None
    return OrderException(record=visible) if visible is not None else None


@strawberry.type(description="An exception raised, updated or cleared; resume with `after: cursor`.")
class ExceptionTransition:
    cursor: str
    action: ExceptionAction
    at: dt.datetime = strawberry.field(description="When the gateway saw the change.")
    exception: OrderException = strawberry.field(
        description="The exception after the change (a cleared one keeps the orders it last hit)."
    )
    previous_severity: Severity | None = strawberry.field(description="Severity before an UPDATED or CLEARED.")
    removed_order_ids: list[strawberry.ID] = strawberry.field(
        description="Orders the exception stopped hitting in this step."
    )


def transition_message(
    payload: dict[str, Any],
    cursor: int,
    at: dt.datetime,
    *,
    min_severity: enums.Severity | None,
    customer: str | None,
    viewer: Any = None,
    cursors: Cursors | None = None,
    escalated: frozenset[str] = frozenset(),
) -> ExceptionTransition | None:
    """The ``exceptionsChanged`` root value of one journaled transition, or None when it
    does not match the subscription (``payload`` as the tracker journals it).

    A transition matches ``min_severity`` when the exception is at or above it now or was
    before (so a subscriber sees it drop out), and ``customer`` when it hits or stopped
    hitting one of that customer's orders. A customer viewer gets the exception restricted
    to its own orders; one that stopped hitting them is CLEARED for that viewer, and an
    UPDATED step that changed none of them (``payload["changed"]``) is not sent at all.
    ``escalated``: the orders escalated now (internal viewers see them one severity higher).
    """
    record = rules.ExceptionRecord.from_payload(payload)
    if escalated and (viewer is None or not viewer.is_customer):  # internal viewers: escalations count
        record = workflow.escalate_record(record, escalated)
    action = enums.ExceptionAction(payload.get("action", "RAISED"))
    previous = enums.Severity(payload["previousSeverity"]) if payload.get("previousSeverity") else None
    removed = payload.get("removed", [])
    if customer is not None:
        hit = customer in record.customers or any(r.get("customer") == customer for r in removed)
        if not hit:
            return None
    if viewer is not None and viewer.is_customer:
        own = {so: d for so, d in record.affected.items() if d.customer == viewer.customer}
        if own and action is enums.ExceptionAction.UPDATED and "changed" in payload:
            # Only other customers' orders came, went or changed: nothing this viewer sees.
            mine = viewer.customer
            if not any(c.get("customer") == mine for c in payload["changed"]) and not any(
                r.get("customer") == mine for r in removed
            ):
                return None
        if not own:
            gone = {
                r["salesOrder"]: rules.Detection.from_payload(record.kind, record.root, r["detection"])
                for r in removed
                if r.get("customer") == viewer.customer and "detection" in r
            }
            if not gone:
                return None
            own, action = gone, enums.ExceptionAction.CLEARED
            record = dataclasses.replace(record, cleared_at=record.cleared_at or at)
        record = dataclasses.replace(record, affected=own)
        previous = None  # the aggregate's severity is about other customers' orders too
        removed = [r for r in removed if r.get("customer") == viewer.customer]
    if min_severity is not None:
        now_ok = record.severity.rank >= min_severity.rank
        before_ok = previous is not None and previous.rank >= min_severity.rank
        if not (now_ok or before_ok):
            return None
    return ExceptionTransition(
        cursor=encode_transition_cursor(cursors or process_cursors(), cursor),
        action=action,
        at=at,
        exception=OrderException(record=record),
        previous_severity=previous,
        removed_order_ids=[strawberry.ID(r["salesOrder"]) for r in removed],
    )


# --- impact analysis ---------------------------------------------------------------------------


@strawberry.input(
    description="A work centre down for some hours from now; on one already down, that many hours more than it "
    "is expected to be down (its expected-up time, else the default downtime)."
)
class WorkCenterDownInput:
    work_center: strawberry.ID
    hours: float


@strawberry.input(description="A batch put on quality hold now.")
class BatchBlockedInput:
    batch: str


@strawberry.input(description="A quantity of a component missing until a date.")
class MaterialShortInput:
    material: str
    quantity: float
    until: dt.date


@strawberry.input(description="A carrier shipment arriving some hours later than its ETA.")
class ShipmentDelayedInput:
    tracking_number: str
    hours: float


@strawberry.input(
    description="One order's production not started yet moved to the front of its work centres' queues: it "
    "gains, the orders it passes wait for its work (less idle time in the plan)."
)
class ExpediteInput:
    order: strawberry.ID


@strawberry.input(one_of=True, description="Exactly one what-if scenario.")
class ImpactScenario:
    work_center_down: WorkCenterDownInput | None = strawberry.UNSET
    batch_blocked: BatchBlockedInput | None = strawberry.UNSET
    material_short: MaterialShortInput | None = strawberry.UNSET
    shipment_delayed: ShipmentDelayedInput | None = strawberry.UNSET
    expedite: ExpediteInput | None = strawberry.UNSET


@strawberry.type(description="How many orders end up at one severity.")
class SeverityCount:
    severity: Severity
    orders: int


@strawberry.type(description="One order the scenario touches: now and under the scenario.")
class OrderImpact:
    impact: strawberry.Private[impact.OrderImpact]

    @strawberry.field
    def order_id(self) -> strawberry.ID:
        return strawberry.ID(self.impact.sales_order)

    @strawberry.field
    async def order(self, info: Info) -> Order | None:
        rec = await _ctx(info).loaders.sales_order.load(self.impact.sales_order)
        return Order(record=rec) if rec else None

    @strawberry.field
    def commercial_priority(self) -> CommercialPriority:
        return CommercialPriority(self.impact.new.commercial_priority)

    @strawberry.field(description="The delivery promise.")
    def confirmed_delivery_date(self) -> dt.date:
        return self.impact.new.promised

    @strawberry.field(description="null while a block holds the order.")
    def current_predicted_delivery_date(self) -> dt.date | None:
        return None if self.impact.current.held else self.impact.current.predicted

    @strawberry.field(description="Predicted delivery under the scenario; null while a block holds the order.")
    def predicted_delivery_date(self) -> dt.date | None:
        return None if self.impact.new.held else self.impact.new.predicted

    @strawberry.field(description="Calendar days the predicted delivery moves: later when positive, earlier "
                      "(the order gains) when negative.")
    def delay_days(self) -> int:
        return self.impact.delay_days

    @strawberry.field
    def current_days_late(self) -> int:
        return self.impact.current.days_late

    @strawberry.field(description="Working days past the promise under the scenario.")
    def days_late(self) -> int:
        return self.impact.new.days_late

    @strawberry.field(description="Late under the scenario, on time now.")
    def newly_late(self) -> bool:
        return self.impact.newly_late

    @strawberry.field
    def current_severity(self) -> Severity:
        return self.impact.current.severity

    @strawberry.field(description="Severity under the scenario.")
    def severity(self) -> Severity:
        return self.impact.new.severity

    @strawberry.field(description="Value at risk under the scenario.")
    def value_at_risk(self) -> Money:
        return _money(self.impact.new.value_at_risk, self.impact.new.currency)

    @strawberry.field
    def net_value(self) -> Money:
        return _money(self.impact.new.net_value, self.impact.new.currency)


@strawberry.type(description="Totals over the affected orders.")
class ImpactTotals:
    result: strawberry.Private[impact.ImpactResult]
    currency: strawberry.Private[str]

    @strawberry.field
    def orders(self) -> int:
        return len(self.result.orders)

    @strawberry.field(description="Orders whose predicted delivery moves later (who loses).")
    def delayed_orders(self) -> int:
        return self.result.delayed_orders

    @strawberry.field(description="Orders whose predicted delivery moves earlier (who gains, e.g. by expedite).")
    def earlier_orders(self) -> int:
        return self.result.earlier_orders

    @strawberry.field(description="Value no longer at risk under the scenario, over the orders that gain.")
    def value_at_risk_relieved(self) -> Money:
        return _money(self.result.value_at_risk_relieved, self.currency)

    @strawberry.field(description="Value newly at risk under the scenario, over the orders that lose.")
    def value_at_risk_added(self) -> Money:
        return _money(self.result.value_at_risk_added, self.currency)

    @strawberry.field(description="Orders predicted late under the scenario.")
    def late_orders(self) -> int:
        return self.result.late_orders

    @strawberry.field(description="Orders the scenario makes late.")
    def newly_late_orders(self) -> int:
        return self.result.newly_late_orders

    @strawberry.field
    def max_days_late(self) -> int:
        return self.result.max_days_late

    @strawberry.field(description="Value at risk under the scenario.")
    def value_at_risk(self) -> Money:
        return _money(self.result.value_at_risk, self.currency)

    @strawberry.field(description="Value at risk the scenario adds to what is at risk now.")
    def added_value_at_risk(self) -> Money:
        return _money(self.result.added_value_at_risk, self.currency)

    @strawberry.field
    def by_severity(self) -> list[SeverityCount]:
        return [SeverityCount(severity=s, orders=n) for s, n in self.result.by_severity().items()]


@strawberry.type(description="What a scenario would do to the delivery promises; nothing is changed.")
class ImpactAnalysis:
    scenario: str = strawberry.field(description="The scenario in words.")
    evaluated_at: dt.datetime
    orders: list[OrderImpact] = strawberry.field(
        description="Affected orders: escalated orders first (escalateOrder), then commercial priority "
        "(STRATEGIC first), then days late, then value at risk."
    )
    totals: ImpactTotals


def to_scenario(s: ImpactScenario) -> impact.Scenario:
    """The pure scenario for the input; BAD_USER_INPUT unless exactly one is given."""
    given = [
        (name, value)
        for name, value in (
            ("workCenterDown", s.work_center_down),
            ("batchBlocked", s.batch_blocked),
            ("materialShort", s.material_short),
            ("shipmentDelayed", s.shipment_delayed),
            ("expedite", s.expedite),
        )
        if value is not None and value is not strawberry.UNSET
    ]
    if len(given) != 1:
        raise _bad_input(
            "ImpactScenario takes exactly one of workCenterDown, batchBlocked, materialShort, shipmentDelayed, "
            "expedite."
        )
    value = given[0][1]
    match value:
        case WorkCenterDownInput():
            return impact.WorkCenterDown(str(value.work_center), value.hours)
        case BatchBlockedInput():
            return impact.BatchBlocked(value.batch)
        case MaterialShortInput():
            return impact.MaterialShort(value.material, value.quantity, value.until)
        case ShipmentDelayedInput():
            return impact.ShipmentDelayed(value.tracking_number, value.hours)
        case ExpediteInput():
            return impact.Expedite(str(value.order))
    raise _bad_input("Unknown scenario.")  # pragma: no cover - the input type allows no other


def describe(s: impact.Scenario) -> str:
    match s:
        case impact.WorkCenterDown():
            return f"Work centre {s.work_center} down for {s.hours:g} h from now"
        case impact.BatchBlocked():
            return f"Batch {s.batch} blocked from now"
        case impact.MaterialShort():
            return f"{s.quantity:g} of {s.material} missing until {s.until.isoformat()}"
        case impact.ShipmentDelayed():
            return f"Shipment {s.tracking_number} {s.hours:g} h late"
        case impact.Expedite():
            return f"Order {s.sales_order} expedited: its production to the front of its work centres' queues"
    return str(s)


async def run_impact(ctx: Context, scenario_input: ImpactScenario) -> ImpactAnalysis:
    """``Query.impact``: pegged orders → their views (batched) → the pure analysis."""
    scenario = to_scenario(scenario_input)
    try:
        impact.validate(scenario)
    except impact.ScenarioError as exc:
        raise _bad_input(str(exc)) from exc
    for field, argument, attr in (
        ("WorkCenter", "workCenterDown.workCenter", "work_center"),
        ("Batch", "batchBlocked.batch", "batch"),
        ("Material", "materialShort.material", "material"),
        ("TrackingNumber", "shipmentDelayed.trackingNumber", "tracking_number"),
        ("SalesOrder", "expedite.order", "sales_order"),
    ):
        if isinstance(value := getattr(scenario, attr, None), str):
            ctx.check_key(field, value, argument)
    # With the gateway freezing its heap (``freeze_gc``), the records the queue's reads
    # bring (at 100,000 orders most of the queue's are read from the plant on the first
    # what-if: tens of thousands, each kept by the record cache) are frozen as they arrive:
    # each source answer once parsed (``reads_frozen``), and each level of reads once its
    # loaders hold it (``load_orders``'s ``freeze``), so the collector's passes that the
    # next answers' allocations set off do not walk them again (a full pass over them was
    # ~170 ms; the young and middle passes after each answer another ~150 ms).
    with reads_frozen() if ctx.freeze_gc else contextlib.nullcontext():
        try:
            pegged = await fetch.pegged_orders(ctx, scenario)
        except fetch.UnknownRecord as exc:  # an unknown work centre, batch, material or tracking number
            raise _bad_input(str(exc)) from exc
        loaded = await fetch.load_orders(ctx, pegged, freeze=ctx.freeze_gc)
    if ctx.freeze_gc:
        # The queue's views live until the answer is written: out of the collector's
        # automatic full passes, which the rest of the request and the work beside it set
        # off and which would walk them each time (hundreds of ms at 100,000 orders). O(1);
        # the gateway's freeze loop does the same every few seconds (gateway/app.py).
        gc.freeze()
    tracker = ctx.exceptions
    with gc_paused():  # synchronous bulk work over the whole queue (sources.memory)
        result = impact.analyse(
            scenario,
            [view for view, _ in loaded],
            {view.sales_order.sold_to_party: customer for view, customer in loaded},
            ctx.now,
            params=tracker.params if tracker else rules.ExceptionParams(),
            prediction_params=ctx.prediction_params,
        )
        if ctx.freeze_gc:
            # The analysis (two views' facts per queued order, the rescheduled copies) lives
            # until the answer is written too: frozen before the collector runs again, whose
            # first young pass would otherwise walk all of it (~50 ms at 100,000 orders)
            # and move it on to the older generations' passes.
            gc.freeze()
    wf = await fetch.workflow_view(ctx)
    # No await from here: graphql-core completes the answer (a field set per affected order,
    # the whole queue) right after this returns, in the same step of the event loop; each
    # automatic collection meanwhile would walk the answer built so far (sources.memory).
    gc_paused_for_this_step()
    if wf is not None:  # escalated orders: one severity higher, ranked first
        result = escalated_impact(result, wf.escalated)
    currency = next((o.new.currency for o in result.orders), "EUR")
    return ImpactAnalysis(
        scenario=describe(scenario),
        evaluated_at=ctx.now,
        orders=[OrderImpact(impact=o) for o in result.orders],
        totals=ImpactTotals(result=result, currency=currency),
    )
