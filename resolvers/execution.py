"""A faster graphql-core executor for the fields that make up most of a page: leaves.

A 50-order dashboard page resolves ~900 fields, most of them scalars and enums read
straight off a record (``id``, ``confirmedDeliveryDate``, ``status``). For each,
graphql-core builds a resolve-info object, looks at the arguments, checks for an
awaitable and dispatches ``complete_value`` — more work than the read itself.
``FastExecutor`` resolves such a field with one plain call and the type's output
coercion. It takes only fields that are known, at schema build, to be synchronous leaf
reads without arguments and without ``info``; anything else, any ``None`` (for the null
checks), any error, and every request with middleware (customer viewers) goes through
graphql-core's own path, which then reports exactly as before.
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

# (type name, field name) -> (getter(source), leaf type)
LeafReads = dict[tuple[str, str], tuple[Callable[[Any], Any], GraphQLLeafType]]

_leaf_reads: dict[int, LeafReads] = {}


def register_leaf_reads(schema: GraphQLSchema) -> int:
    """Find the fields ``FastExecutor`` may take; returns how many."""
    reads: LeafReads = {}
    for t in schema.type_map.values():
        if not isinstance(t, GraphQLObjectType) or t.name.startswith("__"):
            continue
        for name, gfield in t.fields.items():
            if gfield.args:
                continue
            leaf = gfield.type.of_type if isinstance(gfield.type, GraphQLNonNull) else gfield.type
            if not isinstance(leaf, GraphQLLeafType):
                continue
            getter = _plain_getter(gfield)
            if getter is not None:
                reads[(t.name, name)] = (getter, leaf)
    _leaf_reads[id(schema)] = reads
    return len(reads)


def _plain_getter(gfield: Any) -> Callable[[Any], Any] | None:
    definition = (gfield.extensions or {}).get("strawberry-definition")
    if not isinstance(definition, StrawberryField) or definition.extensions or definition.arguments:
        return None
    resolver = definition.base_resolver
    if resolver is None:  # a plain attribute
        return operator.attrgetter(definition.python_name)
    fn = resolver.wrapped_func
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn) or resolver.info_parameter is not None:
        return None
    if resolver.root_parameter is not None or resolver.self_parameter is None:
        return None
    reserved = {p.name for p in resolver.reserved_parameters.values() if p is not None}
    if set(resolver.signature.parameters) - reserved:
        return None
    return fn


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
    """graphql-core's executor, with plain leaf reads taken in one step."""

    def execute_field(self, parent_type, source, field_details_list, path, position_context):  # type: ignore[no-untyped-def]
        if not self.middleware_manager:
            reads = _leaf_reads.get(id(self.schema))
            node = field_details_list[0].node
            if reads is not None and not node.arguments:
                fast = reads.get((parent_type.name, node.name.value))
                if fast is not None:
                    try:
                        value = fast[0](source)
                        if value is not None:
                            out = fast[1].coerce_output_value(value)
                            if out is not None and out is not Undefined:
                                return out
                    except Exception:  # noqa: S110 - graphql-core's path reports it
                        pass
        return super().execute_field(parent_type, source, field_details_list, path, position_context)
