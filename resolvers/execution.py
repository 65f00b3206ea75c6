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
import inspect
import operator
import types
from collections.abc import Callable
from importlib import metadata
from typing import Any

import strawberry
from graphql import (
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    Undefined,
)
from graphql import execute as graphql_execute
from graphql.execution.executor import Executor
from strawberry.types.field import StrawberryField
from strawberry.types.info import Info

# The versions the fast path was tested with; pyproject.toml pins the same (a test checks).
PINS = {"graphql-core": "==3.3.2", "strawberry-graphql": ">=0.341.2,<0.342"}
EXECUTORS = ("fast", "standard")
FAST_PATH = "ordergraph.fast_path"  # the key of a schema's FastPath in its extensions

# (type name, field name) -> (getter(source, context), leaf type, nullable)
LeafReads = dict[tuple[str, str], tuple[Callable[[Any, Any], Any], GraphQLLeafType, bool]]
# (type name, field name) -> (getter(source, context), object type, declared type)
ObjectReads = dict[tuple[str, str], tuple[Callable[[Any, Any], Any], GraphQLObjectType, Any]]
_NOT_FAST = object()


@dataclasses.dataclass(frozen=True, slots=True)
class FastPath:
    """What ``FastExecutor`` may take on one schema: its plain leaf and object reads."""

    leaves: LeafReads
    objects: ObjectReads


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
    for t in schema.type_map.values():
        if not isinstance(t, GraphQLObjectType) or t.name.startswith("__"):
            continue
        for name, gfield in t.fields.items():
            if gfield.args:
                continue
            named = gfield.type.of_type if isinstance(gfield.type, GraphQLNonNull) else gfield.type
            if isinstance(named, GraphQLLeafType):
                getter = _plain_getter(gfield)
                if getter is not None:
                    reads[(t.name, name)] = (getter, named, not isinstance(gfield.type, GraphQLNonNull))
            elif isinstance(named, GraphQLObjectType) and named.is_type_of is None:
                getter = _plain_getter(gfield)
                if getter is not None:
                    objects[(t.name, name)] = (getter, named, gfield.type)
    schema.extensions[FAST_PATH] = FastPath(reads, objects)
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
        return lambda source, _context: attr(source)
    method = plain_method(definition)
    if method is None:
        return None
    fn, info_name = method
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return None
    if info_name is None:
        return lambda source, _context: fn(source)
    return lambda source, context: fn(source, **{info_name: ContextOnly(context)})


_AWAITABLE: dict[type, bool] = {}


def is_awaitable(value: Any) -> bool:
    """graphql-core's question, answered once per class (this project returns no
    generator-based coroutines)."""
    cls = value.__class__
    known = _AWAITABLE.get(cls)
    if known is None:
        known = _AWAITABLE[cls] = cls is types.CoroutineType or hasattr(cls, "__await__")
    return known


class FastExecutor(Executor):
    """graphql-core's executor, with plain leaf reads taken in one step, and objects
    whose selected fields are all plain leaves completed in one loop."""

    def _leaf(self, fast: tuple[Callable[[Any, Any], Any], GraphQLLeafType, bool], source: Any) -> Any:
        """The completed value of one plain leaf, or ``_NOT_FAST`` for graphql-core's path."""
        try:
            value = fast[0](source, self.context_value)
            if value is None:
                return None if fast[2] else _NOT_FAST  # non-null: graphql-core reports it
            if value.__class__ is types.CoroutineType:
                value.close()  # not ready (e.g. a lone order's view): graphql-core awaits it
                return _NOT_FAST
            out = fast[1].coerce_output_value(value)
            return _NOT_FAST if out is None or out is Undefined else out
        except Exception:  # graphql-core's path reports it
            return _NOT_FAST

    def execute_fields(self, parent_type, source_value, path, grouped_field_set, position_context):  # type: ignore[no-untyped-def]
        fast_path = self.schema.extensions.get(FAST_PATH)
        if fast_path is not None and not self.middleware_manager:
            reads = fast_path.leaves
            type_name = parent_type.name
            plan = []
            for response_name, field_details_list in grouped_field_set.items():
                node = field_details_list[0].node
                fast = None if node.arguments else reads.get((type_name, node.name.value))
                if fast is None:
                    break
                plan.append((response_name, fast))
            else:
                results = {}
                for response_name, fast in plan:
                    out = self._leaf(fast, source_value)
                    if out is _NOT_FAST:
                        break
                    results[response_name] = out
                else:
                    return results
        return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)

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
            value = getter(source, self.context_value)
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
