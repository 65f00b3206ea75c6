"""The shape of a parsed document, measured in one linear walk before validation.

graphql-core's validation is not linear in the document: its overlapping-fields rule
compares every pair of fields that share a response name in a selection set (fragments
and inline fragments included), and each pair's sub-selections again. A flat document
under the token limit (350 copies of ``orders(first: 500) { nodes { id } }``) took seconds
of the event loop. So the document stage measures the shape first, in time linear in the
document, and refuses what would be expensive before any rule runs:

- ``fields``: field nodes written in the document;
- ``aliases``: aliased fields;
- ``width``: the most fields one selection set asks for, its fragments' fields included;
- ``merge_checks``: an upper bound of the comparisons the overlapping-fields rule makes:
  in every selection set, for each pair of fields with the same response name, the
  product of their subtrees' sizes (comparing two fields compares their sub-selections
  pairwise, so this bounds the recursion too); ``repeats`` and ``repeated`` name the
  response name selected most often in one selection set, for the error message;
- ``fragments``: fragment definitions.

The walk also yields the document's normal form (``key``): its operations and fragments
without whitespace, commas or comments, and with aliases renamed in order of appearance,
so documents that differ only in those share one validation verdict. An alias that is also
the name of a field in the document keeps its name: response names that collide with a
field's name are what the overlapping-fields rule judges.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from graphql import (
    BooleanValueNode,
    DirectiveNode,
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FloatValueNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
)


@dataclasses.dataclass(slots=True)
class Shape:
    """What the walk found (see the module docstring)."""

    fields: int = 0
    aliases: int = 0
    width: int = 0
    width_at: str = ""  # the widest selection set's parent field (or "the operation")
    repeats: int = 0
    repeated: str = ""  # the response name repeated most
    merge_checks: int = 0  # an upper bound of the overlapping-fields rule's field comparisons
    fragments: int = 0
    key: str = ""


def measure_shape(doc: DocumentNode) -> Shape:
    """The shape and normal form of ``doc``, in time linear in its size."""
    return _Walk(doc).run()


class _Walk:
    def __init__(self, doc: DocumentNode) -> None:
        self.doc = doc
        self.shape = Shape()
        self.fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
        # Response names each fragment contributes to the selection set it is spread in:
        # name -> count, memoised so a fragment spread many times is walked once.
        self.contrib: dict[str, tuple[dict[str, list[int]], int]] = {}
        self.visiting: set[str] = set()
        self.field_names: set[str] = set()
        self.alias_names: dict[str, str] = {}
        self.out: list[str] = []

    def run(self) -> Shape:
        shape = self.shape
        shape.fragments = len(self.fragments)
        # Pass 1: counts (fields, aliases, width, repeats) and the field names in use.
        for definition in self.doc.definitions:
            if isinstance(definition, (OperationDefinitionNode, FragmentDefinitionNode)):
                self.count(definition.selection_set, "the operation" if isinstance(definition, OperationDefinitionNode) else definition.name.value)
        # Pass 2: the normal form.
        for definition in self.doc.definitions:
            if isinstance(definition, OperationDefinitionNode):
                self.out.append(definition.operation.value)
                if definition.name:
                    self.out.append(" " + definition.name.value)
                if definition.variable_definitions:
                    self.out.append("(")
                    for var in definition.variable_definitions:
                        self.out.append(f"${var.variable.name.value}:{_type(var.type)}")
                        if var.default_value is not None:
                            self.out.append("=" + _value(var.default_value))
                        self.out.append(",")
                    self.out.append(")")
                self.directives(definition.directives)
                self.emit(definition.selection_set)
            elif isinstance(definition, FragmentDefinitionNode):
                self.out.append(f"fragment {definition.name.value} on {definition.type_condition.name.value}")
                self.directives(definition.directives)
                self.emit(definition.selection_set)
            else:  # type system definitions: validation refuses them; keep them apart
                self.out.append(f"<{definition.kind}@{definition.loc.start if definition.loc else 0}>")
        shape.key = "".join(self.out)
        return shape

    # --- pass 1 ---------------------------------------------------------------------------

    def count(self, sel_set: SelectionSetNode | None, where: str, record: bool = True) -> tuple[dict[str, list[int]], int]:
        """Response names selected by ``sel_set`` (inline fragments flattened, named
        fragments lent from their memo) as name -> [fields, Σ size, Σ size²], and the
        fields under ``sel_set``, fragments expanded. ``record``: count this selection set
        in the shape (the walk over the document's own definitions), not a fragment's
        contribution to the selection sets that spread it."""
        names: dict[str, list[int]] = {}
        if sel_set is None:
            return names, 0
        size = self.add(names, sel_set, where, record)
        if record:
            shape = self.shape
            width = 0
            for name, (n, total, squares) in names.items():
                width += n
                if n > shape.repeats:
                    shape.repeats, shape.repeated = n, name
                # The pairs of same-named fields the overlapping-fields rule compares here,
                # each costing at most the product of the two subtrees' sizes.
                shape.merge_checks += (total * total - squares) // 2
            if width > shape.width:
                shape.width, shape.width_at = width, where
        return names, size

    def add(self, names: dict[str, list[int]], sel_set: SelectionSetNode, where: str, record: bool) -> int:
        shape = self.shape
        size = 0
        for sel in sel_set.selections:
            if isinstance(sel, FieldNode):
                response = sel.name.value
                if record:
                    shape.fields += 1
                    self.field_names.add(response)
                if sel.alias is not None:
                    response = sel.alias.value
                    if record:
                        shape.aliases += 1
                _, below = self.count(sel.selection_set, response, record)
                here = 1 + below
                size += here
                entry = names.get(response)
                if entry is None:
                    names[response] = [1, here, here * here]
                else:
                    entry[0] += 1
                    entry[1] += here
                    entry[2] += here * here
            elif isinstance(sel, InlineFragmentNode):
                size += self.add(names, sel.selection_set, where, record)
            elif isinstance(sel, FragmentSpreadNode):
                lent, lent_size = self.fragment(sel.name.value)
                size += lent_size
                for name, (n, total, squares) in lent.items():
                    entry = names.get(name)
                    if entry is None:
                        names[name] = [n, total, squares]
                    else:
                        entry[0] += n
                        entry[1] += total
                        entry[2] += squares
        return size

    def fragment(self, name: str) -> tuple[dict[str, list[int]], int]:
        """What fragment ``name`` lends a selection set that spreads it (memoised, so a
        fragment spread many times is walked once more, not once per spread)."""
        known = self.contrib.get(name)
        if known is not None:
            return known
        frag = self.fragments.get(name)
        if frag is None or name in self.visiting:  # unknown or cyclic: validation says so
            return {}, 0
        self.visiting.add(name)
        try:
            # Its own fields are counted where it is defined (the walk over definitions).
            names, size = self.count(frag.selection_set, name, record=False)
        finally:
            self.visiting.discard(name)
        self.contrib[name] = (names, size)
        return names, size

    # --- pass 2 ---------------------------------------------------------------------------

    def alias(self, value: str) -> str:
        if value in self.field_names:
            return value
        known = self.alias_names.get(value)
        if known is None:
            # "#" cannot occur in a GraphQL name, so a renamed alias never equals a real one
            known = self.alias_names[value] = f"#{len(self.alias_names)}"
        return known

    def emit(self, sel_set: SelectionSetNode | None) -> None:
        if sel_set is None:
            return
        out = self.out
        out.append("{")
        for sel in sel_set.selections:
            if isinstance(sel, FieldNode):
                if sel.alias is not None:
                    out.append(self.alias(sel.alias.value) + ":")
                out.append(sel.name.value)
                if sel.arguments:
                    out.append("(" + ",".join(f"{a.name.value}:{_value(a.value)}" for a in sel.arguments) + ")")
                self.directives(sel.directives)
                self.emit(sel.selection_set)
            elif isinstance(sel, InlineFragmentNode):
                out.append("..." + (f"on {sel.type_condition.name.value}" if sel.type_condition else ""))
                self.directives(sel.directives)
                self.emit(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode):
                out.append("..." + sel.name.value)
                self.directives(sel.directives)
            out.append(" ")
        out.append("}")

    def directives(self, directives: tuple[DirectiveNode, ...] | None) -> None:
        for d in directives or ():
            args = "(" + ",".join(f"{a.name.value}:{_value(a.value)}" for a in d.arguments) + ")" if d.arguments else ""
            self.out.append(f"@{d.name.value}{args}")


def _type(node: Any) -> str:
    kind = node.kind
    if kind == "non_null_type":
        return _type(node.type) + "!"
    if kind == "list_type":
        return "[" + _type(node.type) + "]"
    return node.name.value


def _value(node: Any) -> str:
    if isinstance(node, VariableNode):
        return "$" + node.name.value
    if isinstance(node, (IntValueNode, FloatValueNode, EnumValueNode)):
        return node.value
    if isinstance(node, StringValueNode):
        return repr(node.value)
    if isinstance(node, BooleanValueNode):
        return "true" if node.value else "false"
    if isinstance(node, NullValueNode):
        return "null"
    if isinstance(node, ListValueNode):
        return "[" + ",".join(_value(v) for v in node.values) + "]"
    if isinstance(node, ObjectValueNode):
        return "{" + ",".join(f"{f.name.value}:{_value(f.value)}" for f in node.fields) + "}"
    return f"<{node.kind}>"
