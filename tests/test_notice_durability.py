"""SIGKILL of the gateway process while it delivers notices: after a restart every notice
decided arrives at least once, and a notice that arrives twice carries the same id."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from gateway.outbox import Outbox

from .notice_receivers import webhook_receiver
from .servers import free_socket
from .test_durability import _start, _wait_up
from .test_exceptions import control, emit
from .test_notices import customer_of, fully_in_delivery, until

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a fixed Standard Webhooks secret


async def _decided(path: str) -> dict[str, list[str]]:
    """Notice id → its deliveries' statuses, as the outbox file says."""
    outbox = await Outbox.open(path)
    try:
        return {n.id: [d.status for d in ds] for n, ds in await outbox.notices(None, limit=1000)}
    finally:
        await outbox.close()


async def test_sigkill_during_delivery_every_notice_arrives_with_its_id(plant, http, tmp_path) -> None:
    world = plant.world
    world.set_speed(0)
    orders = [so for so in sorted(world.orders_in_state("PACKED")) if fully_in_delivery(world, so)][:6]
    assert len(orders) >= 3
    outbox_path = str(tmp_path / "notices.sqlite")
    async with webhook_receiver() as hook:
        hook.secret = SECRET
        outbox = await Outbox.open(outbox_path)
        for customer in sorted({customer_of(world, so) for so in orders}):
            await outbox.add_endpoint(customer, "webhook", hook.url, now=time.time(), secret=SECRET)
        await outbox.close()

        sock = free_socket()
        port = sock.getsockname()[1]
        sock.close()
        config = tmp_path / "ordergraph.toml"
        lines = [
            f'[events]\njournal_path = "{tmp_path / "journal.sqlite"}"\n',
            '[auth]\nmode = "open"\n',
            f'[notices]\noutbox_path = "{outbox_path}"\nallow_http_webhooks = true\ndebounce_seconds = 0\n'
            "backoff_seconds = 0.1\nmax_backoff_seconds = 0.5\ntimeout_seconds = 30\n",
        ]
        lines += [f'[sources.{s}]\nbase_url = "{plant.url}/{s}"\n' for s in ("erp", "mes", "wms", "qms", "tms")]
        config.write_text("\n".join(lines))
        url = f"http://127.0.0.1:{port}"

        proc = _start(str(config), port)
        try:
            await _wait_up(http, url, proc)
            # The gateway's first evaluation of every order is its baseline (nothing told).
            outbox = await Outbox.open(outbox_path)
            try:
                for _ in range(300):
                    if len(await outbox.states(orders)) == len(orders):
                        break
                    await asyncio.sleep(0.1)
            finally:
                await outbox.close()
            # The receiver takes each notice and then hangs before answering: the gateway
            # dies with deliveries on the wire, none of them marked sent.
            hook.hold = asyncio.Event()
            for so in orders:
                await emit(http, url, await control(http, plant, f"orders/{so}/advance"))
            await until(lambda: len(hook.received) >= 2, timeout=30)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        before_kill = set(hook.ids())
        hook.hold.set()
        hook.hold = None
        decided = await _decided(outbox_path)
        assert decided and before_kill <= set(decided)
        assert all("sent" not in statuses for nid, statuses in decided.items() if nid in before_kill)

        proc = _start(str(config), port)
        try:
            await _wait_up(http, url, proc)
            # Every notice decided, before and after the restart (events journaled before the
            # kill are applied after it), reaches the receiver.
            async def all_arrived() -> bool:
                decided = await _decided(outbox_path)
                return bool(decided) and all(s and all(x == "sent" for x in s) for s in decided.values()) and set(
                    decided
                ) <= set(hook.ids())

            for _ in range(300):
                if await all_arrived():
                    break
                await asyncio.sleep(0.1)
            assert await all_arrived(), (await _decided(outbox_path), hook.ids())
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)

    ids = hook.ids()
    twice = {nid for nid in ids if ids.count(nid) > 1}
    # The deliveries cut off by the kill were sent again, under the same idempotency key,
    # with the same content.
    assert before_kill <= twice
    for nid in twice:
        payloads = [r.payload for r in hook.received if r.webhook_id == nid]
        assert all(p == payloads[0] for p in payloads)
    assert {so for r in hook.received for so in [r.payload["data"]["orderId"]]} <= set(orders)
    assert hook.rejected == 0
