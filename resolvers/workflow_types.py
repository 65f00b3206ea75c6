"""GraphQL types of the workflow on exceptions, and the per-request workflow view.

The rules are in ``workflow.py`` (pure); the state is in the gateway's workflow service
(``info.context.workflow``, typed as ``workflow.WorkflowSource``). The types here read
it: an exception's workflow, an order's audit trail and escalation. The mutations and
their payloads, which return exceptions and orders, are in ``workflow_mutations.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry import Info

from . import impact
from . import workflow as rules
from .fetch import workflow_view

WorkflowAction = strawberry.enum(rules.WorkflowAction, description="One step of the workflow (the audit trail's).")
AssigneeKind = strawberry.enum(rules.AssigneeKind, description="A person or a team.")
WorkflowStatus = strawberry.enum(rules.WorkflowStatus, description="Where an exception stands with the people handling it.")


# Refusals of the rules are the caller's to fix: BAD_USER_INPUT (as Apollo and generic
# clients know it), with the precise reason beside it.
_CALLER_REASONS = frozenset({"NOT_FOUND", "CONFLICT", "IDEMPOTENCY_CONFLICT"})


def workflow_error(message: str, code: str) -> GraphQLError:
    """``extensions.code`` BAD_USER_INPUT with ``extensions.reason`` NOT_FOUND (no such
    exception or order), CONFLICT (the state does not allow it, e.g. acknowledged already)
    or IDEMPOTENCY_CONFLICT (a clientMutationId reused for other input); FORBIDDEN and
    UNAVAILABLE as they are."""
    if code in _CALLER_REASONS:
        return GraphQLError(message, extensions={"code": "BAD_USER_INPUT", "reason": code})
    return GraphQLError(message, extensions={"code": code})


def service_of(info: Info) -> rules.WorkflowSource:
    ctx = info.context
    if getattr(ctx, "viewer", None) is not None and ctx.viewer.is_customer:
        raise workflow_error("The workflow on exceptions is for internal roles.", "FORBIDDEN")
    service = getattr(ctx, "workflow", None)
    if service is None:
        raise workflow_error("The workflow store is not running in this gateway.", "UNAVAILABLE")
    return service


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
        return [WorkflowEntry(entry=e) for e in await service_of(info).trail(self.state.exception_id)]


def workflow_state(state: rules.ExceptionWorkflow | None, now: dt.datetime) -> ExceptionWorkflowType | None:
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


def escalation_of(e: rules.Escalation | None, now: dt.datetime) -> EscalationType | None:
    return EscalationType(escalation=e, now=now) if e is not None else None


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
            service_of(info)  # the clear error (customer, or no workflow service)
            raise AssertionError  # pragma: no cover
        return ExceptionWorkflowType(state=loaded.state(exception_id), now=loaded.now)

    return later()


async def order_workflow_history(info: Info, sales_order: str) -> list[WorkflowEntry]:
    """``Order.workflowHistory``: every audit entry concerning the order, oldest first."""
    return [WorkflowEntry(entry=e) for e in await service_of(info).order_trail(sales_order)]


async def order_escalation(info: Info, sales_order: str) -> EscalationType | None:
    """``Order.escalation``: the order's latest escalation (active or not)."""
    view = await workflow_view(info.context)
    if view is None:
        service_of(info)
        return None
    return escalation_of(view.escalations.get(sales_order), view.now)


def escalated_impact(result: Any, escalated: frozenset[str]) -> Any:
    """An impact result with escalated orders one severity higher and ranked first."""
    if not escalated:
        return result
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
