"""Notices with several replicas on one Redis: each notice decided once, sent by one
replica, and by another when the first dies mid-send; dead letters and replay there too."""

from __future__ import annotations

import asyncio
import time

from gateway.notices import NoticeEngine
from gateway.redis_outbox import RedisOutbox

from .notice_receivers import webhook_receiver
from .servers import REDIS_URL
from .test_domain_stage import NOW
from .test_notice_rules import order
from .test_notices import _cli, _decision, _notices_config, until


async def _replicas(prefix: str, n: int = 2, **config):
    outboxes = [await RedisOutbox.open(REDIS_URL, prefix=f"{prefix}notices:", lease_seconds=0.5) for _ in range(n)]
    engines = [NoticeEngine(_notices_config(debounce_seconds=0, **config), o, tick_seconds=0.05) for o in outboxes]
    return outboxes, engines


async def test_replicas_decide_and_send_each_notice_once(prefix) -> None:
    outboxes, (a, b) = await _replicas(prefix)
    async with webhook_receiver() as hook:
        e = await outboxes[0].add_endpoint("C-100", "webhook", hook.url, now=time.time())
        hook.secret = e.secret
        for engine in (a, b):
            await engine.start()
        try:
            promised = NOW.date()
            pending = order(shipped_qty=None, delivered=False, confirmed=promised, requested=promised)
            shipped = order(shipped_qty=100, delivered=False, confirmed=promised, requested=promised)
            delivered = order(shipped_qty=100, delivered=True, confirmed=promised, requested=promised)
            # Both replicas see the same events: the same views, at the same time.
            for view in (pending, shipped, delivered):
                await asyncio.gather(a.observe([(view, None)], NOW), b.observe([(view, None)], NOW))
            rows = await outboxes[0].notices("C-100")
            kinds = sorted(k for n, _ in rows for k in n.kinds)
            assert kinds.count("SHIPPED") == 1 and kinds.count("DELIVERED") == 1, kinds
            await until(lambda: len(hook.received) == len(rows))
            await asyncio.sleep(0.5)  # both replicas keep dispatching: nothing is sent twice
            assert sorted(hook.ids()) == sorted(n.id for n, _ in rows)
            assert (await outboxes[1].counts())["sent"] == len(rows)
        finally:
            for engine in (a, b):
                await engine.stop()
    for o in outboxes:
        await o.close()


async def test_a_delivery_claimed_by_a_replica_that_dies_is_sent_by_another(prefix) -> None:
    outboxes, (_a, b) = await _replicas(prefix)
    async with webhook_receiver() as hook:
        e = await outboxes[0].add_endpoint("C-1", "webhook", hook.url, now=time.time())
        hook.secret = e.secret
        [nid] = await outboxes[0].record([_decision("0000000001", "C-1")], time.time(), 0.0, lambda o, n: o + n)
        await outboxes[0].release_due(time.time())
        claimed = await outboxes[0].due(time.time())  # replica A takes it ... and dies
        assert [n.id for _, n, _ in claimed] == [nid]
        assert await outboxes[1].due(time.time()) == []  # leased to A
        await b.start()
        try:
            await until(lambda: hook.ids() == [nid], timeout=10)  # B sends it once A's lease ends
        finally:
            await b.stop()
    for o in outboxes:
        await o.close()


async def test_dead_letters_and_replay_on_redis(prefix, tmp_path) -> None:
    outboxes, (a, _b) = await _replicas(prefix, n=2, max_attempts=2)
    async with webhook_receiver() as hook:
        e = await outboxes[0].add_endpoint("C-1", "webhook", hook.url, now=time.time())
        hook.secret = e.secret
        hook.fail = 100
        [nid] = await outboxes[0].record([_decision("0000000001", "C-1")], time.time(), 0.0, lambda o, n: o + n)
        await a.start()
        try:
            await until(lambda: a.metrics.dead.labels("webhook")._value.get() == 1)
            [(d, n)] = await outboxes[1].dead()
            assert n.id == nid and d.attempts == 2
            config = tmp_path / "ordergraph.toml"
            config.write_text(f'[scaleout]\nredis_url = "{REDIS_URL}"\nkey_prefix = "{prefix}"\n')
            assert nid in await _cli("notices", "dead", "--config", str(config), "--json")
            hook.fail = 0
            assert "1 deliveries handed back" in await _cli("notices", "replay", "--all", "--config", str(config))
            await until(lambda: hook.ids() == [nid])
            assert await outboxes[1].dead() == []
        finally:
            await a.stop()
    for o in outboxes:
        await o.close()


async def test_two_gateway_replicas_tell_the_customer_once(plant, http, prefix) -> None:
    from gateway.config import DEV_SECRETS
    from sources.simulator.emitter import EventEmitter

    from .servers import GraphQLClient, running_gateway
    from .test_notices import REGISTER, fully_in_delivery
    from .test_scaleout import _scaleout, _send, _settled, _step

    world = plant.world
    world.set_speed(0)
    so = next(s for s in sorted(world.orders_in_state("PACKED")) if fully_in_delivery(world, s))
    customer = world.get("A_SalesOrder", so).sold_to_party
    notices = {"allow_http_webhooks": True, "debounce_seconds": 0.0, "backoff_seconds": 0.05}
    async with webhook_receiver() as hook, running_gateway(
        plant.url, scaleout=_scaleout(prefix, "replica-a"), notices=notices
    ) as (url_a, app_a), running_gateway(plant.url, scaleout=_scaleout(prefix, "replica-b"), notices=notices) as (
        url_b,
        app_b,
    ):
        for app in (app_a, app_b):
            await app.state.gateway.exceptions.settled(60)
        data = await GraphQLClient(url_a, http).query(
            REGISTER, {"input": {"channel": "WEBHOOK", "target": hook.url, "customerId": customer}}
        )
        hook.secret = data["registerNotificationEndpoint"]["signingSecret"]
        # Replica B sees the endpoint replica A stored: one outbox.
        endpoints = await GraphQLClient(url_b, http).query(
            "query($c: ID) { notificationEndpoints(customerId: $c) { target } }", {"c": customer}
        )
        assert [e["target"] for e in endpoints["notificationEndpoints"]] == [hook.url]
        emitter = EventEmitter(world, "", DEV_SECRETS, duplicate_rate=0, reorder_rate=0, notification_rate=0)
        await _send(http, url_a, _step(plant, emitter, so))  # goods issue, to a carrier
        await _settled(app_a)
        for app in (app_a, app_b):
            await app.state.gateway.exceptions.settled(30)
        await until(lambda: any(r.payload["type"] == "order.shipped" for r in hook.received))
        await asyncio.sleep(1.0)  # both replicas keep evaluating and dispatching
        rows = await app_b.state.gateway.notices.outbox.notices(customer, subject=so)
        shipped = [n for n, _ in rows if "SHIPPED" in n.kinds]
        assert len(shipped) == 1
        ids = hook.ids()
        assert sorted(ids) == sorted(set(ids)) and shipped[0].id in ids
