"""GraphQL surface of the workflow on exceptions: mutations, types, the per-request view.

The rules are in ``workflow.py`` (pure); the state is in the gateway's workflow service
(``info.context.workflow``, typed as ``workflow.WorkflowSource``). Every mutation here is
for internal roles (``resolvers.policy`` refuses them to customers before execution; the
resolvers check again) and takes a ``clientMutationId``: the same id replays the first
result (``replayed: true``) and writes nothing; the same id with another input is an
``IDEMPOTENCY_CONFLICT`` error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry import Info

from . import workflow as rules
from .exception_types import OrderException, WorkflowStatus, visible_to
from .types import Order

WorkflowAction = strawberry.enum(rules.WorkflowAction, description="One step of the workflow (the audit trail's).")
AssigneeKind = strawberry.enum(rules.AssigneeKind, description="A person or a team.")


# Refusals of the rules are the caller's to fix: BAD_USER_INPUT (as Apollo and generic
# clients know it), with the precise reason beside it.
_CALLER_REASONS = frozenset({"NOT_FOUND", "CONFLICT", "IDEMPOTENCY_CONFLICT"})


def _error(message: str, code: str) -> GraphQLError:
    """``extensions.code`` BAD_USER_INPUT with ``extensions.reason`` NOT_FOUND (no such
    exception or order), CONFLICT (the state does not allow it, e.g. acknowledged already)
    or IDEMPOTENCY_CONFLICT (a clientMutationId reused for other input); FORBIDDEN and
    UNAVAILABLE as they are."""
    if code in _CALLER_REASONS:
        return GraphQLError(message, extensions={"code": "BAD_USER_INPUT", "reason": code})
    return GraphQLError(message, extensions={"code": code})


def _service(info: Info) -> rules.WorkflowSource:
    ctx = info.context
    if getattr(ctx, "viewer", None) is not None and ctx.viewer.is_customer:
        raise _error("The workflow on exceptions is for internal roles.", "FORBIDDEN")
    service = getattr(ctx, "workflow", None)
    if service is None:
        raise _error("The workflow store is not running in this gateway.", "UNAVAILABLE")
    return service


async def workflow_view(ctx: Any) -> rules.WorkflowView | None:
    """The request's workflow snapshot (read once per request); None for customers or when
    no workflow service runs."""
    viewer = getattr(ctx, "viewer", None)
    service = getattr(ctx, "workflow", None)
    if service is None or (viewer is not None and viewer.is_customer):
        return None
    pending = ctx.workflow_view
    if isinstance(pending, rules.WorkflowView):
        return pending
    if pending is None:
        # One read for the whole request, however many fields ask at once (a page of
        # orders each resolving Order.exceptions): they all await this one future.
        async def load() -> rules.WorkflowView:
            states, escalations = await asyncio.gather(service.states(), service.escalations())
            return rules.WorkflowView.of(service.now(), states, escalations)

        pending = ctx.workflow_view = asyncio.ensure_future(load())
    view = await pending
    ctx.workflow_view = view
    return view


@strawberry.type(description="Who owns an exception: a person (a token's subject) or a team.")
class Assignee:
    kind: AssigneeKind
    name: str


def _assignee(a: rules.Assignee | None) -> Assignee | None:
    return Assignee(kind=a.kind, name=a.name) if a is not None else None


@strawberry.type(description="One line of the audit trail: who did what, when.")
class WorkflowEntry:
    entry: strawberry.Private[rules.AuditEntry]

    @strawberry.field(description="Store-wide sequence number: entries are numbered in the order they happened.")
    def seq(self) -> int:
        return self.entry.seq

    @strawberry.field
    def action(self) -> WorkflowAction:
        return self.entry.action

    @strawberry.field(description="Who: the subject of the token that acted.")
    def actor(self) -> str:
        return self.entry.actor

    @strawberry.field(description="The actor's role.")
    def role(self) -> str:
        return self.entry.role

    @strawberry.field(description="When (the gateway's clock).")
    def at(self) -> dt.datetime:
        return self.entry.at

    @strawberry.field(description="The exception acted on; null for an order's escalation.")
    def exception_id(self) -> strawberry.ID | None:
        return strawberry.ID(self.entry.exception_id) if self.entry.exception_id else None

    @strawberry.field(description="The orders concerned at the time.")
    def order_ids(self) -> list[strawberry.ID]:
        return [strawberry.ID(so) for so in self.entry.sales_orders]

    @strawberry.field(description="The comment or reason given.")
    def text(self) -> str | None:
        return self.entry.text

    @strawberry.field(description="ASSIGNED: the new owner.")
    def assignee(self) -> Assignee | None:
        return _assignee(self.entry.assignee)

    @strawberry.field(description="SNOOZED: until when; ESCALATED: the expiry.")
    def until(self) -> dt.datetime | None:
        return self.entry.until

    @strawberry.field
    def client_mutation_id(self) -> str | None:
        return self.entry.client_mutation_id

    @strawberry.field(description="The entry in words, e.g. 'assigned to team Quality'.")
    def summary(self) -> str:
        return self.entry.describe()


@strawberry.type(name="ExceptionWorkflow", description="What people did with an exception so far.")
class ExceptionWorkflowType:
    state: strawberry.Private[rules.ExceptionWorkflow]
    now: strawberry.Private[dt.datetime]

    @strawberry.field
    def exception_id(self) -> strawberry.ID:
        return strawberry.ID(self.state.exception_id)

    @strawberry.field
    def status(self) -> WorkflowStatus:
        return self.state.status(self.now)

    @strawberry.field
    def acknowledged(self) -> bool:
        return self.state.acknowledged

    @strawberry.field
    def acknowledged_by(self) -> str | None:
        return self.state.acknowledged_by

    @strawberry.field
    def acknowledged_at(self) -> dt.datetime | None:
        return self.state.acknowledged_at

    @strawberry.field(description="The owner; null when unassigned.")
    def assignee(self) -> Assignee | None:
        return _assignee(self.state.assignee)

    @strawberry.field(description="Snoozed right now (until snoozedUntil).")
    def snoozed(self) -> bool:
        return self.state.snoozed(self.now)

    @strawberry.field(description="Until when it is snoozed; null when not snoozed (or the snooze ran out).")
    def snoozed_until(self) -> dt.datetime | None:
        return self.state.snoozed_until if self.state.snoozed(self.now) else None

    @strawberry.field
    def resolved(self) -> bool:
        return self.state.resolved

    @strawberry.field
    def resolved_by(self) -> str | None:
        return self.state.resolved_by

    @strawberry.field
    def resolved_at(self) -> dt.datetime | None:
        return self.state.resolved_at

    @strawberry.field(description="The reason given when it was resolved.")
    def resolution(self) -> str | None:
        return self.state.resolution

    @strawberry.field
    def comment_count(self) -> int:
        return self.state.comments

    @strawberry.field
    def updated_by(self) -> str | None:
        return self.state.updated_by

    @strawberry.field
    def updated_at(self) -> dt.datetime | None:
        return self.state.updated_at

    @strawberry.field(description="The audit trail of this exception, oldest first.")
    async def trail(self, info: Info) -> list[WorkflowEntry]:
        return [WorkflowEntry(entry=e) for e in await _service(info).trail(self.state.exception_id)]


def _workflow(state: rules.ExceptionWorkflow | None, now: dt.datetime) -> ExceptionWorkflowType | None:
    return ExceptionWorkflowType(state=state, now=now) if state is not None else None


@strawberry.type(name="Escalation", description="A planner's priority escalation of one order.")
class EscalationType:
    escalation: strawberry.Private[rules.Escalation]
    now: strawberry.Private[dt.datetime]

    @strawberry.field
    def order_id(self) -> strawberry.ID:
        return strawberry.ID(self.escalation.sales_order)

    @strawberry.field
    def reason(self) -> str:
        return self.escalation.reason

    @strawberry.field
    def expires_at(self) -> dt.datetime:
        return self.escalation.expires_at

    @strawberry.field(description="Neither withdrawn nor expired: the order's exceptions count one severity higher.")
    def active(self) -> bool:
        return self.escalation.active(self.now)

    @strawberry.field
    def escalated_by(self) -> str:
        return self.escalation.escalated_by

    @strawberry.field
    def escalated_at(self) -> dt.datetime:
        return self.escalation.escalated_at

    @strawberry.field
    def withdrawn_by(self) -> str | None:
        return self.escalation.withdrawn_by

    @strawberry.field
    def withdrawn_at(self) -> dt.datetime | None:
        return self.escalation.withdrawn_at


def _escalation(e: rules.Escalation | None, now: dt.datetime) -> EscalationType | None:
    return EscalationType(escalation=e, now=now) if e is not None else None


async def _exception(info: Info, exception_id: str | None) -> OrderException | None:
    if exception_id is None:
        return None
    tracker = info.context.exceptions
    record = tracker.get(exception_id) if tracker is not None else None
    if record is None:
        return None
    view = await workflow_view(info.context)
    if view is not None:
        record = rules.escalate_record(record, view.escalated)
    visible = visible_to(info.context, record)
    return OrderException(record=visible) if visible is not None else None


@strawberry.type(description="A workflow change, as pushed to exceptionWorkflowChanged subscribers.")
class WorkflowChange:
    entry_record: strawberry.Private[rules.AuditEntry]

    @strawberry.field
    def entry(self) -> WorkflowEntry:
        return WorkflowEntry(entry=self.entry_record)

    @strawberry.field(description="The exception's workflow state now (null for an order's escalation).")
    async def workflow(self, info: Info) -> ExceptionWorkflowType | None:
        if self.entry_record.exception_id is None:
            return None
        service = _service(info)
        state = await service.state(self.entry_record.exception_id)
        return _workflow(state, service.now())

    @strawberry.field(description="The exception, if still open or recently cleared.")
    async def exception(self, info: Info) -> OrderException | None:
        return await _exception(info, self.entry_record.exception_id)

    @strawberry.field(description="The order's escalation now (escalation entries).")
    async def escalation(self, info: Info) -> EscalationType | None:
        if self.entry_record.exception_id is not None or not self.entry_record.sales_orders:
            return None
        service = _service(info)
        found = (await service.escalations()).get(self.entry_record.sales_orders[0])
        return _escalation(found, service.now())


@strawberry.type(description="The result of a workflow mutation on an exception.")
class ExceptionWorkflowPayload:
    client_mutation_id: str
    replayed: bool = strawberry.field(
        description="true when this clientMutationId was answered before: this is that first result, nothing was written."
    )
    entry: WorkflowEntry = strawberry.field(description="The audit entry the action wrote.")
    workflow: ExceptionWorkflowType = strawberry.field(description="The exception's workflow state after the action.")
    exception_id: strawberry.Private[str]

    @strawberry.field(description="The exception as it stands now.")
    async def exception(self, info: Info) -> OrderException | None:
        return await _exception(info, self.exception_id)


@strawberry.type(description="The result of escalating an order or withdrawing its escalation.")
class EscalationPayload:
    client_mutation_id: str
    replayed: bool = strawberry.field(
        description="true when this clientMutationId was answered before: this is that first result, nothing was written."
    )
    entry: WorkflowEntry
    escalation: EscalationType
    sales_order: strawberry.Private[str]

    @strawberry.field
    async def order(self, info: Info) -> Order | None:
        rec = await info.context.loaders.sales_order.load(self.sales_order)
        return Order(record=rec) if rec else None


@strawberry.input(one_of=True, description="A person (e.g. a token's subject) or a team.")
class AssigneeInput:
    person: str | None = strawberry.UNSET
    team: str | None = strawberry.UNSET


def _command(info: Info, action: rules.WorkflowAction, client_mutation_id: str, **kwargs: Any) -> rules.Command:
    service = _service(info)
    viewer = info.context.viewer
    return rules.Command(
        action=action,
        actor=viewer.subject,
        role=viewer.role.value,
        at=service.now(),
        client_mutation_id=client_mutation_id,
        **kwargs,
    )


async def _act(info: Info, cmd: rules.Command) -> rules.Outcome:
    try:
        cmd = rules.normalise(cmd)
        return await _service(info).act(cmd)
    except rules.WorkflowRefused as exc:
        raise _error(exc.message, exc.code) from exc


async def _on_exception(
    info: Info, action: rules.WorkflowAction, exception_id: strawberry.ID, client_mutation_id: str, **kwargs: Any
) -> ExceptionWorkflowPayload:
    eid = str(exception_id)
    tracker = info.context.exceptions
    record = tracker.get(eid) if tracker is not None else None
    if record is None:
        raise _error(f"No open or recently cleared exception {eid!r}.", "NOT_FOUND")
    cmd = _command(info, action, client_mutation_id, exception_id=eid, sales_orders=tuple(sorted(record.affected)), **kwargs)
    outcome = await _act(info, cmd)
    assert outcome.workflow is not None
    return ExceptionWorkflowPayload(
        client_mutation_id=client_mutation_id,
        replayed=outcome.replayed,
        entry=WorkflowEntry(entry=outcome.entry),
        workflow=ExceptionWorkflowType(state=outcome.workflow, now=_service(info).now()),
        exception_id=eid,
    )


async def _on_order(
    info: Info, action: rules.WorkflowAction, order_id: strawberry.ID, client_mutation_id: str, **kwargs: Any
) -> EscalationPayload:
    so = info.context.check_key("SalesOrder", str(order_id), "orderId")
    if await info.context.loaders.sales_order.load(so) is None:
        raise _error(f"No order {so!r}.", "NOT_FOUND")
    cmd = _command(info, action, client_mutation_id, sales_order=so, sales_orders=(so,), **kwargs)
    outcome = await _act(info, cmd)
    assert outcome.escalation is not None
    return EscalationPayload(
        client_mutation_id=client_mutation_id,
        replayed=outcome.replayed,
        entry=WorkflowEntry(entry=outcome.entry),
        escalation=EscalationType(escalation=outcome.escalation, now=_service(info).now()),
        sales_order=so,
    )


A = rules.WorkflowAction


@strawberry.type(description="Workflow on exceptions and order escalation: internal roles only.")
class Mutation:
    @strawberry.mutation(description="Say you have seen an exception and are on it.")
    async def acknowledge_exception(
        self, info: Info, exception_id: strawberry.ID, client_mutation_id: str, comment: str | None = None
    ) -> ExceptionWorkflowPayload | None:
        return await _on_exception(info, A.ACKNOWLEDGED, exception_id, client_mutation_id, text=comment)

    @strawberry.mutation(description="Give an exception an owner (a person or a team); null assignee unassigns it.")
    async def assign_exception(
        self, info: Info, exception_id: strawberry.ID, client_mutation_id: str, assignee: AssigneeInput | None
    ) -> ExceptionWorkflowPayload | None:
        owner = None
        if assignee is not None:
            person, team = assignee.person, assignee.team
            try:
                owner = (
                    rules.check_assignee(rules.AssigneeKind.PERSON, person)
                    if isinstance(person, str)
                    else rules.check_assignee(rules.AssigneeKind.TEAM, str(team))
                )
            except rules.WorkflowRefused as exc:
                raise _error(exc.message, exc.code) from exc
        action = A.ASSIGNED if owner is not None else A.UNASSIGNED
        return await _on_exception(info, action, exception_id, client_mutation_id, assignee=owner)

    @strawberry.mutation(description="Add a comment to an exception's trail.")
    async def comment_on_exception(
        self, info: Info, exception_id: strawberry.ID, client_mutation_id: str, text: str
    ) -> ExceptionWorkflowPayload | None:
        return await _on_exception(info, A.COMMENTED, exception_id, client_mutation_id, text=text)

    @strawberry.mutation(description="Hide an exception from the active board until a time (at most 90 days).")
    async def snooze_exception(
        self, info: Info, exception_id: strawberry.ID, client_mutation_id: str, until: dt.datetime, comment: str | None = None
    ) -> ExceptionWorkflowPayload | None:
        return await _on_exception(info, A.SNOOZED, exception_id, client_mutation_id, until=until, text=comment)

    @strawberry.mutation(description="Mark an exception handled, with a reason (the data may still show it open).")
    async def resolve_exception(
        self, info: Info, exception_id: strawberry.ID, client_mutation_id: str, reason: str
    ) -> ExceptionWorkflowPayload | None:
        return await _on_exception(info, A.RESOLVED, exception_id, client_mutation_id, text=reason)

    @strawberry.mutation(description="Reopen a resolved exception: it needs acknowledging again.")
    async def reopen_exception(
        self, info: Info, exception_id: strawberry.ID, client_mutation_id: str, reason: str | None = None
    ) -> ExceptionWorkflowPayload | None:
        return await _on_exception(info, A.REOPENED, exception_id, client_mutation_id, text=reason)

    @strawberry.mutation(
        description="Escalate an order's priority until expiresAt: each of its exceptions counts one severity level "
        "higher, and in impact it ranks first. Escalating again replaces reason and expiry."
    )
    async def escalate_order(
        self, info: Info, order_id: strawberry.ID, client_mutation_id: str, reason: str, expires_at: dt.datetime
    ) -> EscalationPayload | None:
        return await _on_order(info, A.ESCALATED, order_id, client_mutation_id, text=reason, until=expires_at)

    @strawberry.mutation(description="End an order's escalation before it expires.")
    async def withdraw_escalation(
        self, info: Info, order_id: strawberry.ID, client_mutation_id: str, reason: str | None = None
    ) -> EscalationPayload | None:
        return await _on_order(info, A.ESCALATION_WITHDRAWN, order_id, client_mutation_id, text=reason)


# --- reading workflow on orders and exceptions --------------------------------------------------


def exception_workflow(info: Info, exception_id: str) -> Any:
    """``OrderException.workflow``: the state (NEW when nobody acted on it yet); the value
    itself when the request's snapshot is read, else an awaitable of it."""
    view = info.context.workflow_view
    if isinstance(view, rules.WorkflowView):
        return ExceptionWorkflowType(state=view.state(exception_id), now=view.now)

    async def later() -> ExceptionWorkflowType:
        loaded = await workflow_view(info.context)
        if loaded is None:
            _service(info)  # the clear error (customer, or no workflow service)
            raise AssertionError  # pragma: no cover
        return ExceptionWorkflowType(state=loaded.state(exception_id), now=loaded.now)

    return later()


async def order_workflow_history(info: Info, sales_order: str) -> list[WorkflowEntry]:
    """``Order.workflowHistory``: every audit entry concerning the order, oldest first."""
    return [WorkflowEntry(entry=e) for e in await _service(info).order_trail(sales_order)]


async def order_escalation(info: Info, sales_order: str) -> EscalationType | None:
    """``Order.escalation``: the order's latest escalation (active or not)."""
    view = await workflow_view(info.context)
    if view is None:
        _service(info)
        return None
    return _escalation(view.escalations.get(sales_order), view.now)


def escalated_impact(result: Any, escalated: frozenset[str]) -> Any:
    """An impact result with escalated orders one severity higher and ranked first."""
    if not escalated:
        return result
    from . import impact

    orders = []
    for o in result.orders:
        if o.sales_order in escalated:
            o = dataclasses.replace(
                o,
                current=dataclasses.replace(o.current, severity=o.current.severity.raised()),
                new=dataclasses.replace(o.new, severity=o.new.severity.raised()),
            )
        orders.append(o)
    orders.sort(key=lambda o: (rules.escalated_rank(escalated, o.sales_order), *impact.rank_key(o)))
    return dataclasses.replace(result, orders=orders)
