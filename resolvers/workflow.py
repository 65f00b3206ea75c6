"""Workflow on exceptions: acknowledge, assign, comment, snooze, resolve, reopen; and
order-level priority escalation. Pure rules (no I/O, no strawberry).

The model, in short:

- **State per exception** (``ExceptionWorkflow``), keyed by the exception's stable id
  (``MACHINE_DOWN:mes:WC-20``): who acknowledged it and when, its owner (a person or a
  team), until when it is snoozed, whether it is resolved (by whom, when, why), how many
  comments it has. No state at all means NEW: nobody has touched it.
- **Escalation per order** (``Escalation``): a reason and an expiry. While active, each of
  the order's exceptions counts one severity level higher (capped at CRITICAL) for
  internal viewers, and in ``impact`` the order ranks before every other (then as before).
  Customers never see the effect: the escalation is a commercial decision.
- **Commands** (``Command``) are decided by ``decide`` against the current state: either a
  new state and one audit entry (``AuditEntry``: who, when, what), or ``WorkflowRefused``
  with a clear reason (acknowledging twice, snoozing a resolved exception, ...). The store
  (``gateway/workflow_store.py``) runs ``decide`` inside one atomic step, so two replicas
  acting at once see each other's result.
- **Idempotency**: a command carries the client's ``clientMutationId``; the store keeps the
  first result under (actor, clientMutationId) with the command's ``fingerprint``. The same
  id again replays that result (no second audit entry); the same id with other input is
  refused (``IDEMPOTENCY_CONFLICT``).

Times here are the gateway's wall clock: people snooze "until 14:00" and escalate "until
Friday" in real time, also when the demo's plant runs faster.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Collection, Iterable, Mapping
from enum import Enum
from typing import Any, Protocol

import orjson

from .enums import Severity
from .exception_rules import Detection, ExceptionRecord

MAX_TEXT = 2000  # comment, reason
MAX_NAME = 100  # assignee
MAX_CLIENT_MUTATION_ID = 128
MAX_SNOOZE = dt.timedelta(days=90)
MAX_ESCALATION = dt.timedelta(days=365)


class WorkflowAction(Enum):
    """One step of the workflow, as the audit trail records it."""

    ACKNOWLEDGED = "ACKNOWLEDGED"
    ASSIGNED = "ASSIGNED"
    UNASSIGNED = "UNASSIGNED"
    COMMENTED = "COMMENTED"
    SNOOZED = "SNOOZED"
    RESOLVED = "RESOLVED"
    REOPENED = "REOPENED"
    ESCALATED = "ESCALATED"
    ESCALATION_WITHDRAWN = "ESCALATION_WITHDRAWN"


class WorkflowStatus(Enum):
    """Where an exception stands with the people handling it."""

    NEW = "NEW"  # nobody acknowledged it
    ACKNOWLEDGED = "ACKNOWLEDGED"
    SNOOZED = "SNOOZED"  # until snoozedUntil; then it is back (NEW or ACKNOWLEDGED)
    RESOLVED = "RESOLVED"  # someone resolved it with a reason (the data may still show it open)


class AssigneeKind(Enum):
    PERSON = "PERSON"
    TEAM = "TEAM"


class WorkflowRefused(ValueError):
    """A command the rules refuse; ``message`` is safe to show, ``code`` goes to extensions."""

    def __init__(self, message: str, code: str = "BAD_USER_INPUT") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _ts(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def _dt(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@dataclasses.dataclass(frozen=True, slots=True)
class Assignee:
    kind: AssigneeKind
    name: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "name": self.name}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Assignee | None:
        return cls(AssigneeKind(data["kind"]), data["name"]) if data else None

    def __str__(self) -> str:
        return f"{self.kind.value.lower()} {self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class ExceptionWorkflow:
    """What people did with one exception so far."""

    exception_id: str
    acknowledged_by: str | None = None
    acknowledged_at: dt.datetime | None = None
    assignee: Assignee | None = None
    snoozed_until: dt.datetime | None = None
    resolved_by: str | None = None
    resolved_at: dt.datetime | None = None
    resolution: str | None = None
    comments: int = 0
    updated_by: str | None = None
    updated_at: dt.datetime | None = None
    version: int = 0  # audit entries that changed it

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    @property
    def resolved(self) -> bool:
        return self.resolved_at is not None

    def snoozed(self, now: dt.datetime) -> bool:
        """Snoozed right now (a snooze whose time has passed no longer counts)."""
        return self.snoozed_until is not None and self.snoozed_until > now

    def status(self, now: dt.datetime) -> WorkflowStatus:
        if self.resolved:
            return WorkflowStatus.RESOLVED
        if self.snoozed(now):
            return WorkflowStatus.SNOOZED
        return WorkflowStatus.ACKNOWLEDGED if self.acknowledged else WorkflowStatus.NEW

    def to_json(self) -> dict[str, Any]:
        return {
            "exceptionId": self.exception_id,
            "acknowledgedBy": self.acknowledged_by,
            "acknowledgedAt": _ts(self.acknowledged_at),
            "assignee": self.assignee.to_json() if self.assignee else None,
            "snoozedUntil": _ts(self.snoozed_until),
            "resolvedBy": self.resolved_by,
            "resolvedAt": _ts(self.resolved_at),
            "resolution": self.resolution,
            "comments": self.comments,
            "updatedBy": self.updated_by,
            "updatedAt": _ts(self.updated_at),
            "version": self.version,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExceptionWorkflow:
        return cls(
            exception_id=data["exceptionId"],
            acknowledged_by=data.get("acknowledgedBy"),
            acknowledged_at=_dt(data.get("acknowledgedAt")),
            assignee=Assignee.from_json(data.get("assignee")),
            snoozed_until=_dt(data.get("snoozedUntil")),
            resolved_by=data.get("resolvedBy"),
            resolved_at=_dt(data.get("resolvedAt")),
            resolution=data.get("resolution"),
            comments=int(data.get("comments", 0)),
            updated_by=data.get("updatedBy"),
            updated_at=_dt(data.get("updatedAt")),
            version=int(data.get("version", 0)),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Escalation:
    """A planner's priority escalation of one order, until ``expires_at``."""

    sales_order: str
    reason: str
    expires_at: dt.datetime
    escalated_by: str
    escalated_at: dt.datetime
    withdrawn_by: str | None = None
    withdrawn_at: dt.datetime | None = None

    def active(self, now: dt.datetime) -> bool:
        return self.withdrawn_at is None and self.expires_at > now

    def to_json(self) -> dict[str, Any]:
        return {
            "salesOrder": self.sales_order,
            "reason": self.reason,
            "expiresAt": _ts(self.expires_at),
            "escalatedBy": self.escalated_by,
            "escalatedAt": _ts(self.escalated_at),
            "withdrawnBy": self.withdrawn_by,
            "withdrawnAt": _ts(self.withdrawn_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Escalation:
        return cls(
            sales_order=data["salesOrder"],
            reason=data["reason"],
            expires_at=_dt(data["expiresAt"]),  # type: ignore[arg-type]
            escalated_by=data["escalatedBy"],
            escalated_at=_dt(data["escalatedAt"]),  # type: ignore[arg-type]
            withdrawn_by=data.get("withdrawnBy"),
            withdrawn_at=_dt(data.get("withdrawnAt")),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit trail: who did what, when, to which exception or order."""

    seq: int  # store-wide order; 0 until stored
    action: WorkflowAction
    actor: str  # the token's subject
    role: str
    at: dt.datetime
    exception_id: str | None  # None for an order's escalation
    sales_orders: tuple[str, ...]  # the orders concerned at the time
    text: str | None = None  # comment or reason
    assignee: Assignee | None = None
    until: dt.datetime | None = None  # snoozed until / escalation expiry
    client_mutation_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "action": self.action.value,
            "actor": self.actor,
            "role": self.role,
            "at": _ts(self.at),
            "exceptionId": self.exception_id,
            "salesOrders": list(self.sales_orders),
            "text": self.text,
            "assignee": self.assignee.to_json() if self.assignee else None,
            "until": _ts(self.until),
            "clientMutationId": self.client_mutation_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEntry:
        return cls(
            seq=int(data["seq"]),
            action=WorkflowAction(data["action"]),
            actor=data["actor"],
            role=data["role"],
            at=_dt(data["at"]),  # type: ignore[arg-type]
            exception_id=data.get("exceptionId"),
            sales_orders=tuple(data.get("salesOrders", ())),
            text=data.get("text"),
            assignee=Assignee.from_json(data.get("assignee")),
            until=_dt(data.get("until")),
            client_mutation_id=data.get("clientMutationId"),
        )

    def describe(self) -> str:
        """The entry in plant words, e.g. "ASSIGNED to team Quality"."""
        match self.action:
            case WorkflowAction.ASSIGNED:
                return f"assigned to {self.assignee}"
            case WorkflowAction.SNOOZED:
                return f"snoozed until {_ts(self.until)}" + (f": {self.text}" if self.text else "")
            case WorkflowAction.ESCALATED:
                return f"escalated until {_ts(self.until)}: {self.text}"
        words = self.action.value.lower().replace("_", " ")
        return f"{words}: {self.text}" if self.text else words


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    """One workflow mutation, as the rules decide it."""

    action: WorkflowAction
    actor: str
    role: str
    at: dt.datetime
    client_mutation_id: str
    exception_id: str | None = None  # exception commands
    sales_order: str | None = None  # escalation commands
    sales_orders: tuple[str, ...] = ()  # orders concerned (the exception's affected orders)
    text: str | None = None
    assignee: Assignee | None = None
    until: dt.datetime | None = None

    @property
    def target(self) -> str:
        return self.exception_id if self.exception_id is not None else f"order:{self.sales_order}"

    def fingerprint(self) -> str:
        """What makes two commands "the same input" for idempotency: not who or when."""
        data = [
            self.action.value,
            self.exception_id,
            self.sales_order,
            self.text,
            self.assignee.to_json() if self.assignee else None,
            _ts(self.until),
        ]
        return hashlib.sha256(orjson.dumps(data)).hexdigest()

    def idempotency_key(self) -> str:
        """Client mutation ids are the client's: scoped to the actor, so two people's ids never collide."""
        return f"{self.actor}\x1f{self.client_mutation_id}"


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What ``decide`` returns: the target's new state and the audit entry (seq 0)."""

    entry: AuditEntry
    workflow: ExceptionWorkflow | None = None
    escalation: Escalation | None = None


def _text(value: str | None, what: str, *, required: bool) -> str | None:
    if value is None or not value.strip():
        if required:
            raise WorkflowRefused(f"`{what}` must not be empty.")
        return None
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise WorkflowRefused(f"`{what}` is at most {MAX_TEXT} characters.")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise WorkflowRefused(f"`{what}` must not contain control characters.")
    return value


def check_client_mutation_id(value: str) -> str:
    if not value or len(value) > MAX_CLIENT_MUTATION_ID or any(ord(c) < 33 for c in value):
        raise WorkflowRefused(
            f"`clientMutationId` is 1 to {MAX_CLIENT_MUTATION_ID} characters without spaces (e.g. a UUID)."
        )
    return value


def check_assignee(kind: AssigneeKind, name: str) -> Assignee:
    name = name.strip()
    if not name or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise WorkflowRefused(f"An assignee's name is 1 to {MAX_NAME} characters, without control characters.")
    return Assignee(kind, name)


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None:
        raise WorkflowRefused(f"`{what}` needs a time zone, e.g. 2026-12-01T14:00:00Z.")
    return value.astimezone(dt.UTC)


def normalise(cmd: Command) -> Command:
    """The command with its texts trimmed and checked, or ``WorkflowRefused``."""
    check_client_mutation_id(cmd.client_mutation_id)
    a = cmd.action
    required = a in (WorkflowAction.COMMENTED, WorkflowAction.RESOLVED, WorkflowAction.ESCALATED)
    name = {WorkflowAction.COMMENTED: "text", WorkflowAction.RESOLVED: "reason", WorkflowAction.ESCALATED: "reason"}
    text = _text(cmd.text, name.get(a, "comment" if a is WorkflowAction.SNOOZED else "reason"), required=required)
    until = cmd.until
    if a is WorkflowAction.SNOOZED:
        if until is None:
            raise WorkflowRefused("`until` is required to snooze.")
        until = _aware(until, "until")
        if until <= cmd.at:
            raise WorkflowRefused("`until` must be in the future.")
        if until - cmd.at > MAX_SNOOZE:
            raise WorkflowRefused(f"An exception is snoozed for at most {MAX_SNOOZE.days} days.")
    if a is WorkflowAction.ESCALATED:
        if until is None:
            raise WorkflowRefused("`expiresAt` is required to escalate.")
        until = _aware(until, "expiresAt")
        if until <= cmd.at:
            raise WorkflowRefused("`expiresAt` must be in the future.")
        if until - cmd.at > MAX_ESCALATION:
            raise WorkflowRefused(f"An escalation lasts at most {MAX_ESCALATION.days} days.")
    return dataclasses.replace(cmd, text=text, until=until)


def decide(cmd: Command, workflow: ExceptionWorkflow | None, escalation: Escalation | None) -> Decision:
    """Apply ``cmd`` (normalised) to the target's current state; ``WorkflowRefused`` when the
    rules do not allow it."""
    a, now, who = cmd.action, cmd.at, cmd.actor
    entry = AuditEntry(
        seq=0,
        action=a,
        actor=who,
        role=cmd.role,
        at=now,
        exception_id=cmd.exception_id,
        sales_orders=cmd.sales_orders,
        text=cmd.text,
        assignee=cmd.assignee,
        until=cmd.until,
        client_mutation_id=cmd.client_mutation_id,
    )
    if a in (WorkflowAction.ESCALATED, WorkflowAction.ESCALATION_WITHDRAWN):
        assert cmd.sales_order is not None
        if a is WorkflowAction.ESCALATED:
            assert cmd.until is not None and cmd.text is not None
            return Decision(entry, escalation=Escalation(cmd.sales_order, cmd.text, cmd.until, who, now))
        if escalation is None or not escalation.active(now):
            raise WorkflowRefused(f"Order {cmd.sales_order} has no active escalation.", "CONFLICT")
        withdrawn = dataclasses.replace(escalation, withdrawn_by=who, withdrawn_at=now)
        return Decision(entry, escalation=withdrawn)

    assert cmd.exception_id is not None
    w = workflow or ExceptionWorkflow(cmd.exception_id)
    if w.resolved and a not in (WorkflowAction.COMMENTED, WorkflowAction.REOPENED):
        raise WorkflowRefused(
            f"Exception {cmd.exception_id} was resolved by {w.resolved_by}; reopen it first.", "CONFLICT"
        )
    match a:
        case WorkflowAction.ACKNOWLEDGED:
            if w.acknowledged:
                raise WorkflowRefused(
                    f"Exception {cmd.exception_id} was already acknowledged by {w.acknowledged_by} "
                    f"at {_ts(w.acknowledged_at)}.",
                    "CONFLICT",
                )
            w = dataclasses.replace(w, acknowledged_by=who, acknowledged_at=now)
        case WorkflowAction.ASSIGNED | WorkflowAction.UNASSIGNED:
            if cmd.assignee == w.assignee:
                said = f"assigned to {w.assignee}" if w.assignee else "unassigned"
                raise WorkflowRefused(f"Exception {cmd.exception_id} is already {said}.", "CONFLICT")
            w = dataclasses.replace(w, assignee=cmd.assignee)
        case WorkflowAction.COMMENTED:
            w = dataclasses.replace(w, comments=w.comments + 1)
        case WorkflowAction.SNOOZED:
            w = dataclasses.replace(w, snoozed_until=cmd.until)
        case WorkflowAction.RESOLVED:
            w = dataclasses.replace(w, resolved_by=who, resolved_at=now, resolution=cmd.text, snoozed_until=None)
        case WorkflowAction.REOPENED:
            if not w.resolved:
                raise WorkflowRefused(f"Exception {cmd.exception_id} is not resolved.", "CONFLICT")
            # Reopened: it needs someone's attention again (acknowledgement too).
            w = dataclasses.replace(
                w,
                resolved_by=None,
                resolved_at=None,
                resolution=None,
                snoozed_until=None,
                acknowledged_by=None,
                acknowledged_at=None,
            )
        case _:  # pragma: no cover - every action is handled above
            raise WorkflowRefused(f"Unknown action {a.value}.")
    w = dataclasses.replace(w, updated_by=who, updated_at=now, version=w.version + 1)
    return Decision(entry, workflow=w)


# --- results as stored (replayed under a client mutation id) ------------------------------


def result_json(decision: Decision, seq: int) -> dict[str, Any]:
    """The mutation's result as kept for replays: the entry (with its seq) and the new state."""
    entry = dataclasses.replace(decision.entry, seq=seq)
    return {
        "entry": entry.to_json(),
        "workflow": decision.workflow.to_json() if decision.workflow else None,
        "escalation": decision.escalation.to_json() if decision.escalation else None,
    }


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """A stored (or replayed) result."""

    entry: AuditEntry
    workflow: ExceptionWorkflow | None
    escalation: Escalation | None
    replayed: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, replayed: bool) -> Outcome:
        return cls(
            entry=AuditEntry.from_json(data["entry"]),
            workflow=ExceptionWorkflow.from_json(data["workflow"]) if data.get("workflow") else None,
            escalation=Escalation.from_json(data["escalation"]) if data.get("escalation") else None,
            replayed=replayed,
        )


# --- escalation's effect on severity and ranking ------------------------------------------


def active_escalations(escalations: Iterable[Escalation], now: dt.datetime) -> frozenset[str]:
    """The sales orders escalated right now (expired and withdrawn ones do not count)."""
    return frozenset(e.sales_order for e in escalations if e.active(now))


def escalate_detection(d: Detection) -> Detection:
    """An escalated order's detection: one severity level higher (capped at CRITICAL)."""
    return dataclasses.replace(d, severity=d.severity.raised())


def escalate_record(record: ExceptionRecord, escalated: Collection[str]) -> ExceptionRecord:
    """``record`` with its escalated orders one severity level higher; the same object when
    none of its orders is escalated (its severity, the maximum, follows)."""
    if not escalated or not any(so in escalated for so in record.affected):
        return record
    affected = {so: escalate_detection(d) if so in escalated else d for so, d in record.affected.items()}
    return dataclasses.replace(record, affected=affected)


def escalated_rank(escalated: Collection[str], sales_order: str) -> int:
    """0 for an escalated order, 1 otherwise: prefixes the impact ranking."""
    return 0 if sales_order in escalated else 1


def severity_if_escalated(severity: Severity, escalated: bool) -> Severity:
    return severity.raised() if escalated else severity


class WorkflowSource(Protocol):
    """What resolvers need of the gateway's workflow service (``gateway/workflow.py``)."""

    def now(self) -> dt.datetime:
        """The wall clock workflow times are on."""
        ...

    async def act(self, cmd: Command) -> Outcome:
        """Decide and store ``cmd`` atomically (or replay its first result)."""
        ...

    async def states(self) -> dict[str, ExceptionWorkflow]:
        """Every exception's workflow state, by exception id."""
        ...

    async def escalations(self) -> dict[str, Escalation]:
        """Every order's latest escalation (active or not), by sales order."""
        ...

    async def trail(self, exception_id: str) -> list[AuditEntry]:
        """An exception's audit trail, oldest first."""
        ...

    async def order_trail(self, sales_order: str) -> list[AuditEntry]:
        """Every audit entry concerning an order (its exceptions' and its escalations'), oldest first."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class WorkflowView:
    """One request's snapshot of workflow state: read once, used by every field."""

    now: dt.datetime
    states: Mapping[str, ExceptionWorkflow]
    escalations: Mapping[str, Escalation]
    escalated: frozenset[str] = frozenset()

    @classmethod
    def of(cls, now: dt.datetime, states: Mapping[str, ExceptionWorkflow], escalations: Mapping[str, Escalation]) -> WorkflowView:
        return cls(now, states, escalations, active_escalations(escalations.values(), now))

    def state(self, exception_id: str) -> ExceptionWorkflow:
        return self.states.get(exception_id) or ExceptionWorkflow(exception_id)

    def status(self, exception_id: str) -> WorkflowStatus:
        return self.state(exception_id).status(self.now)

    def matches(
        self,
        exception_id: str,
        *,
        statuses: Collection[WorkflowStatus] | None = None,
        assignee: Assignee | None = None,
        unassigned: bool | None = None,
    ) -> bool:
        """The board's workflow filters: status, owner ("mine" is a person assignee), none."""
        w = self.state(exception_id)
        if statuses and w.status(self.now) not in statuses:
            return False
        if assignee is not None and w.assignee != assignee:
            return False
        if unassigned is not None and (w.assignee is None) != unassigned:
            return False
        return True
