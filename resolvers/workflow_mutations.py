"""GraphQL mutations of the workflow on exceptions, and what they and the subscription return.

Every mutation here is for internal roles (``resolvers.policy`` refuses them to customers
before execution; the resolvers check again) and takes a ``clientMutationId``: the same id
replays the first result (``replayed: true``) and writes nothing; the same id with
another input is an ``IDEMPOTENCY_CONFLICT`` error. The workflow's own types and the
per-request view are in ``workflow_types.py``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
from strawberry import Info

from . import workflow as rules
from .exception_types import OrderException, visible_to
from .fetch import workflow_view
from .types import Order
from .workflow_types import (
    EscalationType,
    ExceptionWorkflowType,
    WorkflowEntry,
    escalation_of,
    service_of,
    workflow_error,
    workflow_state,
)


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
        service = service_of(info)
        state = await service.state(self.entry_record.exception_id)
        return workflow_state(state, service.now())

    @strawberry.field(description="The exception, if still open or recently cleared.")
    async def exception(self, info: Info) -> OrderException | None:
        return await _exception(info, self.entry_record.exception_id)

    @strawberry.field(description="The order's escalation now (escalation entries).")
    async def escalation(self, info: Info) -> EscalationType | None:
        if self.entry_record.exception_id is not None or not self.entry_record.sales_orders:
            return None
        service = service_of(info)
        found = (await service.escalations()).get(self.entry_record.sales_orders[0])
        return escalation_of(found, service.now())


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
    service = service_of(info)
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
        return await service_of(info).act(cmd)
    except rules.WorkflowRefused as exc:
        raise workflow_error(exc.message, exc.code) from exc


async def _on_exception(
    info: Info, action: rules.WorkflowAction, exception_id: strawberry.ID, client_mutation_id: str, **kwargs: Any
) -> ExceptionWorkflowPayload:
    eid = str(exception_id)
    tracker = info.context.exceptions
    record = tracker.get(eid) if tracker is not None else None
    if record is None:
        raise workflow_error(f"No open or recently cleared exception {eid!r}.", "NOT_FOUND")
    cmd = _command(info, action, client_mutation_id, exception_id=eid, sales_orders=tuple(sorted(record.affected)), **kwargs)
    outcome = await _act(info, cmd)
    assert outcome.workflow is not None
    return ExceptionWorkflowPayload(
        client_mutation_id=client_mutation_id,
        replayed=outcome.replayed,
        entry=WorkflowEntry(entry=outcome.entry),
        workflow=ExceptionWorkflowType(state=outcome.workflow, now=service_of(info).now()),
        exception_id=eid,
    )


async def _on_order(
    info: Info, action: rules.WorkflowAction, order_id: strawberry.ID, client_mutation_id: str, **kwargs: Any
) -> EscalationPayload:
    so = info.context.check_key("SalesOrder", str(order_id), "orderId")
    if await info.context.loaders.sales_order.load(so) is None:
        raise workflow_error(f"No order {so!r}.", "NOT_FOUND")
    cmd = _command(info, action, client_mutation_id, sales_order=so, sales_orders=(so,), **kwargs)
    outcome = await _act(info, cmd)
    assert outcome.escalation is not None
    return EscalationPayload(
        client_mutation_id=client_mutation_id,
        replayed=outcome.replayed,
        entry=WorkflowEntry(entry=outcome.entry),
        escalation=EscalationType(escalation=outcome.escalation, now=service_of(info).now()),
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
                raise workflow_error(exc.message, exc.code) from exc
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
