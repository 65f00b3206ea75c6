"""The subscription hub: from ``OrderChanged`` on the bus to every interested subscriber.

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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
)

from resolvers import policy
from resolvers.context import Context
from resolvers.enums import Severity
from resolvers.exception_types import transition_message
from resolvers.execution import execute
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
from sources import tracing
from sources.resilience import request_budget
from sources.tasks import stop_task

from .bus import OrderChanged
from .graphql_http import format_error
from .journal import Journal

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


@dataclasses.dataclass(slots=True, frozen=True)
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


@dataclasses.dataclass(eq=False, slots=True)
class Subscriber:
    id: str
    sink: Sink
    group: Group
    replaying: bool = True
    buffer: list[tuple[tuple[int, str], dict[str, Any], str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False, slots=True)
class Group:
    key: tuple[Any, ...]
    field: str
    document: DocumentNode
    operation_name: str | None
    variables: dict[str, Any]
    order: str | None  # orderUpdated(id)
    customer: str | None  # orderChanges(customer) or the viewer's own customer
    scope: Scope = dataclasses.field(default_factory=Scope)
    subscribers: dict[int, Subscriber] = dataclasses.field(default_factory=dict)
    needs: Needs | None = None  # what its selection asks of the order (resolvers/orders.py)

    def order_needs(self) -> Needs:
        """What this subscription's selection asks of every order it pushes: its views,
        its customer (read once from the document)."""
        if self.needs is None:
            path = (self.field,) if self.field == ORDER_UPDATED else (self.field, "order")
            self.needs = document_needs(self.document, self.operation_name, path)
        return self.needs


def root_field(op: OperationDefinitionNode) -> tuple[str, dict[str, Any]]:
    sels = op.selection_set.selections
    if len(sels) != 1 or not hasattr(sels[0], "name"):
        raise SubscribeError("A subscription selects exactly one root field.")
    return sels[0].name.value, {}  # type: ignore[union-attr]


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


class Hub(FanOutWorker):
    """Fan-out of order changes to subscription groups."""

    task_name = "ordergraph-subscription-hub"

    def __init__(
        self, schema: GraphQLSchema, context_factory: Callable[..., Context], journal: Journal, cursors: Cursors | None = None
    ) -> None:
        super().__init__()
        self.schema = schema
        self.context_factory = context_factory
        self.journal = journal
        self.cursors = cursors or process_cursors()  # the gateway's key: resume anywhere
        self.groups: dict[tuple[Any, ...], Group] = {}
        self.by_order: dict[str, set[Group]] = collections.defaultdict(set)
        self.by_customer: dict[str, set[Group]] = collections.defaultdict(set)
        self.all_orders: set[Group] = set()
        # Set by the gateway: event trace contexts and accept times (gateway/telemetry.py),
        # and the event-to-push lag metric (seconds from accepted to offered to subscribers).
        self.timeline: EventTimeline | None = None
        self.on_lag: Callable[[float], None] | None = None
        self.executions = 0  # group executions (shared resolutions)
        self.deliveries = 0  # messages offered to sinks
        # exceptionsChanged: a second, small channel fed by the exception tracker
        self.exceptions = ExceptionChannel(self)
        # exceptionWorkflowChanged: gateway/workflow.py's WorkflowChannel, set by the gateway
        self.workflow: Any = None

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

    async def subscribe(
        self,
        sub_id: str,
        sink: Sink,
        query: str,
        document: DocumentNode,
        op: OperationDefinitionNode,
        operation_name: str | None,
        variables: dict[str, Any],
        coerced: dict[str, Any],
        scope: Scope,
    ) -> Subscriber:
        """Start a subscription; replays from ``after`` before going live."""
        field, _ = root_field(op)
        if field == "exceptionWorkflowChanged" and self.workflow is not None:  # gateway/workflow.py
            return await self.workflow.subscribe(  # type: ignore[no-any-return]
                sub_id, sink, query, document, op, operation_name, variables, coerced, scope
            )
        if field == EXCEPTIONS_CHANGED:
            return await self.exceptions.subscribe(  # type: ignore[return-value]
                sub_id, sink, query, document, op, operation_name, variables, coerced, scope
            )
        args = _field_args(op, coerced)
        after = args.get("after")
        resume = decode_change_cursor(self.cursors, after) if after else None
        checks = self.context_factory(viewer=scope.viewer)
        if field == ORDER_UPDATED:
            order = checks.check_key("SalesOrder", str(args["id"]), "id")
            customer = scope.customer
            if customer is not None and not await self._owns(checks, order):
                order = f"\x00hidden:{order}"  # looks like an order that does not exist
        elif field == ORDER_CHANGES:
            order = None
            customer = str(args["customer"]) if args.get("customer") is not None else None
            if customer is not None:
                checks.check_key("Customer", customer, "customer")
            if scope.customer is not None:
                if customer is not None and customer != scope.customer:
                    customer = f"\x00hidden:{customer}"
                else:
                    customer = scope.customer
        else:
            raise SubscribeError(f"Unknown subscription field {field!r}.")

        shared_vars = {k: v for k, v in variables.items() if k != "after"}
        key = (field, query, operation_name, _freeze(shared_vars), scope.key, order, customer)
        group = self.groups.get(key)
        if group is None:
            group = Group(key, field, document, operation_name, shared_vars, order, customer, scope)
            self.groups[key] = group
            if order is not None:
                self.by_order[order].add(group)
            elif customer is not None:
                self.by_customer[customer].add(group)
            else:
                self.all_orders.add(group)
        sub = Subscriber(sub_id, sink, group)
        group.subscribers[id(sub)] = sub
        try:
            with request_budget():  # the replay is one request to each source
                await self._replay(sub, resume, variables)
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if isinstance(sub, ExceptionSubscriber):
            self.exceptions.unsubscribe(sub)
            return
        if self.workflow is not None and not isinstance(sub, Subscriber):  # a workflow subscriber
            self.workflow.unsubscribe(sub)
            return
        group = sub.group
        group.subscribers.pop(id(sub), None)
        if not group.subscribers:
            self.groups.pop(group.key, None)
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

    async def _replay(self, sub: Subscriber, resume: tuple[int, str] | None, variables: dict[str, Any]) -> None:
        group = sub.group
        last: tuple[int, str] | None = None
        if group.field == ORDER_UPDATED and group.order is not None:
            rows = await self._rows_after(resume or (0, ""), sales_order=group.order)
            if resume is None or rows:
                # Current state first, with the cursor of the latest change we know of.
                if not rows:
                    rows = await self._latest_row(group.order)
                seq, so = (rows[-1].seq, rows[-1].sales_order) if rows else (0, group.order)
                ctx = self.context_factory(viewer=group.scope.viewer)
                hidden = group.order.startswith("\x00")
                rec = None if hidden else await ctx.loaders.sales_order.load(group.order)
                (order,) = await build_orders(ctx, [rec], group.order_needs())
                payload = await self._execute(group, order, ctx, variables)
                self._send(sub, so, payload, encode_change_cursor(self.cursors, seq, so))
                last = (seq, so)
        elif group.field == ORDER_CHANGES and resume is not None:
            pos = resume
            while True:
                rows = await self._rows_after(pos, customer=group.customer)
                if not rows:
                    break
                ctx = self.context_factory(viewer=group.scope.viewer)
                recs = await ctx.loaders.sales_order.load_many([r.sales_order for r in rows])
                orders = await build_orders(ctx, recs, group.order_needs())
                for r, order in zip(rows, orders, strict=True):
                    cursor = encode_change_cursor(self.cursors, r.seq, r.sales_order)
                    root = OrderChange(
                        cursor=cursor,
                        order=order,
                        sources=[r.source],
                        event_type=r.type,
                        occurred_at=r.occurred_at,
                    )
                    payload = await self._execute(group, root, ctx, variables)
                    self._send(sub, r.sales_order, payload, cursor)
                    pos = (r.seq, r.sales_order)
                last = pos
        # Go live: flush what arrived meanwhile, minus what the replay covered.
        for key, payload, order in sub.buffer:
            if last is None or key > last:
                sub.sink.offer(sub.id, order, payload)
        sub.buffer.clear()
        sub.replaying = False

    async def _rows_after(self, pos: tuple[int, str], *, sales_order: str | None = None, customer: str | None = None) -> list:
        if sales_order is not None and sales_order.startswith("\x00"):
            return []
        if customer is not None and customer.startswith("\x00"):
            return []
        rows = await self.journal.changes_after(pos[0] - 1 if pos[0] > 0 else 0, sales_order=sales_order, customer=customer)
        rows = sorted(rows, key=lambda r: (r.seq, r.sales_order))
        return [r for r in rows if (r.seq, r.sales_order) > pos]

    async def _latest_row(self, order: str) -> list:
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
        if timeline is not None and self.on_lag is not None and self.deliveries > delivered:
            for seq in sorted({ch.seq for ch in changes}):
                if (lag := timeline.lag(seq)) is not None:
                    self.on_lag(lag)

    async def _fan_out(self, changes: list[OrderChanged]) -> None:
        ctx = self.context_factory()
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
        runs: list[tuple[OrderChanged, Group]] = []
        for ch, groups in jobs:
            rec = by_so.get(ch.sales_order)
            for group in groups:
                viewer = group.scope.viewer
                if viewer.is_customer and (rec is None or not policy.can_see_order(viewer, rec)):
                    continue  # routed by a stale customer: nothing of another customer's order leaves
                key = group.scope.key
                if key not in scoped:
                    scoped[key] = self.context_factory(viewer=viewer)
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

        async def run(ch: OrderChanged, group: Group) -> None:
            gctx = scoped[group.scope.key]
            order = built.get((group.scope.key, ch.sales_order))
            cursor = encode_change_cursor(self.cursors, ch.seq, ch.sales_order)
            if group.field == ORDER_UPDATED:
                root: Any = order
            else:
                root = OrderChange(
                    cursor=cursor,
                    order=order,
                    sources=[ch.source],
                    event_type=ch.type,
                    occurred_at=ch.occurred_at,
                )
            payload = await self._execute(group, root, gctx, group.variables)
            payload = {**payload, "extensions": {**payload.get("extensions", {}), "cursor": cursor}}
            key = (ch.seq, ch.sales_order)
            for sub in list(group.subscribers.values()):
                if sub.replaying:
                    sub.buffer.append((key, payload, ch.sales_order))
                else:
                    sub.sink.offer(sub.id, ch.sales_order, payload)
                    self.deliveries += 1

        await asyncio.gather(*(run(ch, g) for ch, g in runs))

    async def _execute(self, group: Group, root: Any, ctx: Context, variables: dict[str, Any]) -> dict[str, Any]:
        self.executions += 1
        result = execute(
            self.schema,
            group.document,
            root_value=root,
            context_value=ctx,
            variable_values=variables,
            operation_name=group.operation_name,
            middleware=policy.middleware(ctx.viewer),
        )
        if not isinstance(result, ExecutionResult):
            result = await result
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [format_error(e, ctx.viewer) for e in result.errors]
        return payload

    def _send(self, sub: Subscriber, order: str, payload: dict[str, Any], cursor: str) -> None:
        payload = {**payload, "extensions": {**payload.get("extensions", {}), "cursor": cursor}}
        sub.sink.offer(sub.id, order, payload)
        self.deliveries += 1


def _field_args(op: OperationDefinitionNode, coerced: dict[str, Any]) -> dict[str, Any]:
    """Arguments of the single root field, with variables substituted."""
    from graphql import Undefined, value_from_ast_untyped

    field = op.selection_set.selections[0]
    out: dict[str, Any] = {}
    for arg in getattr(field, "arguments", ()) or ():
        value = value_from_ast_untyped(arg.value, coerced)
        if value is not Undefined and value is not None:
            out[arg.name.value] = value
    return out


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


# --- exceptionsChanged: the exception transition channel ------------------------------------


@dataclasses.dataclass(eq=False, slots=True)
class ExceptionGroup:
    """Subscribers of exceptionsChanged with the same document, variables and scope."""

    key: tuple[Any, ...]
    document: DocumentNode
    operation_name: str | None
    variables: dict[str, Any]
    min_severity: Severity | None
    customer: str | None
    scope: Scope
    subscribers: dict[int, ExceptionSubscriber] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(eq=False, slots=True)
class ExceptionSubscriber:
    id: str
    sink: Sink
    group: ExceptionGroup
    replaying: bool = True
    buffer: list[tuple[int, str, dict[str, Any]]] = dataclasses.field(default_factory=list)


class ExceptionChannel(FanOutWorker):
    """Fan-out of exception transitions (from the tracker) to exceptionsChanged groups.

    Same guarantees as the order channel: one execution per transition and group, each
    message carries ``extensions.cursor``, and a subscriber giving ``after`` first replays
    the journal's transitions after it while live ones are buffered.
    """

    task_name = "ordergraph-exception-hub"

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub
        self.groups: dict[tuple[Any, ...], ExceptionGroup] = {}

    @property
    def subscriber_count(self) -> int:
        return sum(len(g.subscribers) for g in self.groups.values())

    def publish(self, transitions: list[Any]) -> None:
        """Tracker handler: journaled transitions, in cursor order (never blocks)."""
        self.enqueue(transitions)

    async def subscribe(
        self,
        sub_id: str,
        sink: Sink,
        query: str,
        document: DocumentNode,
        op: OperationDefinitionNode,
        operation_name: str | None,
        variables: dict[str, Any],
        coerced: dict[str, Any],
        scope: Scope,
    ) -> ExceptionSubscriber:
        """Start an exceptionsChanged subscription; replays from ``after`` before going live."""
        args = _field_args(op, coerced)
        after = decode_transition_cursor(self.hub.cursors, str(args["after"])) if args.get("after") else None
        raw = args.get("minSeverity")
        min_severity = Severity(getattr(raw, "value", raw)) if raw is not None else None
        customer = str(args["customer"]) if args.get("customer") is not None else None
        if customer is not None:
            self.hub.context_factory(viewer=scope.viewer).check_key("Customer", customer, "customer")
        if scope.customer is not None:
            # A customer sees its own orders' exceptions only, whatever it asks for.
            customer = scope.customer if customer in (None, scope.customer) else f"\x00hidden:{customer}"
        shared_vars = {k: v for k, v in variables.items() if k != "after"}
        key = (EXCEPTIONS_CHANGED, query, operation_name, _freeze(shared_vars), scope.key, customer)
        group = self.groups.get(key)
        if group is None:
            group = ExceptionGroup(key, document, operation_name, shared_vars, min_severity, customer, scope)
            self.groups[key] = group
        sub = ExceptionSubscriber(sub_id, sink, group)
        group.subscribers[id(sub)] = sub
        try:
            with request_budget():
                await self._replay(sub, after, variables)
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: ExceptionSubscriber) -> None:
        group = sub.group
        group.subscribers.pop(id(sub), None)
        if not group.subscribers:
            self.groups.pop(group.key, None)

    async def _replay(self, sub: ExceptionSubscriber, after: int | None, variables: dict[str, Any]) -> None:
        last = after
        if after is not None:
            while True:
                rows = await self.hub.journal.exception_transitions_after(last, limit=500)
                if not rows:
                    break
                ctx = self.hub.context_factory(viewer=sub.group.scope.viewer)
                for row in rows:
                    payload = await self._message(sub.group, row, ctx, variables)
                    if payload is not None:
                        sub.sink.offer(sub.id, row.exception_id, payload)
                        self.hub.deliveries += 1
                    last = row.cursor
        # Go live: what arrived meanwhile, minus what the replay covered.
        for cursor, exception_id, payload in sub.buffer:
            if last is None or cursor > last:
                sub.sink.offer(sub.id, exception_id, payload)
        sub.buffer.clear()
        sub.replaying = False

    async def fan_out(self, transitions: list[Any]) -> None:
        """Execute each matching group once per transition, in cursor order."""
        with request_budget():
            await self._fan_out(transitions)

    async def _fan_out(self, transitions: list[Any]) -> None:
        contexts: dict[str, Context] = {}
        for row in transitions:
            for group in list(self.groups.values()):
                ctx = contexts.get(group.scope.key)
                if ctx is None:
                    ctx = contexts[group.scope.key] = self.hub.context_factory(viewer=group.scope.viewer)
                payload = await self._message(group, row, ctx, group.variables)
                if payload is None:
                    continue
                for sub in list(group.subscribers.values()):
                    if sub.replaying:
                        sub.buffer.append((row.cursor, row.exception_id, payload))
                    else:
                        sub.sink.offer(sub.id, row.exception_id, payload)
                        self.hub.deliveries += 1

    async def _message(
        self, group: ExceptionGroup, row: Any, ctx: Context, variables: dict[str, Any]
    ) -> dict[str, Any] | None:
        viewer = group.scope.viewer
        root = transition_message(
            row.payload,
            row.cursor,
            row.at,
            min_severity=group.min_severity,
            customer=group.customer,
            viewer=viewer if viewer.is_customer else None,
            cursors=self.hub.cursors,
            # escalated orders (gateway/workflow.py), as exceptions shows them to internal viewers
            escalated=ctx.workflow.escalated_now() if ctx.workflow is not None and not viewer.is_customer else frozenset(),
        )
        if root is None:
            return None
        payload = await self.hub._execute(group, root, ctx, variables)  # type: ignore[arg-type]
        return {**payload, "extensions": {**payload.get("extensions", {}), "cursor": root.cursor}}


__all__ = ["ExceptionChannel", "GraphQLError", "Hub", "Scope", "SubscribeError", "Subscriber"]
