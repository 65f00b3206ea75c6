"""A repeated ``POST /graphql`` is answered from the response cache by the HTTP server
itself (``gateway/server.py``, ``GraphQLHttp.at_once``), before any ASGI work: the bytes on
the wire are those the full path sends, admission still holds (token, scope, rate budget,
CSRF), and every request it does not take (a miss, a large body, ``Expect: 100-continue``,
pipelining, ``Origin``) is answered the usual way.

The tests talk raw HTTP/1.1 over a socket, so they see the exact bytes and can pipeline."""

from __future__ import annotations

import asyncio
import re

from gateway.auth import mint_token
from gateway.config import AuthConfig, LimitsConfig

from .servers import running_gateway

SECRET = "test-secret-for-hs256-tokens-only"
QUERY = "query($id: ID!) { order(id: $id) { id customerId stage } }"


def _request(body: bytes, *, token: str | None = None, extra: tuple[str, ...] = (), content_type: str = "application/json") -> bytes:
    lines = ["POST /graphql HTTP/1.1", "Host: test", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes, bytes]:
    """(status, headers without ``date``, body, the raw bytes without the date line)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b": ")
            headers[name.lower()] = value
    body = await asyncio.wait_for(reader.readexactly(int(headers[b"content-length"])), 10)
    raw = re.sub(rb"date: [^\r]*\r\n", b"", head) + body
    headers.pop(b"date", None)
    return status, headers, body, raw


async def _exchange(url: str, *requests: bytes, together: bool = False) -> list[tuple[int, dict[bytes, bytes], bytes, bytes]]:
    """Send ``requests`` on one connection (all in one write when ``together``)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        out = []
        if together:
            writer.write(b"".join(requests))
            await writer.drain()
            for _ in requests:
                out.append(await _read_response(reader))
        else:
            for r in requests:
                writer.write(r)
                await writer.drain()
                out.append(await _read_response(reader))
        return out
    finally:
        writer.close()


def _body(so: str, pad: int = 0) -> bytes:
    return b'{"query": "%s", "variables": {"id": "%s"}}' % (QUERY.encode(), so.encode()) + b" " * pad


async def test_a_cached_answer_goes_out_at_once_with_the_full_paths_bytes(plant):
    async with running_gateway(plant.url) as (url, app):
        http = app.state.gateway.http
        so = sorted(plant.world.sales_orders)[0]
        body = _body(so)
        [(status, headers, first, raw_full)] = await _exchange(url, _request(body))
        assert status == 200 and b'"stage"' in first and http.answered_at_once == 0
        [(status, _h, again, raw_fast)] = await _exchange(url, _request(body))
        assert http.answered_at_once == 1
        # the same status line, headers (but the date) and body as the full path sent
        assert raw_fast == raw_full and again == first
        assert headers[b"content-type"] == b"application/json"
        # A request the fast path leaves alone (a CORS Origin) is answered alike, from the cache.
        hits = app.state.gateway.responses.hits
        [(status, _h, _b, raw_origin)] = await _exchange(url, _request(body, extra=("Origin: http://elsewhere",)))
        assert (status, raw_origin) == (200, raw_full)
        assert http.answered_at_once == 1 and app.state.gateway.responses.hits == hits + 1
        # The media type is negotiated as on the full path.
        [(status, h, graphql_body, _raw)] = await _exchange(
            url, _request(body, extra=("Accept: application/graphql-response+json",))
        )
        assert status == 200 and h[b"content-type"] == b"application/graphql-response+json" and graphql_body == first
        [(status, _h, _b, _raw)] = await _exchange(url, _request(body, extra=("Accept: text/html",)))
        assert status == 406
        # Keep-alive: several on one connection, and pipelined requests in one write, in order.
        other = sorted(plant.world.sales_orders)[1]
        answers = await _exchange(url, _request(body), _request(_body(other)), _request(body), together=True)
        assert [a[0] for a in answers] == [200, 200, 200]
        assert answers[0][2] == first and answers[2][2] == first and other.encode() in answers[1][2]
        # Connection: close is honoured after an answer given at once.
        count = http.answered_at_once
        [(status, h, closing, _raw)] = await _exchange(url, _request(body, extra=("Connection: close",)))
        assert status == 200 and closing == first and h.get(b"connection") == b"close"
        assert http.answered_at_once == count + 1


async def test_requests_it_does_not_take_go_the_full_way(plant):
    async with running_gateway(plant.url) as (url, app):
        http = app.state.gateway.http
        so = sorted(plant.world.sales_orders)[0]
        [(status, _h, first, _raw)] = await _exchange(url, _request(_body(so)))
        assert status == 200
        # A body over the at-once limit (JSON with trailing blanks): a new question, answered
        # in full, then from the cache by the full path (the server never holds it back).
        big = _body(so, pad=20_000)
        for _ in range(2):
            [(status, _h, answer, _raw)] = await _exchange(url, _request(big))
            assert status == 200 and answer == first
        # Expect: 100-continue gets its 100 and the answer from the full path.
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        body = _body(so)
        head = _request(body, extra=("Expect: 100-continue",))[: -len(body)]
        writer.write(head)
        await writer.drain()
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(b"HTTP/1.1 100")
        writer.write(body)
        status, _h, answer, _raw = await _read_response(reader)
        writer.close()
        assert status == 200 and answer == first
        assert http.answered_at_once == 0
        # A malformed body is the full path's 400, never a cache answer.
        [(status, _h, bad, _raw)] = await _exchange(url, _request(b'{"query": '))
        assert status == 400 and b"errors" in bad


async def test_admission_holds_for_answers_given_at_once(plant):
    auth = AuthConfig(mode="jwt", hs256_secret=SECRET, leeway_seconds=0)
    limits = LimitsConfig(rate_per_second=0.001, rate_burst=4)
    async with running_gateway(plant.url, auth=auth, limits=limits) as (url, app):
        http = app.state.gateway.http
        so = sorted(plant.world.sales_orders)[0]
        owner = plant.world.get("A_SalesOrder", so).sold_to_party
        other = next(
            c for c in sorted({plant.world.get("A_SalesOrder", s).sold_to_party for s in plant.world.sales_orders}) if c != owner
        )
        mine = mint_token(SECRET, role="customer", customer=owner, subject="a")
        theirs = mint_token(SECRET, role="customer", customer=other, subject="b")
        body = _body(so)
        [(status, _h, first, _raw)] = await _exchange(url, _request(body, token=mine))
        assert status == 200 and owner.encode() in first
        [(status, _h, again, _raw)] = await _exchange(url, _request(body, token=mine))
        assert (status, again) == (200, first) and http.answered_at_once == 1
        # Another customer's token with the same bytes: its own scope, never this answer.
        [(status, _h, theirs_answer, _raw)] = await _exchange(url, _request(body, token=theirs))
        assert status == 200 and theirs_answer != first and b'"order":null' in theirs_answer.replace(b" ", b"")
        # No token, a bad token, a CSRF-simple request: refused as on the full path.
        assert (await _exchange(url, _request(body)))[0][0] == 401
        assert (await _exchange(url, _request(body, token=mine + "x")))[0][0] == 401
        assert (await _exchange(url, _request(body, content_type="text/plain")))[0][0] == 400  # CSRF
        assert (await _exchange(url, _request(body, token=mine, content_type="text/plain")))[0][0] == 415
        assert http.answered_at_once == 1
        # The rate budget (burst 4) is spent by answers given at once too: 3 used above (the
        # 415 was admitted first).
        results = await _exchange(url, *[_request(body, token=mine) for _ in range(3)])
        assert [r[0] for r in results] == [200, 429, 429]
        assert results[0][2] == first and b"RATE_LIMITED" in results[2][2]
        assert http.answered_at_once == 2
        assert app.state.gateway.admission.rate.refused == 2  # each refusal counted once, by the full path


def test_a_verified_token_is_kept_a_minute_at_most_and_never_past_its_expiry(monkeypatch):
    import time as _time

    from gateway import auth as auth_module

    now = [_time.time()]
    monkeypatch.setattr(auth_module.time, "time", lambda: now[0])
    authn = auth_module.Authenticator(AuthConfig(mode="jwt", hs256_secret=SECRET, leeway_seconds=0))
    long_lived = mint_token(SECRET, role="integrator", subject="x", ttl_seconds=3600)
    short = mint_token(SECRET, role="integrator", subject="y", ttl_seconds=10)
    assert authn.verified(long_lived) is None  # never seen: checked in full first
    viewer = asyncio.run(authn.viewer(long_lived))
    asyncio.run(authn.viewer(short))
    assert authn.verified(long_lived) == viewer and authn.verified(short) is not None
    now[0] += 11  # past the short token's expiry: no longer taken as verified
    assert authn.verified(short) is None and authn.verified(long_lived) == viewer
    now[0] += auth_module.VERIFIED_KEEP_SECONDS  # a minute on: checked in full again
    assert authn.verified(long_lived) is None
