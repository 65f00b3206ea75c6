"""The fast executor: graphql-core's executor with the fields that make up most of a page,
leaves, taken in one step; behind ``[gateway] executor`` ("fast", the default, or
"standard": graphql-core's executor over strawberry's own resolvers).

A 50-order dashboard page resolves ~900 fields, most of them scalars and enums read
straight off a record (``id``, ``confirmedDeliveryDate``, ``status``). For each,
graphql-core builds a resolve-info object, looks at the arguments, checks for an
awaitable and dispatches ``complete_value`` — more work than the read itself.
``FastExecutor`` resolves such a field with one plain call and the type's output
coercion. It takes only fields that are known, at schema build, to be synchronous leaf
reads without arguments (a resolver that takes ``info`` gets one that carries only
``context``, all this project's field resolvers read); anything else, any ``None`` (for
the null checks), any error (an ``info`` attribute missing from the shim included), and
every request with middleware (customer viewers) goes through graphql-core's own path,
which then reports exactly as before. ``enable_fast_path`` also calls argument-less
resolver methods directly instead of through strawberry's per-field wrapper.

Both lean on graphql-core's ``Executor`` internals and on how strawberry wraps resolvers,
so they are pinned (``PINS``, the same as ``pyproject.toml``): with other versions
installed, ``fast_path_mismatch`` says so and the gateway runs the standard path. What the
fast path found is kept on the schema it was built for (``schema.extensions[FAST_PATH]``),
so each schema carries its own; ``tests/test_execution.py`` proves both paths answer alike.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import operator
import types
from collections.abc import Callable
from importlib import metadata
from typing import Any

import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLID,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    Undefined,
)
from graphql import execute as graphql_execute
from graphql.execution.executor import Executor
from graphql.pyutils import Path, gather_with_cancel
from strawberry.types.field import StrawberryField
from strawberry.types.info import Info

# The versions the fast path was tested with; pyproject.toml pins the same (a test checks).
PINS = {"graphql-core": "==3.3.2", "strawberry-graphql": ">=0.341.2,<0.342"}
EXECUTORS = ("fast", "standard")
FAST_PATH = "ordergraph.fast_path"  # the key of a schema's FastPath in its extensions

# A getter is called as getter(source, shim): shim is the request's ContextOnly (made once
# per request), what a resolver that takes ``info`` gets.
# (type name, field name) -> (getter(source, shim), leaf type, nullable)
LeafReads = dict[tuple[str, str], tuple[Callable[[Any, Any], Any], GraphQLLeafType, bool]]
# (type name, field name) -> (getter(source, shim), object type, declared type)
ObjectReads = dict[tuple[str, str], tuple[Callable[[Any, Any], Any], GraphQLObjectType, Any]]
_NOT_FAST = object()


@dataclasses.dataclass(frozen=True, slots=True)
class FastPath:
    """What ``FastExecutor`` may take on one schema: its plain leaf and object reads."""

    leaves: LeafReads
    objects: ObjectReads
    # (type name, field name) -> getter(source, shim): every argument-less synchronous
    # read, whatever it returns; the compiled plans (``Plan``) look here.
    reads: dict[tuple[str, str], Callable[[Any, Any], Any]] = dataclasses.field(default_factory=dict)


class ContextOnly:
    """What a fast leaf resolver gets as ``info``: the request's context, nothing else."""

    __slots__ = ("context",)

    def __init__(self, context: Any) -> None:
        self.context = context


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _satisfies(installed: str, spec: str) -> bool:
    have = _version(installed)
    for clause in spec.split(","):
        op = clause[:2] if clause[:2] in ("==", ">=", "<=") else clause[:1]
        want = _version(clause[len(op) :])
        if not {"==": have == want, ">=": have >= want, "<=": have <= want, "<": have < want, ">": have > want}[op]:
            return False
    return True


def fast_path_mismatch() -> str | None:
    """None when the installed graphql-core and strawberry are the ones the fast path was
    tested with (``PINS``); else what differs, in one line."""
    wrong = []
    for package, spec in PINS.items():
        try:
            installed = metadata.version(package)
        except metadata.PackageNotFoundError:
            installed = "none"
        if installed == "none" or not _satisfies(installed, spec):
            wrong.append(f"{package} {installed} (tested: {spec})")
    return "; ".join(wrong) or None


def enable_fast_path(built: strawberry.Schema) -> int:
    """Make ``built`` run on the fast path: its argument-less resolver methods called
    directly, its plain reads found for ``FastExecutor`` and kept on the schema. Returns
    how many fields the fast path takes."""
    direct_resolvers(built)
    return register_leaf_reads(built._schema)


def uses_fast_path(schema: GraphQLSchema) -> bool:
    """True when ``schema`` was built for the fast executor."""
    return FAST_PATH in schema.extensions


def execute(schema: GraphQLSchema, document: Any, **kwargs: Any) -> Any:
    """graphql-core's ``execute`` with the executor ``schema`` was built for: the one call
    every path (HTTP, SSE, WebSocket, subscription fan-out) executes through."""
    if FAST_PATH in schema.extensions:
        return graphql_execute(schema, document, executor_class=FastExecutor, is_awaitable=is_awaitable, **kwargs)
    return graphql_execute(schema, document, **kwargs)


def register_leaf_reads(schema: GraphQLSchema) -> int:
    """Find the fields ``FastExecutor`` may take; returns how many."""
    reads: LeafReads = {}
    objects: ObjectReads = {}
    getters: dict[tuple[str, str], Callable[[Any, Any], Any]] = {}
    for t in schema.type_map.values():
        if not isinstance(t, GraphQLObjectType) or t.name.startswith("__"):
            continue
        for name, gfield in t.fields.items():
            if gfield.args:
                continue
            plain = _plain_getter(gfield)
            if plain is not None:
                getters[(t.name, name)] = plain
            named = gfield.type.of_type if isinstance(gfield.type, GraphQLNonNull) else gfield.type
            if isinstance(named, GraphQLLeafType):
                getter = _plain_getter(gfield)
                if getter is not None:
                    reads[(t.name, name)] = (getter, named, not isinstance(gfield.type, GraphQLNonNull))
            elif isinstance(named, GraphQLObjectType) and named.is_type_of is None:
                getter = _plain_getter(gfield)
                if getter is not None:
                    objects[(t.name, name)] = (getter, named, gfield.type)
    schema.extensions[FAST_PATH] = FastPath(reads, objects, getters)
    return len(reads) + len(objects)


def plain_method(field: StrawberryField) -> tuple[Callable[..., Any], str | None] | None:
    """``(function, name of its info parameter or None)`` when ``field`` is a resolver
    method that strawberry's per-field wrapper adds nothing to: no arguments to convert,
    no field extensions or permissions, only ``self`` and perhaps ``info``."""
    resolver = field.base_resolver
    if resolver is None or field.extensions or field.arguments or field.is_subscription:
        return None
    if resolver.root_parameter is not None or resolver.self_parameter is None:
        return None
    reserved = {p.name for p in resolver.reserved_parameters.values() if p is not None}
    if set(resolver.signature.parameters) - reserved:
        return None
    info = resolver.info_parameter
    return resolver.wrapped_func, (info.name if info is not None else None)


def _direct(field: StrawberryField) -> Callable[[Any, GraphQLResolveInfo], Any] | None:
    """A plain call of ``field``'s resolver method, when strawberry's wrapper adds nothing."""
    method = plain_method(field)
    if method is None:
        return None
    fn, info_name = method
    if info_name is None:
        return lambda source, _info: fn(source)
    return lambda source, info: fn(source, **{info_name: Info(_raw_info=info, _field=field)})


def direct_resolvers(built: strawberry.Schema) -> int:
    """Call argument-less resolver methods directly instead of through strawberry's
    per-field wrapper (argument conversion, extension chain, ``Info`` for fields that do
    not take one): about 15 % of a page's CPU, for the same answers. Returns how many."""
    count = 0
    for t in built._schema.type_map.values():
        if not isinstance(t, GraphQLObjectType) or t.name.startswith("__"):
            continue
        for gfield in t.fields.values():
            definition = (gfield.extensions or {}).get("strawberry-definition")
            if isinstance(definition, StrawberryField) and (fast := _direct(definition)) is not None:
                gfield.resolve = fast
                count += 1
    return count


def _plain_getter(gfield: Any) -> Callable[[Any, Any], Any] | None:
    definition = (gfield.extensions or {}).get("strawberry-definition")
    if not isinstance(definition, StrawberryField) or definition.extensions or definition.arguments:
        return None
    if definition.base_resolver is None:  # a plain attribute
        attr = operator.attrgetter(definition.python_name)
        return _one_argument(lambda source, _shim: attr(source), attr)
    method = plain_method(definition)
    if method is None:
        return None
    fn, info_name = method
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return None
    if info_name is None:
        return _one_argument(lambda source, _shim: fn(source), fn)
    parameters = list(inspect.signature(fn).parameters.values())
    if len(parameters) == 2 and parameters[1].name == info_name and parameters[1].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
        return fn  # called as fn(source, shim): no wrapper at all
    return lambda source, shim: fn(source, **{info_name: shim})


# A getter that ignores its ``shim`` carries the one-argument call it wraps here: the flat
# loop of ``_plan_object_list`` calls that directly (one frame less per item and field).
_ONE_ARGUMENT = "_ordergraph_one_argument"


def _one_argument(getter: Callable[[Any, Any], Any], read: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    setattr(getter, _ONE_ARGUMENT, read)
    return getter


_AWAITABLE: dict[type, bool] = {}

# ``Path(prev, key, typename)`` without the NamedTuple's Python ``__new__``: the same Path,
# one frame less for each object and list item of an answer (~600 a dashboard page).
_new_path = tuple.__new__


def is_awaitable(value: Any) -> bool:
    """graphql-core's question, answered once per class (this project returns no
    generator-based coroutines)."""
    cls = value.__class__
    known = _AWAITABLE.get(cls)
    if known is None:
        known = _AWAITABLE[cls] = cls is types.CoroutineType or hasattr(cls, "__await__")
    return known


# --- plans compiled per selection --------------------------------------------------------
#
# A plan is what ``FastExecutor`` does for one grouped selection set of one object type:
# one entry per response name, ``(kind, response name, getter, a, b)``. It depends only on
# the schema and the document's field nodes (fields with arguments are left to
# graphql-core), so it is compiled once and kept across requests, keyed by the type and
# the identity of the field nodes (the plan holds them, so an id is not reused while the
# plan lives). Documents come from the gateway's document cache: the same nodes every time.

_LEAF, _TYPENAME, _OBJECT, _OBJECT_LIST, _LEAF_LIST, _GRAPHQL = range(6)
Plan = tuple[tuple[int, str, Any, Any, Any], ...]
_PLANS: dict[tuple[Any, ...], tuple[Plan, Any]] = {}
_PLANS_MAX = 4096


def plan_for(schema: GraphQLSchema, parent_type: GraphQLObjectType, grouped: Any) -> Plan:
    """The compiled plan of ``grouped`` (graphql-core's grouped field set) on ``parent_type``."""
    nodes = tuple(tuple(fd.node for fd in fdl) for fdl in grouped.values())
    key = (parent_type, tuple(grouped), tuple(id(n) for group in nodes for n in group))
    known = _PLANS.get(key)
    if known is not None:
        return known[0]
    plan = compile_plan(schema, parent_type, grouped)
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[key] = (plan, nodes)
    return plan


def compile_plan(schema: GraphQLSchema, parent_type: GraphQLObjectType, grouped: Any) -> Plan:
    """One entry per response name of ``grouped``: how to read and complete it."""
    reads = schema.extensions[FAST_PATH].reads
    plan = []
    for response_name, fdl in grouped.items():
        node = fdl[0].node
        name = node.name.value
        entry: tuple[int, str, Any, Any, Any] = (_GRAPHQL, response_name, None, None, None)
        gfield = parent_type.fields.get(name)
        if name == "__typename":
            entry = (_TYPENAME, response_name, None, parent_type.name, None)
        elif gfield is not None and not node.arguments and (getter := reads.get((parent_type.name, name))) is not None:
            entry = _entry(response_name, getter, gfield.type)
        plan.append(entry)
    return tuple(plan)


def _entry(response_name: str, getter: Any, declared: Any) -> tuple[int, str, Any, Any, Any]:
    nullable = not isinstance(declared, GraphQLNonNull)
    named = declared if nullable else declared.of_type
    if isinstance(named, GraphQLLeafType):
        return (_LEAF, response_name, getter, serializer(named), nullable)
    if isinstance(named, GraphQLObjectType) and named.is_type_of is None:
        return (_OBJECT, response_name, getter, named, declared)
    if isinstance(named, GraphQLList):
        item_declared = named.of_type
        item_nullable = not isinstance(item_declared, GraphQLNonNull)
        item = item_declared if item_nullable else item_declared.of_type
        if isinstance(item, GraphQLLeafType):
            return (_LEAF_LIST, response_name, getter, serializer(item), (nullable, item_nullable))
        if isinstance(item, GraphQLObjectType) and item.is_type_of is None:
            return (_OBJECT_LIST, response_name, getter, (item, item_nullable, item_declared), declared)
    return (_GRAPHQL, response_name, None, None, None)


def serializer(leaf: GraphQLLeafType) -> Callable[[Any], Any]:
    """``leaf.coerce_output_value``, with the common cases answered by a lookup: a Python
    enum member by a table built from the type's own values, a ``str`` for String and ID
    as itself (graphql-core returns it unchanged)."""
    coerce = leaf.coerce_output_value
    wrapped = getattr(leaf, "wrapped_cls", None)
    if isinstance(leaf, GraphQLEnumType) and isinstance(wrapped, type):
        names: dict[Any, str] = {}
        for member in wrapped:  # the first name whose value equals, as the type's own loop
            for name, value in leaf.values.items():
                if member.value == value.value:
                    names.setdefault(member, name)
                    break
        # By the member's own name: one member per name in its class (an alias is the same
        # member), and no Python-level Enum.__hash__ per value (five a dashboard row).
        get = {member._name_: name for member, name in names.items()}.get

        def enum_name(value: Any) -> Any:
            if value.__class__ is wrapped:
                out = get(value._name_)
                if out is not None:
                    return out
            return coerce(value)

        return enum_name
    if leaf.name in ("String", GraphQLID.name):
        return _passes_str(lambda value: value if value.__class__ is str else coerce(value))
    return coerce


_PASSES_STR = "_ordergraph_passes_str"  # a serializer that returns a str unchanged


def _passes_str(serialize: Callable[[Any], Any]) -> Callable[[Any], Any]:
    setattr(serialize, _PASSES_STR, True)
    return serialize


def _leaf_list(getter: Any, serialize: Any, nullability: tuple[bool, bool], source: Any, context: Any) -> Any:
    """A plain list of leaves, or ``_NOT_FAST`` for graphql-core to report whatever is off."""
    nullable, items_nullable = nullability
    try:
        values = getter(source, context)
        if values is None:
            return None if nullable else _NOT_FAST
        if values.__class__ is not list and values.__class__ is not tuple:
            if values.__class__ is types.CoroutineType:
                values.close()
            return _NOT_FAST
        out = []
        for value in values:
            if value is None:
                if not items_nullable:
                    return _NOT_FAST
                out.append(None)
                continue
            done = serialize(value)
            if done is None or done is Undefined:
                return _NOT_FAST
            out.append(done)
        return out
    except Exception:
        return _NOT_FAST


class KeptItems(tuple):  # type: ignore[type-arg]
    """A list field's items, kept by its resolver and returned again while they stand: a
    promise to ``FastExecutor`` that these objects never change and that each of their
    fields read without ``info`` (a one-argument read) answers from the object alone.

    The executor then keeps, with the tuple itself, the completed items of a selection
    whose fields are all such reads (or ``__typename``) and completed without a null or
    an error, and answers the next request with the same selection over the same tuple
    from them: a new list of the same completed items (dicts that nobody changes: an
    answer is serialized as it is). graphql-core's own path reads it as any tuple."""

    # No __slots__: an instance has a __dict__, the completed selections by flat plan.


_KEPT_SELECTIONS = 8  # completed selections kept per KeptItems (each distinct selection one)

# The flat form of a plan whose every entry is a plain leaf or ``__typename``, one entry per
# response name: (response name, read, read takes the shim, serializer, nullable, the
# serializer returns a str unchanged); read is None for ``__typename`` (its name is in the
# serializer's place).
Flat = tuple[tuple[str, Any, bool, Any, bool, bool], ...]
_FLAT: dict[int, tuple[Plan, Flat | None]] = {}


def _flat(plan: Plan) -> Flat | None:
    """``plan``'s flat form when every entry is a plain leaf or ``__typename`` (an object
    of it completes in one loop, with nothing to await and no path unless a field is off
    the plain path), else None. Made once per plan (kept by its id, with the plan: an id
    is not reused while the plan lives)."""
    known = _FLAT.get(id(plan))
    if known is None or known[0] is not plan:
        flat: Flat | None = None
        if all(entry[0] is _LEAF or entry[0] is _TYPENAME for entry in plan):
            flat = tuple(
                (name, None, False, a, False, False)
                if kind is _TYPENAME
                else (
                    name,
                    getattr(getter, _ONE_ARGUMENT, getter),
                    not hasattr(getter, _ONE_ARGUMENT),
                    a,
                    b,
                    getattr(a, _PASSES_STR, False),
                )
                for kind, name, getter, a, b in plan
            )
        if len(_FLAT) >= _PLANS_MAX:
            _FLAT.clear()
        known = _FLAT[id(plan)] = (plan, flat)
    return known[1]


def _context_free(flat: Flat) -> bool:
    """True when no read of ``flat`` takes the request's context (``info``)."""
    return not any(shim for _name, read, shim, *_ in flat if read is not None)


def _complete_kept(values: KeptItems, flat: Flat) -> list[dict[str, Any]] | None:
    """Every item of ``values`` completed by ``flat`` (a context-free selection: each read
    takes the item alone), a field at a time over all items: the loop per item, with a call
    and its checks per field, done by ``map`` in C. The same dicts, keys in the same order,
    as the loop of ``_plan_object_list`` makes; None when any item is null, any read raises,
    is not ready or is null for a non-null field, or any value does not serialize: then the
    loop per item completes them (and reports what is to be reported). Its reads may run
    twice then, which ``KeptItems`` allows: their reads answer from the item alone.

    The first page of exceptions after ready completes each of its affected orders once
    (34,000 at 100,000 orders): the one step of that answer that grows with it."""
    if any(map(operator.is_, values, itertools.repeat(None))):
        return None
    names: list[str] = []
    columns: list[Any] = []
    try:
        for name, read, _shim, serialize, nullable, passes_str in flat:
            names.append(name)
            if read is None:  # __typename: its name in the serializer's place
                columns.append([serialize] * len(values))
                continue
            column: list[Any] = []
            try:
                column.extend(map(read, values))
            except Exception:  # the loop per item reports it
                _close_coroutines(column)
                return None
            kinds = set(map(type, column))
            if passes_str and kinds == _STR_ONLY:
                columns.append(column)  # as the loop stores a str such a serializer passes
                continue
            if types.CoroutineType in kinds:
                _close_coroutines(column)  # not ready: the loop per item sends it to graphql-core
                return None
            if _NONE_TYPE in kinds and not nullable:
                return None
            out = []
            for leaf in column:
                if leaf is None:
                    out.append(None)
                elif passes_str and leaf.__class__ is str:
                    out.append(leaf)
                else:
                    done = serialize(leaf)
                    if done is None or done is Undefined:
                        return None
                    out.append(done)
            columns.append(out)
    except Exception:  # the loop per item reports it
        return None
    if len(names) == 1:
        only = names[0]
        return [{only: leaf} for leaf in columns[0]]
    return list(map(dict, map(zip, itertools.repeat(names), zip(*columns, strict=True))))


def _close_coroutines(column: list[Any]) -> None:
    for leaf in column:
        if leaf.__class__ is types.CoroutineType:
            leaf.close()


_STR_ONLY = {str}
_NONE_TYPE = type(None)


class FastExecutor(Executor):
    """graphql-core's executor, with plain leaf reads taken in one step, and objects
    whose selected fields are all plain leaves completed in one loop."""

    def _leaf(self, fast: tuple[Callable[[Any, Any], Any], GraphQLLeafType, bool], source: Any) -> Any:
        """The completed value of one plain leaf, or ``_NOT_FAST`` for graphql-core's path."""
        try:
            value = fast[0](source, self._shim)
            if value is None:
                return None if fast[2] else _NOT_FAST  # non-null: graphql-core reports it
            if value.__class__ is types.CoroutineType:
                value.close()  # not ready (e.g. a lone order's view): graphql-core awaits it
                return _NOT_FAST
            out = fast[1].coerce_output_value(value)
            return _NOT_FAST if out is None or out is Undefined else out
        except Exception:  # graphql-core's path reports it
            return _NOT_FAST

    @functools.cached_property
    def _shim(self) -> ContextOnly:
        """What the plain getters get as ``info``: this request's context, made once."""
        return ContextOnly(self.context_value)

    @functools.cached_property
    def _plan_memo(self) -> dict[int, Any]:
        """This request's plans: by the id of a grouped field set, and by the id of a
        field's node list for its sub-selection (each entry keeps its key object alive)."""
        return {}

    def execute_fields(self, parent_type, source_value, path, grouped_field_set, position_context):  # type: ignore[no-untyped-def]
        if self.middleware_manager or FAST_PATH not in self.schema.extensions:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        memo = self._plan_memo
        # The grouped field set of a selection is one object for the whole request
        # (graphql-core memoizes it), so its plan is looked up once per request.
        known = memo.get(id(grouped_field_set))
        if known is None:
            known = memo[id(grouped_field_set)] = (grouped_field_set, plan_for(self.schema, parent_type, grouped_field_set))
        return self._run_plan(known[1], parent_type, source_value, path, grouped_field_set)

    def _child(self, object_type, fdl):  # type: ignore[no-untyped-def]
        """``(grouped sub-fields, their plan)`` of a plain object field's selection, once
        per request; None when the selection defers (graphql-core's path)."""
        memo = self._plan_memo
        known = memo.get(id(fdl))
        if known is None:
            grouped, defer_usages, _forbidden = self.collect_subfields(object_type, fdl)
            child = None if defer_usages else (grouped, plan_for(self.schema, object_type, grouped))
            known = memo[id(fdl)] = (fdl, child)
        return known[1]

    def _fallback(self, parent_type, source, grouped_field_set, response_name, path):  # type: ignore[no-untyped-def]
        """graphql-core's own execution of one field, with its path built now."""
        return Executor.execute_field(
            self, parent_type, source, grouped_field_set[response_name], Path(path, response_name, parent_type.name), None
        )

    def _run_plan(self, plan, parent_type, source, path, grouped):  # type: ignore[no-untyped-def]
        """One object's fields by its compiled plan: graphql-core's ``execute_fields`` with
        each plain field read, completed and stored in a step (no resolve info, no path
        unless it is needed); any field off the plain path runs graphql-core's own code."""
        results: dict[str, Any] = {}
        awaitable_fields: list[str] = []
        context = self._shim
        is_awaitable = self.is_awaitable
        try:
            for kind, response_name, getter, a, b in plan:
                if kind is _LEAF:  # a: serializer, b: nullable
                    try:
                        value = getter(source, context)
                        if value is None:
                            if b:
                                results[response_name] = None
                                continue
                        elif value.__class__ is types.CoroutineType:
                            value.close()  # not ready (e.g. a lone order's view): graphql-core awaits it
                        else:
                            out = a(value)
                            if out is not None and out is not Undefined:
                                results[response_name] = out
                                continue
                    except Exception:  # graphql-core's path reports it
                        pass
                elif kind is _TYPENAME:
                    results[response_name] = a
                    continue
                elif kind is _OBJECT:  # a: object type, b: declared type
                    out = self._plan_object(getter, a, b, source, context, grouped[response_name], path, response_name, parent_type.name)
                    if out is not _NOT_FAST:
                        results[response_name] = out
                        if out.__class__ is types.CoroutineType:
                            awaitable_fields.append(response_name)
                        continue
                elif kind is _OBJECT_LIST:  # a: (item type, item nullable), b: declared type
                    out = self._plan_object_list(getter, a, b, source, context, grouped[response_name], path, response_name, parent_type.name)
                    if out is not _NOT_FAST:
                        results[response_name] = out
                        if out.__class__ is types.CoroutineType:
                            awaitable_fields.append(response_name)
                        continue
                elif kind is _LEAF_LIST:  # a: serializer, b: (nullable, items nullable)
                    out = _leaf_list(getter, a, b, source, context)
                    if out is not _NOT_FAST:
                        results[response_name] = out
                        continue
                result = self._fallback(parent_type, source, grouped, response_name, path)
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                # As graphql-core: settle what other fields started, they may fail too.
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                field = awaitable_fields[0]
                results[field] = await results[field]
            else:
                awaited = await gather_with_cancel(*(results[field] for field in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()

    def _plan_object(self, getter, object_type, declared, source, context, fdl, path, response_name, type_name):  # type: ignore[no-untyped-def]
        """A plain object read and its sub-selection, errors handled as graphql-core's
        ``execute_field`` handles them; ``_NOT_FAST`` for graphql-core's own path."""
        try:
            value = getter(source, context)
        except Exception:
            return _NOT_FAST
        if value is None:
            return None if declared.__class__ is not GraphQLNonNull else _NOT_FAST
        if value.__class__ is types.CoroutineType:
            value.close()  # not ready: graphql-core awaits it
            return _NOT_FAST
        child = self._child(object_type, fdl)
        if child is None:
            return _NOT_FAST
        field_path = _new_path(Path, (path, response_name, type_name))
        try:
            result = self._run_plan(child[1], object_type, value, field_path, child[0])
        except Exception as raw_error:
            self.handle_field_error(raw_error, declared, fdl, field_path)
            return None
        if result.__class__ is types.CoroutineType:  # what _run_plan returns when it waits

            async def await_result() -> Any:
                try:
                    return await result
                except Exception as raw_error:
                    self.handle_field_error(raw_error, declared, fdl, field_path)
                    return None

            return await_result()
        return result

    def _plan_object_list(self, getter, item, declared, source, context, fdl, path, response_name, type_name):  # type: ignore[no-untyped-def]
        """A plain list of objects, each item's sub-selection by its plan; errors as
        graphql-core's ``complete_iterable_value`` handles them."""
        object_type, item_nullable, item_declared = item
        try:
            values = getter(source, context)
        except Exception:
            return _NOT_FAST
        if values is None:
            return None if declared.__class__ is not GraphQLNonNull else _NOT_FAST
        kept = values.__class__ is KeptItems
        if values.__class__ is not list and values.__class__ is not tuple and not kept:
            if values.__class__ is types.CoroutineType:
                values.close()  # not ready: graphql-core awaits it
            return _NOT_FAST
        if not item_nullable and any(map(operator.is_, values, itertools.repeat(None))):
            return _NOT_FAST  # graphql-core reports the null item (found by identity: no __eq__ per item)
        child = self._child(object_type, fdl)
        if child is None:
            return _NOT_FAST
        grouped, plan = child
        flat = _flat(plan)
        if kept and flat is not None and _context_free(flat):
            memo = values.__dict__
            done = memo.get(id(flat))
            if done is not None and done[0] is flat:
                return list(done[1])  # this selection over these items, completed before
            whole = _complete_kept(values, flat)
            if whole is not None:
                if len(memo) >= _KEPT_SELECTIONS:
                    memo.clear()
                memo[id(flat)] = (flat, tuple(whole))  # keeps flat alive: its id is not reused
                return whole
        else:
            memo = None
        field_path = Path(path, response_name, type_name)
        completed: list[Any] = []
        awaitable_indices: list[int] = []
        run_plan = self._run_plan
        coroutine = types.CoroutineType
        handle = self.handle_field_error
        each_plain = True  # every item completed in the flat loop (nothing reported)
        try:
            for index, value in enumerate(values):
                if value is None:
                    completed.append(None)
                    continue
                if flat is not None:
                    # Every selected field a plain leaf (or __typename): the item's fields
                    # read, completed and stored here, as _run_plan would store them; any
                    # field off the plain path sends the whole item to _run_plan below.
                    row: dict[str, Any] | None = {}
                    try:
                        for name, read, shim, serialize, nullable, passes_str in flat:
                            if read is None:
                                row[name] = serialize  # type: ignore[index]
                                continue
                            leaf = read(value, context) if shim else read(value)
                            if leaf is None:
                                if nullable:
                                    row[name] = None  # type: ignore[index]
                                    continue
                                row = None
                                break
                            if leaf.__class__ is coroutine:
                                leaf.close()  # not ready: graphql-core awaits it
                                row = None
                                break
                            if passes_str and leaf.__class__ is str:
                                row[name] = leaf  # type: ignore[index]
                                continue
                            out = serialize(leaf)
                            if out is None or out is Undefined:
                                row = None
                                break
                            row[name] = out  # type: ignore[index]
                    except Exception:  # graphql-core's path reports it
                        row = None
                    if row is not None:
                        completed.append(row)
                        continue
                each_plain = False
                item_path = _new_path(Path, (field_path, index, None))
                try:
                    out = run_plan(plan, object_type, value, item_path, grouped)
                except Exception as raw_error:
                    handle(raw_error, item_declared, fdl, item_path)
                    out = None
                if out.__class__ is coroutine:
                    out = self._await_item(out, item_declared, fdl, item_path)
                    awaitable_indices.append(index)
                completed.append(out)
        except Exception as raw_error:
            if awaitable_indices:
                self.settle_in_background([completed[i] for i in awaitable_indices])
            self.handle_field_error(raw_error, declared, fdl, field_path)
            return None
        if not awaitable_indices:
            if memo is not None and each_plain:
                if len(memo) >= _KEPT_SELECTIONS:
                    memo.clear()
                memo[id(flat)] = (flat, tuple(completed))  # keeps flat alive: its id is not reused
            return completed

        async def get_completed() -> list[Any]:
            try:
                if len(awaitable_indices) == 1:
                    completed[awaitable_indices[0]] = await completed[awaitable_indices[0]]
                else:
                    awaited = await gather_with_cancel(*(completed[i] for i in awaitable_indices))
                    for i, sub in zip(awaitable_indices, awaited, strict=True):
                        completed[i] = sub
            except Exception as raw_error:
                self.handle_field_error(raw_error, declared, fdl, field_path)
                return None  # type: ignore[return-value]
            return completed

        return get_completed()

    async def _await_item(self, awaitable, item_declared, fdl, item_path):  # type: ignore[no-untyped-def]
        try:
            return await awaitable
        except Exception as raw_error:
            self.handle_field_error(raw_error, item_declared, fdl, item_path)
            return None

    def execute_field(self, parent_type, source, field_details_list, path, position_context):  # type: ignore[no-untyped-def]
        if not self.middleware_manager:
            node = field_details_list[0].node
            fast_path = self.schema.extensions.get(FAST_PATH)
            if not node.arguments and fast_path is not None:
                key = (parent_type.name, node.name.value)
                fast = fast_path.leaves.get(key)
                if fast is not None:
                    out = self._leaf(fast, source)
                    if out is not _NOT_FAST:
                        return out
                else:
                    obj = fast_path.objects.get(key)
                    if obj is not None:
                        out = self._object(obj, source, field_details_list, path, position_context)
                        if out is not _NOT_FAST:
                            return out
        return super().execute_field(parent_type, source, field_details_list, path, position_context)

    def _object(self, obj, source, field_details_list, path, position_context):  # type: ignore[no-untyped-def]
        """A plain object read: its sub-selection executed directly (no resolve info, no
        completion dispatch); errors below it are handled as graphql-core handles them."""
        getter, object_type, declared = obj
        try:
            value = getter(source, self._shim)
        except Exception:
            return _NOT_FAST
        if value is None:
            return None if not isinstance(declared, GraphQLNonNull) else _NOT_FAST
        if value.__class__ is types.CoroutineType:
            value.close()  # not ready: graphql-core awaits it
            return _NOT_FAST
        try:
            grouped, _defer_usages, _forbidden = self.collect_subfields(object_type, field_details_list)
            result = self.execute_fields(object_type, value, path, grouped, None)  # as graphql-core does
        except Exception as raw_error:
            self.handle_field_error(raw_error, declared, field_details_list, path)
            return None
        if self.is_awaitable(result):

            async def await_result() -> Any:
                try:
                    return await result
                except Exception as raw_error:
                    self.handle_field_error(raw_error, declared, field_details_list, path)
                    return None

            return await_result()
        return result
