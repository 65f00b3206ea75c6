"""Types of the modules above, reached by name.

The resolvers' modules import one way: pagination and the rules at the bottom, then the
listings and the order types, then exceptions, workflow mutations and the roots (the
import-graph test in ``tests/test_architecture.py`` keeps it so). Where a type links back
up (``Customer.orders`` lists ``Order``s; ``Order.exceptions`` returns
``OrderException``s), the module below names the type: ``strawberry.lazy`` in the
annotation, and :func:`schema_type` for the instances, taken from the schema being
executed, so no import runs the other way.
"""

from __future__ import annotations

from typing import Any

from strawberry import Info


def schema_type(info: Info, name: str) -> Any:
    """The class of the executing schema's object type ``name`` (e.g. ``"Order"``)."""
    definition = info.schema.get_type_by_name(name)
    if definition is None or not hasattr(definition, "origin"):  # a schema without it: a bug here
        raise LookupError(f"the schema has no object type {name!r}")
    return definition.origin
