"""A faster graphql-core executor for the fields that make up most of a page: leaves.

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
which then reports exactly as before.
"""

from __future__ import annotations

import inspect
import operator
import types
from collections.abc import Callable
from typing import Any

from graphql import GraphQLLeafType, GraphQLNonNull, GraphQLObjectType, GraphQLSchema, Undefined
from graphql.execution.executor import Executor
from strawberry.types.field import StrawberryField

# (type name, field name) -> (getter(source, context), leaf type, nullable)
LeafReads = dict[tuple[str, str], tuple[Callable[[Any, Any], Any], GraphQLLeafType, bool]]
_NOT_FAST = object()


class ContextOnly:
    """What a fast leaf resolver gets as ``info``: the request's context, nothing else."""

    __slots__ = ("context",)

    def __init__(self, context: Any) -> None:
        self.context = context

_leaf_reads: dict[int, LeafReads] = {}
# (type name, field name) -> (getter(source, context), object type, declared type)
ObjectReads = dict[tuple[str, str], tuple[Callable[[Any, Any], Any], GraphQLObjectType, Any]]
_object_reads: dict[int, ObjectReads] = {}


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
    _leaf_reads[id(schema)] = reads
    _object_reads[id(schema)] = objects
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
        reads = _leaf_reads.get(id(self.schema))
        if reads is not None and not self.middleware_manager:
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
            if not node.arguments:
                key = (parent_type.name, node.name.value)
                fast = _leaf_reads.get(id(self.schema), {}).get(key)
                if fast is not None:
                    out = self._leaf(fast, source)
                    if out is not _NOT_FAST:
                        return out
                else:
                    obj = _object_reads.get(id(self.schema), {}).get(key)
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
