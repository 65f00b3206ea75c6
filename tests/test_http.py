"""GraphQL over HTTP: methods, media types and status codes, on a real gateway."""

from __future__ import annotations

import json

Q = "{ orders(first: 1) { nodes { id } } }"
GQL_RESPONSE = "application/graphql-response+json"
PREFLIGHT = {"Apollo-Require-Preflight": "true"}  # GET is a "simple" request: CSRF prevention wants it


async def test_post_json(gql, http):
    async with http.post(gql.url, json={"query": Q}) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
        assert len(body["data"]["orders"]["nodes"]) == 1


async def test_graphql_response_media_type(gql, http):
    async with http.post(gql.url, json={"query": Q}, headers={"Accept": GQL_RESPONSE}) as resp:
        assert resp.status == 200
        assert resp.content_type == GQL_RESPONSE


async def test_get_query(gql, http):
    async with http.get(gql.url, params={"query": Q}, headers=PREFLIGHT) as resp:
        assert resp.status == 200
        assert (await resp.json())["data"]["orders"]["nodes"]
    params = {"query": "query($n: Int!) { orders(first: $n) { nodes { id } } }", "variables": json.dumps({"n": 2})}
    async with http.get(gql.url, params=params, headers=PREFLIGHT) as resp:
        assert resp.status == 200
        assert len((await resp.json())["data"]["orders"]["nodes"]) == 2


async def test_parse_error_is_400(gql, http):
    for accept in (GQL_RESPONSE, "application/json"):
        async with http.post(gql.url, json={"query": "{ orders(first: 1) { "}, headers={"Accept": accept}) as resp:
            assert resp.status == 400
            body = await resp.json(content_type=None)
            assert "data" not in body
            assert "Syntax Error" in body["errors"][0]["message"]


async def test_validation_error_is_400(gql, http):
    async with http.post(gql.url, json={"query": "{ nope }"}, headers={"Accept": GQL_RESPONSE}) as resp:
        assert resp.status == 400
        body = await resp.json(content_type=None)
        assert "nope" in body["errors"][0]["message"]
        assert body["errors"][0]["locations"]


async def test_variable_error_is_400(gql, http):
    q = "query($n: Int!) { orders(first: $n) { nodes { id } } }"
    async with http.post(gql.url, json={"query": q, "variables": {"n": "many"}}, headers={"Accept": GQL_RESPONSE}) as resp:
        assert resp.status == 400
        body = await resp.json(content_type=None)
        assert "$n" in body["errors"][0]["message"]


async def test_mutation_over_get_is_405(gql, http):
    async with http.get(gql.url, params={"query": "mutation { x }"}, headers=PREFLIGHT) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"


async def test_unacceptable_accept_is_406(gql, http):
    async with http.post(gql.url, json={"query": Q}, headers={"Accept": "text/csv"}) as resp:
        assert resp.status == 406
        body = await resp.json(content_type=None)
        assert "accept" in body["errors"][0]["message"].lower()


async def test_malformed_json_is_400(gql, http):
    async with http.post(gql.url, data=b'{"query": "{ orders', headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        body = await resp.json(content_type=None)
        assert "Malformed JSON" in body["errors"][0]["message"]


async def test_missing_query_is_400(gql, http):
    async with http.post(gql.url, json={"variables": {}}) as resp:
        assert resp.status == 400
        assert "query" in (await resp.json(content_type=None))["errors"][0]["message"]


async def test_wrong_content_type_is_415(gql, http):
    # With a preflight header (not a CSRF candidate) a form body is still not JSON: 415.
    headers = {"Content-Type": "application/x-www-form-urlencoded", **PREFLIGHT}
    async with http.post(gql.url, data="query=" + Q, headers=headers) as resp:
        assert resp.status == 415


async def test_oversized_body_is_413(plant, http):
    from .servers import GraphQLClient, running_gateway

    async with running_gateway(plant.url, max_body_bytes=2000) as (url, _app):
        client = GraphQLClient(url, http)
        async with http.post(client.url, json={"query": Q + " " * 5000}) as resp:
            assert resp.status == 413
        status, _body = await client.post(Q)
        assert status == 200


async def test_bad_cursor_is_field_error_not_500(gql):
    status, body = await gql.post('{ orders(first: 2, after: "garbage!") { nodes { id } } }')
    assert status == 200
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_first_capped(gql):
    status, body = await gql.post("{ orders(first: 100000) { nodes { id } } }")
    assert status == 200
    assert "at most" in body["errors"][0]["message"]


async def test_graphiql_page_and_health_and_metrics(gql, http):
    async with http.get(gql.url, headers={"Accept": "text/html"}) as resp:
        assert resp.status == 200
        page = await resp.text()
        assert "GraphiQL" in page and "WhereIsMyOrder" in page
    base = gql.url.rsplit("/", 1)[0]
    async with http.get(base + "/healthz") as resp:
        assert resp.status == 200
    await gql.query(Q)
    async with http.get(base + "/metrics") as resp:
        text = await resp.text()
        assert 'ordergraph_source_requests_total{entity_set="A_SalesOrder",outcome="ok",source="erp"}' in text
        assert "ordergraph_request_duration_seconds_bucket" in text
