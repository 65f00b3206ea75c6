"""The subscription hub: from ``OrderChanged`` on the bus to every interested subscriber.

Every channel (order changes here, exception transitions here, workflow entries in
``gateway/workflow.py``) is a ``Channel``: groups of subscribers, replay then live, each
message executed once per group through the operation pipeline (``Operations.run``).

- Subscribers with the same document, variables (less ``after``) and scope form a group;
  a group's selection is executed once per change and the result goes to all of them.
- Groups are indexed by order and by customer, so a change costs work in proportion to the
  subscribers of that order, not to all subscribers.
- Resume: a subscriber that gives ``after`` first gets what it missed from the journal,
  while live messages are buffered; then the buffer (less what was replayed) and live.
- Each transport gives a ``Sink``; a slow client's sink coalesces pending updates per
  order (never silently: ``extensions.coalesced`` counts them).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from graphql import DocumentNode, GraphQLError, OperationDefinitionNode

from resolvers import policy
from resolvers.context import Context
from resolvers.enums import Severity
from resolvers.exception_types import transition_message
from resolvers.needs import Needs, document_needs
from resolvers.orders import build_orders
from resolvers.pagination import (
    Cursors,
    decode_change_cursor,
    decode_transition_cursor,
    encode_change_cursor,
    process_cursors,
)
from resolvers.policy import Role, Viewer
from resolvers.subscription import OrderChange
from resolvers.types import Order
from sources import SourceError, tracing
from sources.resilience import request_budget
from sources.tasks import stop_task

from .bus import OrderChanged
from .errors import RequestError
from .journal import Journal
from .operation import Operation, Operations

if TYPE_CHECKING:
    from .telemetry import EventTimeline

log = logging.getLogger("ordergraph.subscriptions")

ORDER_UPDATED = "orderUpdated"
ORDER_CHANGES = "orderChanges"
EXCEPTIONS_CHANGED = "exceptionsChanged"


class Sink(Protocol):
    """Where a subscriber's messages go (a WebSocket connection, an SSE stream)."""

    def offer(self, sub_id: str, order: str, payload: dict[str, Any]) -> None: ...


class SubscribeError(Exception):
    """A subscription that cannot start; the message is safe to show the client."""


def subscribe_refusal(exc: SubscribeError | SourceError | GraphQLError) -> RequestError:
    """What a transport answers when a subscription cannot start (SSE: the status; a
    WebSocket: an ``error`` message with the errors)."""
    if isinstance(exc, SubscribeError):
        refusal = RequestError(400, str(exc))
        refusal.errors = [{"message": str(exc), "extensions": {"code": "BAD_REQUEST"}}]
    elif isinstance(exc, SourceError):  # the replay or the ownership check could not read its source
        message = f"Cannot start the subscription: {exc.code.replace('_', ' ').lower()} ({exc.source}); retry shortly."
        refusal = RequestError(503, message, {"Retry-After": "5"})
        refusal.errors = [{"message": message, "extensions": {"code": exc.code, "source": exc.source}}]
    else:  # a bad argument, e.g. an `after` cursor we never gave out
        refusal = RequestError(400, exc.message)
        refusal.errors = [{**exc.formatted, "extensions": {"code": "BAD_USER_INPUT", **(exc.extensions or {})}}]
    return refusal


@dataclasses.dataclass(frozen=True, slots=True)
class Hidden:
    """An order or customer the subscriber may not see. Its subscription behaves exactly
    as one for an order or customer that does not exist: no replay, no live message."""

    key: str


def visible(key: str | Hidden) -> str:
    """The key as the subscriber gave it (a hidden key is shown as given, like a missing one)."""
    return key.key if isinstance(key, Hidden) else key


@dataclasses.dataclass(frozen=True, slots=True)
class Scope:
    """Who is subscribing: internal viewers see all orders; a customer only its own.

    Subscribers share a group (one execution per change) only within one scope, and the
    group's selection runs with the scope's viewer, so the policy layer applies as it
    does to queries.
    """

    customer: str | None = None
    role: str = Role.SERVICE.value

    @classmethod
    def of(cls, viewer: Viewer) -> Scope:
        return cls(customer=viewer.customer if viewer.is_customer else None, role=viewer.role.value)

    @property
    def key(self) -> str:
        return f"customer:{self.customer}" if self.customer else f"internal:{self.role}"

    @property
    def viewer(self) -> Viewer:
        if self.customer:
            return Viewer(Role.CUSTOMER, customer=self.customer, subject="subscription-hub")
        return Viewer(Role(self.role), subject="subscription-hub")


# --- the generic channel ---------------------------------------------------------------------


@dataclasses.dataclass(eq=False, slots=True)
class Group:
    """Subscribers with the same document, variables (less ``after``) and scope: one
    execution per message serves them all. Channels add what they route on."""

    key: tuple[Any, ...]
    document: DocumentNode
    operation_name: str | None
    variables: dict[str, Any]
    scope: Scope
    subscribers: dict[int, Subscriber] = dataclasses.field(default_factory=dict)


G = TypeVar("G", bound=Group)


@dataclasses.dataclass(eq=False, slots=True)
class Subscriber:
    """One subscription. While ``replaying``, live messages wait in ``buffer`` as
    ``(position, message key, payload)``; positions order the channel's messages."""

    id: str
    sink: Sink
    group: Any
    channel: Channel[Any]
    replaying: bool = True
    buffer: list[tuple[Any, str, dict[str, Any]]] = dataclasses.field(default_factory=list)


class FanOutWorker:
    """One task draining a queue of batches into ``fan_out``, in arrival order.

    Producers (the bus, the exception tracker) only enqueue, so they never wait on
    subscribers; a failed batch is logged and the next one goes on.
    """

    task_name = "ordergraph-fan-out"

    def __init__(self) -> None:
        self._queue: asyncio.Queue[list[Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def enqueue(self, batch: list[Any]) -> None:
        self._queue.put_nowait(batch)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        await stop_task(self._task)

    async def _run(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                await self.fan_out(batch)
            except Exception:
                log.exception("%s failed", self.task_name)

    async def fan_out(self, batch: list[Any]) -> None:
        raise NotImplementedError


class Channel(FanOutWorker, Generic[G]):
    """A subscription channel: groups of subscribers, resume by replay, then live.

    ``join`` puts a subscriber in its group; ``open`` replays what it missed (the
    channel's own ``replay``, returning the position it reached) while live messages
    wait in its buffer, then flushes the buffer past that position and goes live.
    ``deliver`` hands one group's message to its subscribers (or their buffers); every
    message carries its cursor, so a subscriber that reconnects misses nothing.
    """

    def __init__(self, operations: Operations, cursors: Cursors | None = None) -> None:
        super().__init__()
        self.operations = operations
        self.cursors = cursors or process_cursors()  # the gateway's key: resume anywhere
        self.groups: dict[tuple[Any, ...], G] = {}
        self.executions = 0  # group executions (shared resolutions)
        self.deliveries = 0  # messages offered to sinks

    @property
    def subscriber_count(self) -> int:
        return sum(len(g.subscribers) for g in self.groups.values())

    def context(self, viewer: Viewer | None = None) -> Context:
        """A fresh context (loaders over the shared cache) for ``viewer``."""
        return self.operations.context_factory(viewer=viewer)  # type: ignore[no-any-return]

    def join(self, sub_id: str, sink: Sink, key: tuple[Any, ...], make_group: Callable[[], G], *, replaying: bool = True) -> Subscriber:
        """A new subscriber in the group of ``key`` (made by ``make_group`` if new)."""
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = make_group()
            self.index(group)
        sub = Subscriber(sub_id, sink, group, self, replaying)
        group.subscribers[id(sub)] = sub
        return sub

    async def open(self, sub: Subscriber, replay: Callable[[Subscriber], Awaitable[Any]]) -> Subscriber:
        """Replay (one request to each source), then go live; on failure, leave."""
        try:
            with request_budget():
                last = await replay(sub)
            self.go_live(sub, last)
        except BaseException:
            self.leave(sub)
            raise
        return sub

    def go_live(self, sub: Subscriber, last: Any) -> None:
        """Flush what arrived during the replay, minus what it covered (up to ``last``)."""
        for position, key, payload in sub.buffer:
            if last is None or position > last:
                self.send(sub, key, payload)
        sub.buffer.clear()
        sub.replaying = False

    def leave(self, sub: Subscriber) -> None:
        group = sub.group
        group.subscribers.pop(id(sub), None)
        if not group.subscribers and self.groups.get(group.key) is group:
            del self.groups[group.key]
            self.unindex(group)

    def index(self, group: G) -> None:
        """Route messages to a new group (channels with indexes override)."""

    def unindex(self, group: G) -> None:
        """Stop routing to a group that lost its last subscriber."""

    def send(self, sub: Subscriber, key: str, payload: dict[str, Any]) -> None:
        sub.sink.offer(sub.id, key, payload)
        self.deliveries += 1

    def deliver(self, group: G, position: Any, key: str, payload: dict[str, Any]) -> None:
        """One message of ``group``: to each live subscriber, or the buffer of a replaying one."""
        for sub in list(group.subscribers.values()):
            if sub.replaying:
                sub.buffer.append((position, key, payload))
            else:
                self.send(sub, key, payload)

    async def execute(self, group: G, root: Any, ctx: Context, variables: dict[str, Any], cursor: str) -> dict[str, Any]:
        """The group's selection on ``root`` (execute and format stages), with its cursor."""
        self.executions += 1
        payload = await self.operations.run(group.document, group.operation_name, variables, ctx, root)
        payload["extensions"] = {**payload.get("extensions", {}), "cursor": cursor}
        return payload


def root_field(op: OperationDefinitionNode) -> str:
    sels = op.selection_set.selections
    if len(sels) != 1 or not hasattr(sels[0], "name"):
        raise SubscribeError("A subscription selects exactly one root field.")
    return sels[0].name.value  # type: ignore[union-attr]


def shared_key(field: str, op: Operation, scope: Scope, *route: Any) -> tuple[Any, ...]:
    """A group's key: subscribers share a group on all of this (``after`` apart)."""
    return (field, op.query, op.name, _freeze({k: v for k, v in op.variables.items() if k != "after"}), scope.key, *route)


def field_args(op: Operation) -> dict[str, Any]:
    """Arguments of the single root field, with variables substituted."""
    from graphql import Undefined, value_from_ast_untyped

    assert op.definition is not None
    field = op.definition.selection_set.selections[0]
    out: dict[str, Any] = {}
    for arg in getattr(field, "arguments", ()) or ():
        value = value_from_ast_untyped(arg.value, op.coerced)
        if value is not Undefined and value is not None:
            out[arg.name.value] = value
    return out


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


# --- orderUpdated and orderChanges: the order channel ----------------------------------------


@dataclasses.dataclass(eq=False, slots=True)
class OrderGroup(Group):
    field: str = ORDER_UPDATED
    order: str | Hidden | None = None  # orderUpdated(id)
    customer: str | Hidden | None = None  # orderChanges(customer) or the viewer's own customer
    needs: Needs | None = None  # what its selection asks of the order (resolvers/needs.py)

    def order_needs(self) -> Needs:
        """What this subscription's selection asks of every order it pushes: its views,
        its customer (read once from the document)."""
        if self.needs is None:
            path = (self.field,) if self.field == ORDER_UPDATED else (self.field, "order")
            self.needs = document_needs(self.document, self.operation_name, path)
        return self.needs


class Hub(Channel[OrderGroup]):
    """Fan-out of order changes to subscription groups; the door of every channel
    (``subscribe`` routes by root field, ``unsubscribe`` to the subscriber's channel)."""

    task_name = "ordergraph-subscription-hub"

    def __init__(
        self, operations: Operations, journal: Journal, cursors: Cursors | None = None, *, workflow: Channel[Any] | None = None
    ) -> None:
        super().__init__(operations, cursors)
        self.journal = journal
        self.by_order: dict[str | Hidden, set[OrderGroup]] = collections.defaultdict(set)
        self.by_customer: dict[str | Hidden, set[OrderGroup]] = collections.defaultdict(set)
        self.all_orders: set[OrderGroup] = set()
        # Set by the gateway: event trace contexts and accept times (gateway/telemetry.py),
        # and the event-to-push lag metric (seconds from accepted to offered to subscribers).
        self.timeline: EventTimeline | None = None
        self.on_lag: Callable[[float], None] | None = None
        # exceptionsChanged: a second, small channel fed by the exception tracker
        self.exceptions = ExceptionChannel(operations, journal, self.cursors)
        # exceptionWorkflowChanged: gateway/workflow.py's WorkflowChannel
        self.workflow = workflow

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        super().start()
        self.exceptions.start()
        if self.workflow is not None:
            self.workflow.start()

    async def stop(self) -> None:
        if self.workflow is not None:
            await self.workflow.stop()
        await self.exceptions.stop()
        await super().stop()

    def on_changes(self, changes: list[OrderChanged]) -> None:
        """Bus handler: queue for the fan-out task (keeps event order)."""
        self.enqueue(changes)

    @property
    def subscriber_count(self) -> int:
        workflow = self.workflow.subscriber_count if self.workflow is not None else 0
        return sum(len(g.subscribers) for g in self.groups.values()) + self.exceptions.subscriber_count + workflow

    # --- subscribe / unsubscribe -------------------------------------------------------

    async def subscribe(self, sub_id: str, sink: Sink, op: Operation, scope: Scope) -> Subscriber:
        """Start a subscription of a prepared operation; replays from ``after`` before going live."""
        assert op.definition is not None
        field = root_field(op.definition)
        if field == "exceptionWorkflowChanged" and self.workflow is not None:  # gateway/workflow.py
            return await self.workflow.subscribe(sub_id, sink, op, scope)  # type: ignore[attr-defined, no-any-return]
        if field == EXCEPTIONS_CHANGED:
            return await self.exceptions.subscribe(sub_id, sink, op, scope)
        args = field_args(op)
        after = args.get("after")
        resume = decode_change_cursor(self.cursors, after) if after else None
        checks = self.context(scope.viewer)
        order: str | Hidden | None
        customer: str | Hidden | None
        if field == ORDER_UPDATED:
            order = checks.check_key("SalesOrder", str(args["id"]), "id")
            customer = scope.customer
            if customer is not None and not await self._owns(checks, order):
                order = Hidden(order)
        elif field == ORDER_CHANGES:
            order = None
            customer = str(args["customer"]) if args.get("customer") is not None else None
            if customer is not None:
                checks.check_key("Customer", customer, "customer")
            if scope.customer is not None:
                customer = Hidden(customer) if customer is not None and customer != scope.customer else scope.customer
        else:
            raise SubscribeError(f"Unknown subscription field {field!r}.")

        assert op.document is not None
        key = shared_key(field, op, scope, order, customer)
        shared_vars = {k: v for k, v in op.variables.items() if k != "after"}
        sub = self.join(
            sub_id, sink, key,
            lambda: OrderGroup(key, op.document, op.name, shared_vars, scope, field=field, order=order, customer=customer),  # type: ignore[arg-type]
        )
        return await self.open(sub, lambda s: self._replay(s, resume, op.variables))

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.channel.leave(sub)

    def index(self, group: OrderGroup) -> None:
        if group.order is not None:
            self.by_order[group.order].add(group)
        elif group.customer is not None:
            self.by_customer[group.customer].add(group)
        else:
            self.all_orders.add(group)

    def unindex(self, group: OrderGroup) -> None:
        if group.order is not None:
            self.by_order[group.order].discard(group)
            if not self.by_order[group.order]:
                del self.by_order[group.order]
        elif group.customer is not None:
            self.by_customer[group.customer].discard(group)
            if not self.by_customer[group.customer]:
                del self.by_customer[group.customer]
        else:
            self.all_orders.discard(group)

    @staticmethod
    async def _owns(ctx: Context, order: str) -> bool:
        """Whether the customer viewer of ``ctx`` may see ``order``: decided from its own
        order numbers before any read of the order (resolvers.policy.scope_loaders)."""
        with request_budget():
            return await ctx.loaders.sales_order.load(order) is not None

    # --- replay --------------------------------------------------------------------

    async def _replay(self, sub: Subscriber, resume: tuple[int, str] | None, variables: dict[str, Any]) -> tuple[int, str] | None:
        """What the subscriber missed after ``resume`` (orderUpdated: the current state
        first); the position reached."""
        group: OrderGroup = sub.group
        last: tuple[int, str] | None = None
        if group.field == ORDER_UPDATED and group.order is not None:
            rows = await self._rows_after(resume or (0, ""), sales_order=group.order)
            if resume is None or rows:
                # Current state first, with the cursor of the latest change we know of.
                if not rows:
                    rows = await self._latest_row(group.order)
                seq, so = (rows[-1].seq, rows[-1].sales_order) if rows else (0, visible(group.order))
                ctx = self.context(group.scope.viewer)
                rec = None if isinstance(group.order, Hidden) else await ctx.loaders.sales_order.load(group.order)
                (order,) = await build_orders(ctx, [rec], group.order_needs())
                cursor = encode_change_cursor(self.cursors, seq, so)
                self.send(sub, so, await self.execute(group, change_root(group.field, order, cursor), ctx, variables, cursor))
                last = (seq, so)
        elif group.field == ORDER_CHANGES and resume is not None:
            pos = resume
            while True:
                rows = await self._rows_after(pos, customer=group.customer)
                if not rows:
                    break
                ctx = self.context(group.scope.viewer)
                recs = await ctx.loaders.sales_order.load_many([r.sales_order for r in rows])
                orders = await build_orders(ctx, recs, group.order_needs())
                for r, order in zip(rows, orders, strict=True):
                    cursor = encode_change_cursor(self.cursors, r.seq, r.sales_order)
                    root = change_root(group.field, order, cursor, r)
                    self.send(sub, r.sales_order, await self.execute(group, root, ctx, variables, cursor))
                    pos = (r.seq, r.sales_order)
            last = pos
        return last

    async def _rows_after(
        self, pos: tuple[int, str], *, sales_order: str | Hidden | None = None, customer: str | Hidden | None = None
    ) -> list:
        if isinstance(sales_order, Hidden) or isinstance(customer, Hidden):
            return []  # as for an order or customer without changes
        rows = await self.journal.changes_after(pos[0] - 1 if pos[0] > 0 else 0, sales_order=sales_order, customer=customer)
        rows = sorted(rows, key=lambda r: (r.seq, r.sales_order))
        return [r for r in rows if (r.seq, r.sales_order) > pos]

    async def _latest_row(self, order: str | Hidden) -> list:
        rows: list = []
        pos = (0, "")
        while True:
            batch = await self._rows_after(pos, sales_order=order)
            if not batch:
                return rows[-1:]
            rows = batch
            pos = (batch[-1].seq, batch[-1].sales_order)

    # --- live fan-out ----------------------------------------------------------------

    async def fan_out(self, changes: list[OrderChanged]) -> None:
        """Execute each interested group once per change and offer the result."""
        timeline = self.timeline
        parent = timeline.fanning_out(changes[0].seq) if timeline is not None and changes and tracing.enabled() else None
        delivered = self.deliveries
        with request_budget(), tracing.span("event.fanout", {"ordergraph.changes": len(changes)}, parent=parent):
            await self._fan_out(changes)  # a hung source holds up a batch of changes one budget long
            tracing.set_attributes(deliveries=self.deliveries - delivered)
        if timeline is not None:
            seqs = sorted({ch.seq for ch in changes})
            if self.on_lag is not None and self.deliveries > delivered:
                for seq in seqs:
                    if (lag := timeline.lag(seq)) is not None:
                        self.on_lag(lag)
            timeline.forget(seqs)  # fanned out: their entries are not asked for again

    async def _fan_out(self, changes: list[OrderChanged]) -> None:
        ctx = self.context()
        jobs = []
        for ch in changes:
            groups = set(self.by_order.get(ch.sales_order, ()))
            if ch.customer is not None:
                groups |= self.by_customer.get(ch.customer, set())
            groups |= self.all_orders
            if groups:
                jobs.append((ch, groups))
        if tracing.enabled():
            groups_hit = {g for _, gs in jobs for g in gs}
            tracing.set_attributes(groups=len(groups_hit), subscribers=sum(len(g.subscribers) for g in groups_hit))
        if not jobs:
            return
        recs = await ctx.loaders.sales_order.load_many(sorted({ch.sales_order for ch, _ in jobs}))
        by_so = {r.sales_order: r for r in recs if r is not None}
        scoped: dict[Any, Context] = {}  # one context per scope: the policy layer's viewer
        # Each scope's orders are built once, for all its groups, with what their
        # selections ask (views, customers) fetched for every changed order at once.
        wanted: dict[Any, tuple[dict[str, Any], Needs]] = {}
        runs: list[tuple[OrderChanged, OrderGroup]] = []
        for ch, groups in jobs:
            rec = by_so.get(ch.sales_order)
            for group in groups:
                viewer = group.scope.viewer
                if viewer.is_customer and (rec is None or not policy.can_see_order(viewer, rec)):
                    continue  # routed by a stale customer: nothing of another customer's order leaves
                key = group.scope.key
                if key not in scoped:
                    scoped[key] = self.context(viewer)
                records, needs = wanted.get(key, ({}, Needs()))
                if rec is not None:
                    records[rec.sales_order] = rec
                wanted[key] = (records, needs | group.order_needs())
                runs.append((ch, group))
        keys = list(wanted)
        each = await asyncio.gather(*(build_orders(scoped[k], list(wanted[k][0].values()), wanted[k][1]) for k in keys))
        built: dict[tuple[Any, str], Order | None] = {
            (k, so): order for k, orders in zip(keys, each, strict=True) for so, order in zip(wanted[k][0], orders, strict=True)
        }

        async def run(ch: OrderChanged, group: OrderGroup) -> None:
            gctx = scoped[group.scope.key]
            order = built.get((group.scope.key, ch.sales_order))
            cursor = encode_change_cursor(self.cursors, ch.seq, ch.sales_order)
            payload = await self.execute(group, change_root(group.field, order, cursor, ch), gctx, group.variables, cursor)
            self.deliver(group, (ch.seq, ch.sales_order), ch.sales_order, payload)

        await asyncio.gather(*(run(ch, g) for ch, g in runs))


def change_root(field: str, order: Order | None, cursor: str, change: Any = None) -> Any:
    """The root value of an order channel's message: the ``Order`` (orderUpdated; built by
    ``build_orders``) or the ``OrderChange`` (orderChanges; ``change``: a journal row or an
    ``OrderChanged``)."""
    if field == ORDER_UPDATED:
        return order
    return OrderChange(
        cursor=cursor, order=order, sources=[change.source], event_type=change.type, occurred_at=change.occurred_at
    )


# --- exceptionsChanged: the exception transition channel ------------------------------------


@dataclasses.dataclass(eq=False, slots=True)
class ExceptionGroup(Group):
    """Subscribers of exceptionsChanged with the same document, variables and scope."""

    min_severity: Severity | None = None
    customer: str | Hidden | None = None


class ExceptionChannel(Channel[ExceptionGroup]):
    """Fan-out of exception transitions (from the tracker) to exceptionsChanged groups.

    Same guarantees as the order channel: one execution per transition and group, each
    message carries ``extensions.cursor``, and a subscriber giving ``after`` first replays
    the journal's transitions after it while live ones are buffered.
    """

    task_name = "ordergraph-exception-hub"

    def __init__(self, operations: Operations, journal: Journal, cursors: Cursors | None = None) -> None:
        super().__init__(operations, cursors)
        self.journal = journal

    def publish(self, transitions: list[Any]) -> None:
        """Tracker handler: journaled transitions, in cursor order (never blocks)."""
        self.enqueue(transitions)

    async def subscribe(self, sub_id: str, sink: Sink, op: Operation, scope: Scope) -> Subscriber:
        """Start an exceptionsChanged subscription; replays from ``after`` before going live."""
        args = field_args(op)
        after = decode_transition_cursor(self.cursors, str(args["after"])) if args.get("after") else None
        raw = args.get("minSeverity")
        min_severity = Severity(getattr(raw, "value", raw)) if raw is not None else None
        customer: str | Hidden | None = str(args["customer"]) if args.get("customer") is not None else None
        if customer is not None:
            self.context(scope.viewer).check_key("Customer", customer, "customer")
        if scope.customer is not None:
            # A customer sees its own orders' exceptions only, whatever it asks for.
            customer = scope.customer if customer in (None, scope.customer) else Hidden(str(customer))
        key = shared_key(EXCEPTIONS_CHANGED, op, scope, customer)
        shared_vars = {k: v for k, v in op.variables.items() if k != "after"}
        assert op.document is not None
        sub = self.join(
            sub_id, sink, key,
            lambda: ExceptionGroup(key, op.document, op.name, shared_vars, scope, min_severity=min_severity, customer=customer),  # type: ignore[arg-type]
        )
        return await self.open(sub, lambda s: self._replay(s, after, op.variables))

    async def _replay(self, sub: Subscriber, after: int | None, variables: dict[str, Any]) -> int | None:
        last = after
        if after is not None:
            while True:
                rows = await self.journal.exception_transitions_after(last, limit=500)
                if not rows:
                    break
                ctx = self.context(sub.group.scope.viewer)
                for row in rows:
                    payload = await self._message(sub.group, row, ctx, variables)
                    if payload is not None:
                        self.send(sub, row.exception_id, payload)
                    last = row.cursor
        return last

    async def fan_out(self, transitions: list[Any]) -> None:
        """Execute each matching group once per transition, in cursor order."""
        with request_budget():
            contexts: dict[str, Context] = {}
            for row in transitions:
                for group in list(self.groups.values()):
                    ctx = contexts.get(group.scope.key)
                    if ctx is None:
                        ctx = contexts[group.scope.key] = self.context(group.scope.viewer)
                    payload = await self._message(group, row, ctx, group.variables)
                    if payload is not None:
                        self.deliver(group, row.cursor, row.exception_id, payload)

    async def _message(
        self, group: ExceptionGroup, row: Any, ctx: Context, variables: dict[str, Any]
    ) -> dict[str, Any] | None:
        if isinstance(group.customer, Hidden):
            return None  # as for a customer no exception hits
        viewer = group.scope.viewer
        root = transition_message(
            row.payload,
            row.cursor,
            row.at,
            min_severity=group.min_severity,
            customer=group.customer,
            viewer=viewer if viewer.is_customer else None,
            cursors=self.cursors,
            # escalated orders (gateway/workflow.py), as exceptions shows them to internal viewers
            escalated=ctx.workflow.escalated_now() if ctx.workflow is not None and not viewer.is_customer else frozenset(),
        )
        if root is None:
            return None
        return await self.execute(group, root, ctx, variables, root.cursor)


__all__ = ["Channel", "ExceptionChannel", "GraphQLError", "Group", "Hidden", "Hub", "Scope", "SubscribeError", "Subscriber"]
