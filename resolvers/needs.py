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


# --- strawberry's selections (a query's info) ---------------------------------------------


def selection_names(selections: list) -> set[str]:
    """The field names of a selection, fragments expanded."""
    names: set[str] = set()
    for sel in selections:
        name = getattr(sel, "name", None)
        if name is None:  # a fragment: its own selections count
            names |= selection_names(getattr(sel, "selections", []) or [])
        else:
            names.add(name)
    return names


def children(selections: list, name: str) -> list:
    """The selections under the fields called ``name``, fragments expanded."""
    out = []
    for sel in selections:
        if getattr(sel, "name", None) == name:
            out.extend(sel.selections or [])
        elif getattr(sel, "name", None) is None:
            out.extend(children(getattr(sel, "selections", []) or [], name))
    return out


def needs_of(order_fields: list) -> Needs:
    """What a selection of Order fields (strawberry's) asks of every order."""
    names = selection_names(order_fields)
    views = bool(names & CROSS_SOURCE_FIELDS) or (
        "items" in names and bool(selection_names(children(order_fields, "items")) & ITEM_CROSS_SOURCE_FIELDS)
    )
    return Needs(views=views, customers="customer" in names)


def field_needs(info: Info) -> Needs:
    """What the selection of a field returning orders (``order``, ``_entities``) asks."""
    return needs_of([s for field in info.selected_fields for s in (field.selections or [])])


def page_needs(info: Info) -> Needs:
    """What a connection's selection (``nodes`` or ``edges { node }``) asks of every order."""
    top = [s for field in info.selected_fields for s in (field.selections or [])]
    return needs_of(children(top, "nodes") + children(children(top, "edges"), "node"))


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
