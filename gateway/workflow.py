"""The workflow service (owned by the ``Gateway``): acts through the durable store, keeps
every replica's subscribers in step, and answers the small read API other code uses.

- ``act(cmd)``: the store decides and stores atomically (``gateway/workflow_store.py``);
  then the service catches up on the store's audit sequence and pushes each new entry, in
  order, to ``exceptionWorkflowChanged`` subscribers (``WorkflowChannel``).
- Catching up (``pump``) is the one way entries reach subscribers, whoever wrote them:
  right after a local action, when another replica says so (Redis pub/sub
  ``<prefix>workflow:changed``) and every ``poll_seconds`` (other processes on the same
  SQLite file; a missed pub/sub message). Each entry is pushed once, by sequence.
- Read API for other modules (e.g. notices: "a CRITICAL exception unacknowledged for N
  minutes"): ``await service.state(exception_id)``, ``await
  service.is_acknowledged(exception_id)``, ``await service.escalated_orders()``; and the
  escalations cached for synchronous callers, ``service.escalated_now()``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from resolvers.context import Context
from resolvers.pagination import decode_workflow_cursor, encode_workflow_cursor
from resolvers.workflow import (
    AuditEntry,
    Command,
    Escalation,
    ExceptionWorkflow,
    Outcome,
    active_escalations,
)
from resolvers.workflow_mutations import WorkflowChange
from sources.resilience import request_budget
from sources.tasks import stop_task, wait_event

from .operation import Operation, Operations
from .redis_channel import RedisChannel
from .subscriptions import Channel, Group, Scope, Sink, Subscriber, field_args, shared_key
from .workflow_store import WorkflowStore

log = logging.getLogger("ordergraph.workflow")

WORKFLOW_CHANGED = "exceptionWorkflowChanged"


class WorkflowService:
    """Workflow state, acted on through ``store``, with live fan-out of every change."""

    def __init__(
        self,
        store: WorkflowStore,
        *,
        clock: Callable[[], dt.datetime],
        poll_seconds: float = 2.0,
        redis_url: str | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.channel: WorkflowChannel | None = None  # set by the gateway (the hub's)
        self.listeners: list[Callable[[AuditEntry], Any]] = []  # other modules' hooks, per entry
        self.pushed = 0  # entries pushed to subscribers
        self.state_reads = 0  # full reads of every exception's state (one per request that needs it)
        self._seen = 0  # the store's audit sequence pushed so far
        self._escalations: dict[str, Escalation] = {}
        self._pump_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._redis: _WakeChannel | None = None
        self._redis_url = redis_url
        self._redis_channel = getattr(store, "channel", None)

    def now(self) -> dt.datetime:
        return self.clock()

    async def start(self) -> None:
        self._seen = await self.store.last_seq()  # subscribers get what happens from now on
        self._escalations = await self.store.escalations()
        if self._redis_url and self._redis_channel:
            self._redis = _WakeChannel(self._redis_url, self._redis_channel, self._wake.set)
            await self._redis.start()
        self._task = asyncio.create_task(self._run(), name="ordergraph-workflow")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self._redis is not None:
            await self._redis.stop()
        await self.store.close()

    # --- acting ------------------------------------------------------------------------

    async def act(self, cmd: Command) -> Outcome:
        outcome = await self.store.act(cmd)
        if not outcome.replayed:
            try:
                await self.pump()  # push it (and anything before it) now, in order
            except Exception as exc:  # stored all the same: the loop pushes it once it can
                log.warning("workflow push after %s failed (%s); retrying in the background", outcome.entry.action.value, exc)
                self._wake.set()
        return outcome

    # --- reading (resolvers.workflow.WorkflowSource, and the read API) -------------------

    async def state(self, exception_id: str) -> ExceptionWorkflow | None:
        """The workflow state of one exception (None: nobody acted on it yet)."""
        return await self.store.state(exception_id)

    async def is_acknowledged(self, exception_id: str) -> bool:
        """Whether someone acknowledged the exception (and it was not reopened since)."""
        w = await self.store.state(exception_id)
        return w is not None and w.acknowledged

    async def states(self) -> dict[str, ExceptionWorkflow]:
        self.state_reads += 1
        return await self.store.states()

    async def escalations(self) -> dict[str, Escalation]:
        found = await self.store.escalations()
        self._escalations = found
        return found

    async def escalated_orders(self) -> frozenset[str]:
        """The sales orders escalated right now (read from the store)."""
        return active_escalations((await self.escalations()).values(), self.clock())

    def escalated_now(self) -> frozenset[str]:
        """The same from this replica's copy (kept by every pushed entry and each poll), for
        code that cannot await."""
        return active_escalations(self._escalations.values(), self.clock())

    async def trail(self, exception_id: str) -> list[AuditEntry]:
        return await self.store.trail(exception_id)

    async def order_trail(self, sales_order: str) -> list[AuditEntry]:
        return await self.store.order_trail(sales_order)

    # --- catching up and pushing ----------------------------------------------------------

    async def pump(self) -> int:
        """Push every audit entry after the last one pushed, in order; returns how many."""
        async with self._pump_lock:
            pushed = 0
            while True:
                entries = await self.store.entries_after(self._seen)
                if not entries:
                    return pushed
                if any(e.exception_id is None for e in entries):
                    self._escalations = await self.store.escalations()
                for entry in entries:
                    self._seen = entry.seq
                    pushed += 1
                    self.pushed += 1
                    if self.channel is not None:
                        self.channel.publish([entry])
                    for listener in self.listeners:
                        try:
                            listener(entry)
                        except Exception:
                            log.exception("workflow listener failed")

    async def _run(self) -> None:
        while True:
            await wait_event(self._wake, self.poll_seconds)
            self._wake.clear()
            try:
                await self.pump()
                self._escalations = await self.store.escalations()  # expiries, other processes
            except Exception as exc:
                log.warning("workflow catch-up failed (%s); retrying", exc)


class _WakeChannel(RedisChannel):
    """Another replica acted: catch up now rather than at the next poll."""

    role = "redis workflow"

    def __init__(self, url: str, channel: str, wake: Callable[[], None]) -> None:
        super().__init__(url, channel)
        self._wake_up = wake

    async def start(self) -> None:
        await self._subscribe()
        self._listen_in_background()

    async def resubscribed(self) -> None:
        self._wake_up()

    def received(self, data: bytes | str) -> None:
        self._wake_up()


# --- exceptionWorkflowChanged fan-out ---------------------------------------------------------


@dataclasses.dataclass(eq=False, slots=True)
class WorkflowGroup(Group):
    exception_id: str | None = None
    sales_order: str | None = None


class WorkflowChannel(Channel[WorkflowGroup]):
    """Fan-out of audit entries to ``exceptionWorkflowChanged`` groups (internal viewers
    only: the policy layer refuses the field to customers). One execution per entry and
    group; each message carries ``extensions.cursor`` (and ``seq``): a subscriber that
    reconnects with ``after`` first gets the entries it missed from the store, while live
    ones wait in a buffer, then goes live."""

    task_name = "ordergraph-workflow-hub"

    def __init__(self, operations: Operations, cursors: Any, service: WorkflowService) -> None:
        super().__init__(operations, cursors)
        self.service = service

    def publish(self, entries: list[AuditEntry]) -> None:
        self.enqueue(entries)

    async def subscribe(self, sub_id: str, sink: Sink, op: Operation, scope: Scope) -> Subscriber:
        args = field_args(op)
        exception_id = str(args["exceptionId"]) if args.get("exceptionId") is not None else None
        sales_order = str(args["orderId"]) if args.get("orderId") is not None else None
        if sales_order is not None:
            self.context(scope.viewer).check_key("SalesOrder", sales_order, "orderId")
        after = self._after(args.get("after"))
        key = shared_key(WORKFLOW_CHANGED, op, scope)
        shared_vars = {k: v for k, v in op.variables.items() if k != "after"}
        sub = self.join(
            sub_id, sink, key,
            lambda: WorkflowGroup(key, op.document, op.name, shared_vars, scope, exception_id=exception_id, sales_order=sales_order),  # type: ignore[arg-type]
            replaying=after is not None,
        )
        if after is None:
            return sub
        return await self.open(sub, lambda s: self._replay(s, after))

    def _after(self, raw: Any) -> int | None:
        if raw is None:
            return None
        return decode_workflow_cursor(self.cursors, str(raw))

    async def _replay(self, sub: Subscriber, after: int) -> int:
        """What the subscriber missed after ``after``, from the store; the last seq seen."""
        last = after
        ctx = self.context(sub.group.scope.viewer)
        while True:
            entries = await self.service.store.entries_after(last)
            if not entries:
                break
            for entry in entries:
                if _matches(sub.group, entry):
                    self.send(sub, f"workflow:{entry.seq}", await self._payload(sub.group, entry, ctx))
                last = entry.seq
        return last

    async def _payload(self, group: WorkflowGroup, entry: AuditEntry, ctx: Context) -> dict[str, Any]:
        cursor = encode_workflow_cursor(self.cursors, entry.seq)
        payload = await self.execute(group, WorkflowChange(entry_record=entry), ctx, group.variables, cursor)
        payload["extensions"]["seq"] = entry.seq
        return payload

    async def fan_out(self, entries: list[AuditEntry]) -> None:
        with request_budget():
            contexts: dict[str, Context] = {}
            for entry in entries:
                for group in list(self.groups.values()):
                    if not _matches(group, entry):
                        continue
                    ctx = contexts.get(group.scope.key)
                    if ctx is None:
                        ctx = contexts[group.scope.key] = self.context(group.scope.viewer)
                    # a key of its own per entry: a slow client's sink coalesces by key, and no entry may be lost
                    self.deliver(group, entry.seq, f"workflow:{entry.seq}", await self._payload(group, entry, ctx))


def _matches(group: WorkflowGroup, entry: AuditEntry) -> bool:
    """Whether an entry concerns the group's exception or order (all, without either)."""
    if group.exception_id is not None and entry.exception_id != group.exception_id:
        return False
    return group.sales_order is None or group.sales_order in entry.sales_orders
