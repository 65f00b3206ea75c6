"""Two small subgraphs for the router test (tests/test_supergraph.py), written the way
other teams would: strawberry's federation support, no ordergraph code.

- CRM: adds ``accountManager`` to ordergraph's ``Customer`` entity.
- Shop: its own ``Purchase`` type references ordergraph's ``Order`` by key.
"""

from __future__ import annotations

import strawberry
from strawberry.asgi import GraphQL
from strawberry.federation.schema_directives import Key

MANAGERS = ("Anna Berger", "Jonas Weber", "Mira Schulz", "Lukas Braun")


def account_manager(customer_id: str) -> str:
    """The CRM's account manager of a customer (a fixed rule, so tests can check it)."""
    return MANAGERS[sum(map(ord, customer_id)) % len(MANAGERS)]


@strawberry.federation.type(keys=["id"])
class Customer:
    id: strawberry.ID

    @strawberry.field(description="The customer's account manager (CRM).")
    def account_manager(self) -> str:
        return account_manager(str(self.id))

    @classmethod
    def resolve_reference(cls, id: strawberry.ID) -> Customer:
        return Customer(id=id)


@strawberry.type
class CrmQuery:
    @strawberry.field
    def account_managers(self) -> list[str]:
        return list(MANAGERS)


def crm_app() -> GraphQL:
    schema = strawberry.federation.Schema(query=CrmQuery, types=[Customer], federation_version="2.3")
    return GraphQL(schema, graphql_ide=None)


@strawberry.federation.type(keys=[Key(fields="id", resolvable=False)], name="Order")
class OrderRef:
    id: strawberry.ID


@strawberry.federation.type(keys=["id"])
class Purchase:
    id: strawberry.ID
    reference: str
    order: OrderRef | None


def shop_app(order_ids: list[str]) -> GraphQL:
    """A shop whose purchases are the given ordergraph orders, in that order."""
    purchases = [
        Purchase(id=strawberry.ID(f"P-{i}"), reference=f"web-shop-{i}", order=OrderRef(id=strawberry.ID(so)))
        for i, so in enumerate(order_ids, 1)
    ]

    @strawberry.type
    class ShopQuery:
        @strawberry.field
        def purchases(self) -> list[Purchase]:
            return purchases

    schema = strawberry.federation.Schema(query=ShopQuery, federation_version="2.3")
    return GraphQL(schema, graphql_ide=None)


def sdl(app: GraphQL) -> str:
    """The subgraph SDL (what ``_service { sdl }`` answers)."""
    return app.schema.as_str()
