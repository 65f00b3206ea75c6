"""``build_orders``: the one way to build ``Order`` objects with their views, for the
modules above the order types (queries, federation, exceptions, the subscription fan-out).
Listings, below the order types, call ``needs.build`` with the schema's ``Order``."""

from __future__ import annotations

from collections.abc import Sequence

from sources.records import SalesOrder

from .context import Context
from .needs import Needs, build
from .types import Order


async def build_orders(ctx: Context, records: Sequence[SalesOrder | None], needs: Needs) -> list[Order | None]:
    """``Order`` objects for ``records`` (None stays None), with what ``needs`` says
    fetched for all of them at once (``needs.build``)."""
    return await build(Order, ctx, records, needs)
