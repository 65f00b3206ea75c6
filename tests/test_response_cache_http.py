"""A repeated POST body is answered from the response cache without running the read and
document stages again, and admission still runs first: CSRF, the token and the rate limit
refuse it as they refuse any request, and each scope keeps its own answers."""

from __future__ import annotations

from gateway.auth import mint_token
from gateway.config import AuthConfig, LimitsConfig

from .servers import running_gateway

SECRET = "test-secret-for-hs256-tokens-only"
QUERY = "query($id: ID!) { order(id: $id) { id customerId } }"


async def _post(http, url: str, body: bytes, token: str | None, content_type: str = "application/json"):
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.post(f"{url}/graphql", data=body, headers=headers) as resp:
        return resp.status, await resp.read()


async def test_a_repeated_body_is_served_after_admission_and_per_scope(plant, http):
    auth = AuthConfig(mode="jwt", hs256_secret=SECRET, leeway_seconds=0)
    limits = LimitsConfig(rate_per_second=0.001, rate_burst=3)
    async with running_gateway(plant.url, auth=auth, limits=limits) as (url, app):
        gw = app.state.gateway
        so = sorted(plant.world.sales_orders)[0]
        owner = plant.world.get("A_SalesOrder", so).sold_to_party
        other = next(c for c in sorted({plant.world.get("A_SalesOrder", s).sold_to_party for s in plant.world.sales_orders}) if c != owner)
        body = b'{"query": "%s", "variables": {"id": "%s"}}' % (QUERY.encode(), so.encode())
        mine = mint_token(SECRET, role="customer", customer=owner, subject="a")
        theirs = mint_token(SECRET, role="customer", customer=other, subject="b")

        status, first = await _post(http, url, body, mine)
        assert status == 200 and b'"customerId"' in first
        hits = gw.responses.hits
        status, again = await _post(http, url, body, mine)
        assert (status, again) == (200, first)
        assert gw.responses.hits == hits + 1  # served from the cache

        # The same bytes from another customer: its own answer (not this customer's order).
        status, other_answer = await _post(http, url, body, theirs)
        assert status == 200 and other_answer != first and b'"order":null' in other_answer.replace(b" ", b"")

        # Admission still runs before the cache: no token, a CSRF-simple request, a spent budget.
        status, _ = await _post(http, url, body, None)
        assert status == 401
        status, _ = await _post(http, url, body, None, content_type="text/plain")
        assert status == 400
        status, _ = await _post(http, url, body, mine)  # the third of a burst of 3
        assert status == 200
        status, refused = await _post(http, url, body, mine)
        assert status == 429 and b"RATE_LIMITED" in refused
