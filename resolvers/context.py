"""What every resolver gets as ``info.context``: loaders, clock and limits of one request."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from graphql import GraphQLError

from sources import Sources

from .exception_rules import ExceptionSource
from .loaders import Cache, Loaders
from .pagination import Cursors, process_cursors
from .policy import Viewer, scope_loaders
from .prediction import PredictionParams


@dataclasses.dataclass(slots=True)
class Context:
    """Per-request state. Built by the gateway; resolvers only read it."""

    sources: Sources
    cache: Cache
    loaders: Loaders
    # "Now" of the domain rules, read through ``now`` (below), which marks the answer as
    # moving with the clock; rules that record when their answer changes (``clock_bound``)
    # read ``instant`` instead.
    instant: dt.datetime
    max_first: int = 500
    # completed orders leave the default `orders` listing this many days after their last
    # change (0: they stay); they stay readable (order(id:), includeCompleted, stage filter)
    list_completed_days: float = 0.0
    journal: Any = None  # gateway.journal.Journal, for Order.history
    # the gateway's exception tracker (open set, transitions), for exceptions and impact
    exceptions: ExceptionSource | None = None
    # who is asking (resolvers.policy); the default is the gateway itself, reading all
    viewer: Viewer = dataclasses.field(default_factory=Viewer.system)
    # the prediction model's lead times and calendars (the gateway's [calendar] settings)
    prediction_params: PredictionParams = dataclasses.field(default_factory=PredictionParams)
    # seals and opens the cursors this request gives out and takes (resolvers.pagination)
    cursors: Cursors = dataclasses.field(default_factory=process_cursors)
    # per-request memo of assembled order views, by sales order number
    views: dict[str, Any] = dataclasses.field(default_factory=dict)
    # views assembled up front for a whole page (fetch.prefetch_views): derived fields read
    # them synchronously instead of awaiting per order
    ready: dict[str, Any] = dataclasses.field(default_factory=dict)
    predictions: dict[str, Any] = dataclasses.field(default_factory=dict)
    # customers loaded up front for a page (fetch.prefetch_customers), by customer id
    ready_customers: dict[str, Any] = dataclasses.field(default_factory=dict)
    # For the response cache (gateway.response_cache): record-cache keys this answer
    # depends on beyond what the loaders logged (a listing's records and membership), and
    # whether it may be cached at all (not when it depends on derived, event-less state).
    deps: set[Any] = dataclasses.field(default_factory=set)
    cacheable: bool = True
    # For the response cache: whether anything read the clock without saying until when its
    # answer holds (``now``: the entry then lives at most ``response_ttl_seconds``), and the
    # earliest instant at which a value the rules compared with the clock changes (None:
    # no such instant recorded).
    clock_read: bool = False
    valid_until: dt.datetime | None = None
    # Work centres whose shop-floor data is unreliable (MQTT: a death or a seq gap), by id;
    # the production section's freshness says STALE for orders on them (gateway/mqtt.py).
    stale_work_centers: Any = dataclasses.field(default_factory=dict)
    # the gateway's notice engine (gateway/notices.py): endpoints and notices of customers
    notices: Any = None
    # Workflow on exceptions (resolvers.workflow.WorkflowSource, the gateway's service) and
    # this request's snapshot of it (resolvers.fetch.workflow_view), read once.
    workflow: Any = None
    workflow_view: Any = None
    # the gateway's order index (gateway/order_index.py): listings filtered or sorted on
    # derived values read it; None (or not yet usable) = read every order, as before
    index: Any = None
    # the gateway's queued orders per work centre (resolvers/queued.py), for a what-if's
    # pegged orders; None = read the work centre's production orders on every what-if
    queued: Any = None
    # whether the gateway freezes its heap (``[gateway] gc_freeze_seconds``): bulk work may
    # then freeze what it keeps until its answer is written (``gc.freeze()``)
    freeze_gc: bool = False

    def release(self) -> None:
        """Let go of what this request assembled (its views, predictions, customers and the
        loaders' records), once its answer is written. graphql-core's executor keeps the
        context in a reference cycle (the executor and its resolve-info helpers), so without
        this a request's records would wait for the cyclic collector; the gateway freezes
        the heap every few seconds (``gateway/app.py``), and a request in flight at a freeze
        (a what-if over a work centre's whole queue takes seconds) would keep every view it
        assembled for minutes."""
        self.views = {}
        self.ready = {}
        self.predictions = {}
        self.ready_customers = {}
        self.workflow_view = None
        self.deps = set()
        self.loaders.release()

    @property
    def now(self) -> dt.datetime:
        """The request's "now"; reading it marks the answer as moving with the clock."""
        self.clock_read = True
        return self.instant

    @now.setter
    def now(self, value: dt.datetime) -> None:
        self.instant = value

    def clock_bound(self, until: dt.datetime | None) -> None:
        """Record that a value of this answer, computed at ``instant``, holds until ``until``
        (exclusive) whatever else happens with the clock; None = it holds for good."""
        if until is not None and (self.valid_until is None or until < self.valid_until):
            self.valid_until = until

    def check_key(self, field: str, value: str, argument: str) -> str:
        """``value`` when it can be a ``field`` key of the sources (``sources/keys.py``), else
        BAD_USER_INPUT: a key travels in comma-separated batch filters, so ``A,B`` as one
        customer number would read two customers' orders."""
        problem = self.sources.key_formats.problem(field, value)
        if problem is not None:
            raise GraphQLError(f"`{argument}`: {problem}.", extensions={"code": "BAD_USER_INPUT"})
        return value

    @classmethod
    def create(cls, sources: Sources, cache: Cache, now: dt.datetime, **kwargs: Any) -> Context:
        """A context whose loaders are scoped to ``viewer`` (see resolvers.policy)."""
        viewer = kwargs.pop("viewer", None) or Viewer.system()
        if kwargs.get("cursors") is None:
            kwargs.pop("cursors", None)
        loaders = scope_loaders(Loaders(sources, cache), viewer)
        return cls(sources=sources, cache=cache, loaders=loaders, instant=now, viewer=viewer, **kwargs)
