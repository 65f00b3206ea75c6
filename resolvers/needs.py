"""Building ``Order`` objects with their views: the one way queries, listings, the page
prefetch and the subscription fan-out make them (``build``; ``orders.build_orders`` for
modules above the order types).

An order's derived fields (stage, risk, milestones, section statuses, item quantities) are
pure functions of its ``OrderView`` (``types.on_view``). When a selection asks for any of
them, ``build_orders`` assembles the views of all the orders being built up front, level by
level, in one batch per source (``fetch.prefetch_page``); each field then answers without
an await. What a selection asks for (``Needs``) is read from strawberry's selection (a
query's ``info``) or from a subscription's document (graphql-core's AST).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
)
from graphql.utilities import get_operation_ast
from strawberry import Info

from sources.records import SalesOrder

from . import fetch
from .context import Context
from .fields import CROSS_SOURCE_FIELDS, ITEM_CROSS_SOURCE_FIELDS


@dataclasses.dataclass(frozen=True, slots=True)
class Needs:
    """What a selection of ``Order`` fields asks of every order: the view (a field derived
    from every source), the customer."""

    views: bool = False
    customers: bool = False

    def __or__(self, other: Needs) -> Needs:
        return Needs(self.views or other.views, self.customers or other.customers)


NOTHING = Needs()


async def build(order_type: Any, ctx: Context, records: Sequence[SalesOrder | None], needs: Needs) -> list[Any]:
    """``order_type`` objects (the schema's ``Order``) for ``records`` (None stays None),
    with what ``needs`` says fetched for all of them at once. A source fault leaves the
    views out: each field then loads on its own path, which reports the fault there."""
    present = [r for r in records if r is not None]
    if present and (needs.views or needs.customers):
        await fetch.prefetch_page(ctx, present, views=needs.views, customers=needs.customers)
    return [order_type(record=r) if r is not None else None for r in records]


# --- a query's selection (the field's AST nodes in its info) --------------------------------
# Read from graphql-core's AST under the field, not from strawberry's ``selected_fields``:
# that converts the whole selection (arguments, directives) on every call, 8 % of a cold
# order's CPU. Documents are parsed once and cached (``gateway/documents.py``), so the same
# field nodes come back with every request for a document: what they ask is kept per node.

_SELECTION_NEEDS: dict[tuple[int, bool], tuple[Any, Needs]] = {}
_SELECTION_NEEDS_MAX = 4096


def _selection_needs(info: Info, page: bool) -> Needs:
    raw = info._raw_info
    nodes = raw.field_nodes
    key = (id(nodes[0]), page)
    kept = _SELECTION_NEEDS.get(key)
    if kept is not None and kept[0] is nodes[0]:
        return kept[1]
    fragments = raw.fragments
    top = [s for node in nodes if node.selection_set is not None for s in node.selection_set.selections]
    if page:
        top = _ast_children(top, "nodes", fragments) + _ast_children(_ast_children(top, "edges", fragments), "node", fragments)
    needs = _ast_needs(top, fragments)
    if len(_SELECTION_NEEDS) >= _SELECTION_NEEDS_MAX:
        _SELECTION_NEEDS.clear()
    _SELECTION_NEEDS[key] = (nodes[0], needs)  # the node itself: its id is not reused while kept
    return needs


def field_needs(info: Info) -> Needs:
    """What the selection of a field returning orders (``order``, ``_entities``) asks."""
    return _selection_needs(info, page=False)


def page_needs(info: Info) -> Needs:
    """What a connection's selection (``nodes`` or ``edges { node }``) asks of every order."""
    return _selection_needs(info, page=True)


# --- a subscription's document (graphql-core's AST) ----------------------------------------


def document_needs(document: DocumentNode, operation_name: str | None, path: Sequence[str]) -> Needs:
    """What the Order selection at ``path`` (field names from the root, e.g.
    ``("orderChanges", "order")``) of an operation asks of every order. Directives are not
    evaluated: a field under ``@skip`` still counts (a prefetch too many, never too few)."""
    op = get_operation_ast(document, operation_name)
    if op is None:
        return NOTHING
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    selections: list[Any] = list(op.selection_set.selections)
    for name in path:
        selections = _ast_children(selections, name, fragments)
    return _ast_needs(selections, fragments)


def _ast_needs(selections: list, fragments: dict[str, FragmentDefinitionNode]) -> Needs:
    """What a selection of Order fields (AST, fragments expanded) asks of every order.
    Directives are not evaluated: a field under ``@skip`` still counts (a prefetch too
    many, never too few)."""
    names = _ast_names(selections, fragments)
    views = bool(names & CROSS_SOURCE_FIELDS) or (
        "items" in names and bool(_ast_names(_ast_children(selections, "items", fragments), fragments) & ITEM_CROSS_SOURCE_FIELDS)
    )
    return Needs(views=views, customers="customer" in names)


def _ast_fields(selections: list, fragments: dict[str, FragmentDefinitionNode], seen: frozenset = frozenset()) -> list[FieldNode]:
    out: list[FieldNode] = []
    for sel in selections:
        if isinstance(sel, FieldNode):
            out.append(sel)
        elif isinstance(sel, InlineFragmentNode):
            out += _ast_fields(list(sel.selection_set.selections), fragments, seen)
        elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen and sel.name.value in fragments:
            frag = fragments[sel.name.value]
            out += _ast_fields(list(frag.selection_set.selections), fragments, seen | {sel.name.value})
    return out


def _ast_names(selections: list, fragments: dict[str, FragmentDefinitionNode]) -> set[str]:
    return {f.name.value for f in _ast_fields(selections, fragments)}


def _ast_children(selections: list, name: str, fragments: dict[str, FragmentDefinitionNode]) -> list:
    out: list = []
    for f in _ast_fields(selections, fragments):
        if f.name.value == name and f.selection_set is not None:
            out += f.selection_set.selections
    return out
