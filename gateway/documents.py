"""The document stage: is this document one we will run, for this viewer, at this cost?

``GuardedDocuments``, cached per query text and role; a new document is
parsed and checked in one worker thread, within its viewer's document budget):
- persisted operations: with ``persisted_only`` a document must be on the safelist (the
  sha256 of its text, Apollo's ``extensions.persistedQuery.sha256Hash`` format; the demo's
  examples are always on it); a hash alone is resolved from the safelist;
- tokens (graphql-core ``parse(max_tokens=...)``);
- the document's shape, in one linear walk before any validation rule (``gateway/shape.py``):
  fields, fields per selection set, aliases, repeated fields (the overlapping-fields rule's
  comparisons), fragments; documents that differ only in whitespace, comments or alias
  names share one validation;
- validation, with depth and cost, each with a clear error and its own ``extensions.code``;
  introspection fields do not count;
- the policy rule of ``resolvers.policy`` for the viewer's role (internal fields, root
  fields by role, introspection by role).

Cost: each selected field costs 1; a field with a ``first`` argument multiplies the cost of
its selection by ``first`` (capped by ``max_first``; a variable counts with the request's
value, else its default, else ``max_first``), and the lists directly under it (``nodes``,
``edges``, ``entries``) are that page; any other list multiplies by ``list_size``. It is
computed per request (fragments memoised, so it stays linear in the document).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import gc
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cachetools import LRUCache
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    VariableNode,
    get_named_type,
    is_composite_type,
    parse,
    specified_rules,
    validate,
)

from resolvers import policy
from resolvers.policy import Viewer
from sources import tracing

from .admission import rate_key
from .config import LimitsConfig
from .errors import RequestError, coded
from .shape import Shape, measure_shape

log = logging.getLogger("ordergraph.documents")

# --- the CPU a document costs, without the garbage collector's share ---------------------
# A collection runs in whichever thread happens to allocate at the time; with a large heap a
# full one takes a tenth of a second or more. That is the process's cost, not the document's:
# charged to the viewer whose document was being checked, it would spend their budget at
# random (a 429 for a document that took two milliseconds).

_gc_time = threading.local()


def _on_gc(phase: str, _info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_time.started = time.thread_time()
    elif (started := getattr(_gc_time, "started", None)) is not None:
        _gc_time.total = getattr(_gc_time, "total", 0.0) + time.thread_time() - started
        _gc_time.started = None


# The callback is there only while some thread measures: every young collection calls it
# twice, each time reading the thread's CPU clock (a system call), and young collections
# run every few hundred allocations (3 % of a cold request's CPU when always there).
_measuring = 0
_measuring_lock = threading.Lock()


def cpu_without_gc(fn: Any, *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and the CPU seconds this thread spent on it, less garbage collections."""
    global _measuring
    with _measuring_lock:
        if _measuring == 0:
            gc.callbacks.append(_on_gc)
        _measuring += 1
    try:
        _gc_time.started = None  # a collection's start seen before, its end not: not ours
        gc_before = getattr(_gc_time, "total", 0.0)
        started = time.thread_time()
        result = fn(*args)
        spent = time.thread_time() - started - (getattr(_gc_time, "total", 0.0) - gc_before)
    finally:
        with _measuring_lock:
            _measuring -= 1
            if _measuring == 0:
                gc.callbacks.remove(_on_gc)
    return result, max(spent, 0.0)


def _limit_error(message: str, code: str, node: Any = None) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": code})


# --- persisted operations ----------------------------------------------------------------


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Safelist:
    """Persisted operations by sha256 of their text: the examples plus a manifest file."""

    def __init__(self, documents: Iterable[str] = ()) -> None:
        self.by_hash: dict[str, str] = {}
        for doc in documents:
            self.add(doc)

    def add(self, document: str) -> str:
        digest = sha256(document)
        self.by_hash[digest] = document
        return digest

    def __contains__(self, digest: str) -> bool:
        return digest in self.by_hash

    def __len__(self) -> int:
        return len(self.by_hash)

    @classmethod
    def load(cls, manifest: str | Path | None) -> Safelist:
        """The examples, plus an Apollo persisted-query manifest or a ``{hash: query}`` file."""
        from .examples import EXAMPLES

        safelist = cls(query for query, _vars in EXAMPLES.values())
        if manifest:
            data = json.loads(Path(manifest).read_text())
            if isinstance(data, dict) and isinstance(data.get("operations"), list):
                bodies = [op["body"] for op in data["operations"] if isinstance(op, dict) and isinstance(op.get("body"), str)]
            elif isinstance(data, dict):
                bodies = [v for v in data.values() if isinstance(v, str)]
            else:
                raise ValueError(f"{manifest}: not a persisted-query manifest")
            for body in bodies:
                safelist.add(body)
        return safelist


def persisted_hash(params: dict[str, Any]) -> str | None:
    """``extensions.persistedQuery.sha256Hash`` of a request, if any."""
    ext = params.get("extensions")
    pq = ext.get("persistedQuery") if isinstance(ext, dict) else None
    if not isinstance(pq, dict):
        return None
    digest = pq.get("sha256Hash")
    if not isinstance(digest, str) or not digest:
        raise RequestError(400, "`extensions.persistedQuery.sha256Hash` must be a hex string.")
    return digest.lower()


# --- measuring a document: depth, aliases, cost --------------------------------------------


@dataclasses.dataclass(slots=True)
class Measure:
    depth: int = 0
    cost: int = 0


class _Measurer:
    """Depth and cost of an operation, fragments memoised (no exponential blow-up)."""

    def __init__(self, schema: GraphQLSchema, doc: DocumentNode, variables: dict[str, Any], list_size: int, max_first: int):
        self.schema = schema
        self.fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
        self.variables = variables
        self.list_size = list_size
        self.max_first = max_first
        self.memo: dict[tuple[str, bool], Measure] = {}
        self.visiting: set[str] = set()

    def selection_set(self, sel_set: SelectionSetNode | None, parent: Any, in_page: bool) -> Measure:
        out = Measure()
        if sel_set is None:
            return out
        for sel in sel_set.selections:
            if isinstance(sel, FieldNode):
                m = self.field(sel, parent, in_page)
                out.cost += m.cost
                out.depth = max(out.depth, m.depth)
            elif isinstance(sel, InlineFragmentNode):
                t = self.schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                m = self.selection_set(sel.selection_set, t or parent, in_page)
                out.cost += m.cost
                out.depth = max(out.depth, m.depth)
            elif isinstance(sel, FragmentSpreadNode):
                m = self.fragment(sel.name.value, in_page)
                out.cost += m.cost
                out.depth = max(out.depth, m.depth)
        return out

    def fragment(self, name: str, in_page: bool) -> Measure:
        key = (name, in_page)
        if key in self.memo:
            return self.memo[key]
        frag = self.fragments.get(name)
        if frag is None or name in self.visiting:  # unknown or cyclic: validation reports it
            return Measure()
        self.visiting.add(name)
        try:
            t = self.schema.get_type(frag.type_condition.name.value)
            m = self.selection_set(frag.selection_set, t, in_page)
        finally:
            self.visiting.discard(name)
        self.memo[key] = m
        return m

    def field(self, node: FieldNode, parent: Any, in_page: bool) -> Measure:
        name = node.name.value
        if name.startswith("__"):  # introspection is gated by role, not measured
            return Measure()
        fields = getattr(parent, "fields", None)
        field_def = fields.get(name) if fields else None
        if field_def is None:
            return Measure(depth=1, cost=1)
        named = get_named_type(field_def.type)
        multiplier = 1
        child_in_page = False
        if "first" in field_def.args:
            multiplier = self.first(node, field_def.args["first"])
            child_in_page = True
        elif _is_list(field_def.type):
            multiplier = 1 if in_page else self.list_size
        sub = self.selection_set(node.selection_set, named, child_in_page) if is_composite_type(named) else Measure()
        return Measure(depth=1 + sub.depth, cost=1 + multiplier * sub.cost)

    def first(self, node: FieldNode, arg_def: Any) -> int:
        value: Any = None
        for arg in node.arguments or ():
            if arg.name.value != "first":
                continue
            if isinstance(arg.value, IntValueNode):
                value = int(arg.value.value)
            elif isinstance(arg.value, VariableNode):
                value = self.variables.get(arg.value.name.value, self.max_first)
            break
        else:
            value = arg_def.default_value if isinstance(arg_def.default_value, int) else self.max_first
        if not isinstance(value, int):
            value = self.max_first
        return max(0, min(value, self.max_first))


def _is_list(t: Any) -> bool:
    if isinstance(t, GraphQLNonNull):
        t = t.of_type
    return isinstance(t, GraphQLList)


def _variable_defaults(op: OperationDefinitionNode) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var in op.variable_definitions or ():
        if isinstance(var.default_value, IntValueNode):
            out[var.variable.name.value] = int(var.default_value.value)
    return out


def measure(
    schema: GraphQLSchema,
    doc: DocumentNode,
    op: OperationDefinitionNode,
    *,
    list_size: int,
    max_first: int,
    variables: dict[str, Any] | None = None,
) -> Measure:
    """Depth and cost of one operation of ``doc`` (with the request's ``variables``)."""
    root = {"query": schema.query_type, "subscription": schema.subscription_type, "mutation": schema.mutation_type}[
        op.operation.value
    ]
    values = {**_variable_defaults(op), **{k: v for k, v in (variables or {}).items() if isinstance(v, int)}}
    return _Measurer(schema, doc, values, list_size, max_first).selection_set(op.selection_set, root, False)


def cost_error(m: Measure, limits: LimitsConfig, op: OperationDefinitionNode) -> GraphQLError | None:
    if m.cost <= limits.max_cost:
        return None
    name = f"Operation {op.name.value!r}" if op.name else "The operation"
    return _limit_error(
        f"{name} costs {m.cost}; at most {limits.max_cost}. Ask for smaller pages (`first`) "
        f"or fewer nested lists (each list counts {limits.list_size} items unless paged).",
        "QUERY_TOO_COSTLY",
        op,
    )


def limits_rule(limits: LimitsConfig, max_first: int) -> type[ValidationRule]:
    """A validation rule for depth (aliases and the document's shape are checked before
    validation: ``shape_errors``; cost needs the variables: ``GuardedDocuments``)."""

    class LimitsRule(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
            m = measure(self.context.schema, self.context.document, node, list_size=limits.list_size, max_first=max_first)
            name = f"Operation {node.name.value!r}" if node.name else "The operation"
            if m.depth > limits.max_depth:
                self.report_error(
                    _limit_error(f"{name} is {m.depth} levels deep; at most {limits.max_depth}.", "QUERY_TOO_DEEP", node)
                )

    return LimitsRule


def shape_errors(shape: Shape, limits: LimitsConfig) -> list[GraphQLError]:
    """The limits a document's shape breaks (checked on the parsed document, before any
    validation rule runs: each is cheap to check, and each bounds validation's work)."""
    errors = []
    if shape.fields > limits.max_fields:
        errors.append(
            _limit_error(f"The document selects {shape.fields} fields; at most {limits.max_fields}.", "TOO_MANY_FIELDS")
        )
    if shape.width > limits.max_selections:
        errors.append(
            _limit_error(
                f"`{shape.width_at}` asks for {shape.width} fields in one selection set (fragments included); "
                f"at most {limits.max_selections}.",
                "TOO_MANY_SELECTIONS",
            )
        )
    if shape.aliases > limits.max_aliases:
        errors.append(_limit_error(f"Too many aliases: at most {limits.max_aliases} per document.", "TOO_MANY_ALIASES"))
    if shape.merge_checks > limits.max_merge_checks:
        errors.append(
            _limit_error(
                f"`{shape.repeated}` is selected {shape.repeats} times in one selection set (fragments included): "
                f"checking that the repeated fields merge would take {shape.merge_checks} comparisons; at most "
                f"{limits.max_merge_checks}. Select each field once per selection set.",
                "QUERY_TOO_REPETITIVE",
            )
        )
    if shape.fragments > limits.max_fragments:
        errors.append(
            _limit_error(f"The document defines {shape.fragments} fragments; at most {limits.max_fragments}.", "TOO_MANY_FRAGMENTS")
        )
    return errors



class DocumentCache:
    """Parsed and validated documents by query text, so hot queries skip both steps
    (the plain stage; the gateway's is ``GuardedDocuments``)."""

    def __init__(self, schema: GraphQLSchema, maxsize: int = 1024) -> None:
        self.schema = schema
        self._docs: LRUCache[str, tuple[DocumentNode | None, list[GraphQLError]]] = LRUCache(maxsize)

    def resolve_persisted(self, params: dict[str, Any]) -> dict[str, Any]:
        """Fill in a persisted operation's query (``GuardedDocuments``)."""
        return params

    def close(self) -> None:
        """Release what the cache holds beyond memory (``GuardedDocuments``: its worker)."""

    @property
    def max_tokens(self) -> int | None:
        """The token limit of a parse (``GuardedDocuments``: the configured one)."""
        return None

    async def get(self, query: str, viewer: Any = None, variables: Any = None) -> tuple[DocumentNode | None, list[GraphQLError]]:
        """The parsed, validated document (``viewer`` matters in ``GuardedDocuments``)."""
        hit = self._docs.get(query)
        if hit is not None:
            return hit
        try:
            parsed: DocumentNode | None = parse(query)
        except GraphQLError as exc:
            entry: tuple[DocumentNode | None, list[GraphQLError]] = (None, [exc])
        else:
            errors = validate(self.schema, parsed)
            entry = (parsed if not errors else None, list(errors))
        self._docs[query] = entry
        return entry


class DocumentBudget:
    """Seconds of document work per viewer: a token bucket of ``rate`` seconds a second,
    up to ``burst``. A viewer may start new work while its bucket is positive; the work's
    measured CPU time is then taken, so one document can overdraw it once."""

    def __init__(self, rate: float, burst: float, *, clock: Any = time.monotonic, maxsize: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(burst, 0.0)
        self.clock = clock
        self.buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize)
        self.refused = 0

    def _level(self, key: str) -> tuple[float, float]:
        now = self.clock()
        level, last = self.buckets.get(key, (self.burst, now))
        return min(self.burst, level + (now - last) * self.rate), now

    def wait(self, key: str) -> float | None:
        """None when ``key`` may start new document work, else the seconds until it may."""
        if self.rate <= 0:
            return None
        level, _ = self._level(key)
        if level > 0:
            return None
        self.refused += 1
        return -level / self.rate + 0.001

    def charge(self, key: str, seconds: float) -> None:
        """Take ``seconds`` of work from ``key``'s bucket."""
        if self.rate <= 0:
            return
        level, now = self._level(key)
        self.buckets[key] = (level - seconds, now)


class GuardedDocuments(DocumentCache):
    """Parsed and validated documents with limits, persisted operations and policy.

    A document seen before (same text, same role) is answered from memory on the event
    loop. A new one is parsed, measured (``shape_errors``) and validated in one worker
    thread, charged to its viewer's ``DocumentBudget``: with every step bounded by the
    limits and the worker's share of the CPU bounded by the budgets, no viewer can hold
    the event loop (the worker yields the interpreter to the loop every few milliseconds).
    Documents that differ only in whitespace, comments or alias names share one
    validation (``Shape.key``).
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        limits: LimitsConfig,
        *,
        max_first: int,
        safelist: Safelist,
        introspection_roles: Iterable[str],
        maxsize: int = 1024,
        max_waiting: int = 64,
    ) -> None:
        super().__init__(schema, maxsize)
        self.limits = limits
        self.safelist = safelist
        self.introspection_roles = frozenset(introspection_roles)
        self.exempt_roles = frozenset(limits.persisted_exempt_roles)
        self.max_first = max_first
        self.budget = DocumentBudget(limits.document_seconds_per_second, limits.document_seconds_burst)
        self.max_waiting = max_waiting  # new documents queued for the worker at once
        self._rules = [*specified_rules, limits_rule(limits, max_first)]
        # On the event loop: answers by (text, role); refused documents apart, so a stream
        # of junk cannot push the documents in use out of the cache.
        self._checked: LRUCache[tuple[str, str], tuple[DocumentNode | None, list[GraphQLError]]] = LRUCache(maxsize * 4)
        self._refused: LRUCache[tuple[str, str], tuple[DocumentNode | None, list[GraphQLError]]] = LRUCache(256)
        self._costs: LRUCache[tuple[str, tuple[tuple[str, int], ...]], list[GraphQLError]] = LRUCache(maxsize * 4)
        self._pending: dict[tuple[str, str], asyncio.Future[tuple[DocumentNode | None, list[GraphQLError]]]] = {}
        # In the worker thread only: parses by text, and the verdicts of valid documents by
        # normal form (and role, for the policy rule).
        self._parsed: LRUCache[str, tuple[DocumentNode | None, list[GraphQLError], str]] = LRUCache(maxsize)
        self._valid: LRUCache[tuple[str, str], bool] = LRUCache(maxsize * 4)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._viewer_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.worker_seconds = 0.0  # CPU the worker spent on new documents
        self.validations = 0  # documents graphql-core validated (the rest: cache or refused first)
        self._policy_rules = {
            role: policy.validation_rule(Viewer(role, customer="-" if role is policy.Role.CUSTOMER else None), introspection=role.value in self.introspection_roles)
            for role in policy.Role
        }

    @property
    def max_tokens(self) -> int | None:
        return self.limits.max_tokens

    def close(self) -> None:
        """Stop the worker thread (the gateway's shutdown)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def resolve_persisted(self, params: dict[str, Any]) -> dict[str, Any]:
        """Fill in the query of a hash-only request; check a hash sent with its query."""
        digest = persisted_hash(params)
        if digest is None:
            return params
        query = params.get("query")
        if isinstance(query, str) and query:
            if sha256(query) != digest:
                raise RequestError(400, "provided sha256Hash does not match the query")
            return params
        known = self.safelist.by_hash.get(digest)
        if known is None:
            exc = RequestError(400, "PersistedQueryNotFound")
            exc.errors = [{"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]
            raise exc
        return {**params, "query": known}

    async def get(
        self, query: str, viewer: Viewer | None = None, variables: dict[str, Any] | None = None
    ) -> tuple[DocumentNode | None, list[GraphQLError]]:
        """The document of ``query`` for ``viewer`` and ``variables``, or the errors that
        refuse it; RequestError(429/503) when the viewer's document budget is spent or the
        worker is full."""
        viewer = viewer or Viewer.system()
        key = (query, viewer.policy_key)
        entry = self._checked.get(key) or self._refused.get(key)
        if entry is None:
            entry = await self._check_new(key, viewer)
        doc = entry[0]
        if doc is None:
            return entry
        variables = variables if isinstance(variables, dict) else {}
        # The cost depends on the document and its integer variables only (page sizes).
        cost_key = (query, tuple(sorted((k, v) for k, v in variables.items() if isinstance(v, int))))
        errors = self._costs.get(cost_key)
        if errors is None:
            errors = self._costs[cost_key] = self._cost_errors(doc, variables)
        return (doc, []) if not errors else (None, errors)

    async def _check_new(self, key: tuple[str, str], viewer: Viewer) -> tuple[DocumentNode | None, list[GraphQLError]]:
        pending = self._pending.get(key)
        if pending is not None:  # the same new document from several requests: one check
            return await asyncio.shield(pending)
        who = rate_key(viewer)
        if who is None:
            return await self._start_check(key, viewer, None)
        # One new document per viewer at a time, so the budget is charged before the next
        # one is admitted (concurrent requests would all find it unspent).
        lock, waiting = self._viewer_locks.get(who, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._viewer_locks[who] = (lock, waiting + 1)
        try:
            async with lock:
                entry = self._checked.get(key) or self._refused.get(key)  # checked meanwhile
                if entry is not None:
                    return entry
                if (wait := self.budget.wait(who)) is not None:
                    retry = max(1, math.ceil(wait))
                    raise coded(
                        RequestError(
                            429,
                            f"Document budget spent: new documents may take at most "
                            f"{self.limits.document_seconds_per_second:g} s of parsing and validation a second; "
                            f"retry in {retry} s, or reuse documents (they are cached).",
                            {"Retry-After": str(retry)},
                        ),
                        "DOCUMENT_BUDGET_EXCEEDED",
                    )
                return await self._start_check(key, viewer, who)
        finally:
            lock, waiting = self._viewer_locks[who]
            if waiting <= 1:
                del self._viewer_locks[who]
            else:
                self._viewer_locks[who] = (lock, waiting - 1)

    async def _start_check(
        self, key: tuple[str, str], viewer: Viewer, who: str | None
    ) -> tuple[DocumentNode | None, list[GraphQLError]]:
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        if len(self._pending) >= self.max_waiting:
            raise coded(RequestError(503, "Too many new documents at once; retry shortly.", {"Retry-After": "1"}), "BUSY")
        # A task of its own: a requester that goes away does not cancel the check others joined.
        task = asyncio.ensure_future(self._run_check(key, viewer.role, who))
        self._pending[key] = task
        return await asyncio.shield(task)

    async def _run_check(
        self, key: tuple[str, str], role: policy.Role, who: str | None
    ) -> tuple[DocumentNode | None, list[GraphQLError]]:
        try:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ordergraph-documents")
            loop = asyncio.get_running_loop()
            # The caller's trace context goes along, so parse and validate spans join its trace.
            traced = contextvars.copy_context().run if tracing.enabled() else _call
            entry, seconds = await loop.run_in_executor(self._executor, traced, self._timed_check, key[0], role)
            self.worker_seconds += seconds
            if who is not None:
                self.budget.charge(who, seconds)
            (self._checked if entry[0] is not None else self._refused)[key] = entry
            return entry
        finally:
            self._pending.pop(key, None)

    def _cost_errors(self, doc: DocumentNode, variables: dict[str, Any]) -> list[GraphQLError]:
        errors = []
        for op in doc.definitions:
            if isinstance(op, OperationDefinitionNode):
                m = measure(self.schema, doc, op, list_size=self.limits.list_size, max_first=self.max_first, variables=variables)
                if (err := cost_error(m, self.limits, op)) is not None:
                    errors.append(err)
        return errors

    # --- in the worker thread ------------------------------------------------------------

    def _timed_check(self, query: str, role: policy.Role) -> tuple[tuple[DocumentNode | None, list[GraphQLError]], float]:
        return cpu_without_gc(self._check, query, role)

    def _check(self, query: str, role: policy.Role) -> tuple[DocumentNode | None, list[GraphQLError]]:
        if self.limits.persisted_only and role.value not in self.exempt_roles and sha256(query) not in self.safelist:
            return None, [
                _limit_error(
                    "Only persisted operations are accepted here: send a safelisted document or its "
                    "`extensions.persistedQuery.sha256Hash`.",
                    "PERSISTED_QUERY_NOT_IN_LIST",
                )
            ]
        doc, errors, normal = self._parse_and_validate(query)
        if doc is None:
            return None, errors
        if (normal, role.value) in self._valid:
            return doc, []
        policy_errors = validate(self.schema, doc, [self._policy_rules[role]])
        if policy_errors:
            return None, list(policy_errors)
        self._valid[(normal, role.value)] = True
        return doc, []

    def _parse_and_validate(self, query: str) -> tuple[DocumentNode | None, list[GraphQLError], str]:
        hit = self._parsed.get(query)
        if hit is not None:
            return hit
        entry: tuple[DocumentNode | None, list[GraphQLError], str]
        try:
            with tracing.span("graphql.parse"):
                doc = parse(query, max_tokens=self.limits.max_tokens)
        except GraphQLError as exc:
            if "tokens" in exc.message:
                exc = _limit_error(f"{exc.message} (at most {self.limits.max_tokens} tokens)", "TOO_MANY_TOKENS")
            entry = (None, [exc], "")
        else:
            shape = measure_shape(doc)
            errors = shape_errors(shape, self.limits)
            if not errors and (shape.key, "") not in self._valid:
                self.validations += 1
                try:
                    with tracing.span("graphql.validate"):
                        errors = list(validate(self.schema, doc, self._rules))
                except RecursionError:
                    errors = [_limit_error("The document is nested too deeply to validate.", "QUERY_TOO_DEEP")]
                if not errors:
                    # Only a passing verdict is shared by the normal form: an error's
                    # locations and names belong to the text it was found in.
                    self._valid[(shape.key, "")] = True
            entry = (doc if not errors else None, errors, shape.key)
        self._parsed[query] = entry
        return entry


def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


# --- the operation in the document -----------------------------------------------------------


def check_params(params: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """``(query, variables, operationName)`` of a request's parameters, or RequestError(400)."""
    query = params.get("query")
    if not isinstance(query, str) or not query.strip():
        raise RequestError(400, "Missing `query`: send a GraphQL document as a string.")
    variables = params.get("variables") or {}
    if not isinstance(variables, dict):
        raise RequestError(400, "`variables` must be a JSON object.")
    op_name = params.get("operationName")
    if op_name is not None and not isinstance(op_name, str):
        raise RequestError(400, "`operationName` must be a string.")
    return query, variables, op_name


def select_operation(doc: DocumentNode, name: str | None) -> OperationDefinitionNode:
    """The operation of ``doc`` to run, or RequestError(400)."""
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        for op in ops:
            if op.name and op.name.value == name:
                return op
        raise RequestError(400, f"Unknown operation named {name!r}.")
    if len(ops) != 1:
        raise RequestError(400, "Must provide operationName when the document has several operations.")
    return ops[0]


def check_declared(op: OperationDefinitionNode, variables: dict[str, Any]) -> None:
    """RequestError(400) for variables ``op`` does not declare: kept with a subscription for
    its whole life, padding there pinned memory for nothing."""
    declared = {v.variable.name.value for v in op.variable_definitions or ()}
    extra = sorted(k for k in variables if k not in declared)
    if extra:
        names = ", ".join(f"${k}" for k in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise coded(
            RequestError(400, f"The operation does not declare {names}: send only the variables it declares."),
            "UNDECLARED_VARIABLES",
        )
