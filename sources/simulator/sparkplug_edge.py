"""The simulated plant's shop floor as a Sparkplug B edge node on a real MQTT broker.

One edge node (``edge_node``, in ``group``) with one device per work centre, as a plant's
line controller or an Ignition/Kepware gateway would publish it:

- on connect: NBIRTH (``bdSeq``, ``Node Control/Rebirth``) and one DBIRTH per work centre
  with ``State`` (RUNNING / DOWN), ``DownSince`` and ``ExpectedUpAt``, each with its alias;
- a work centre going down or up: DDATA with the changed metrics by alias only;
- the broker publishes NDEATH (the will, same ``bdSeq``) if the node drops off; a clean
  stop publishes NDEATH itself;
- NCMD ``Node Control/Rebirth`` = true: NBIRTH and every DBIRTH again (``seq`` from 0).

Every message's ``timestamp`` is the plant's time, so business times agree with the
simulated MES that the gateway re-reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import socket
import ssl
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import aiomqtt

from ..records import WorkCenter
from ..sparkplug import DataType, Metric, Payload, SparkplugError, decode_payload, encode_payload
from .world import Change, World

log = logging.getLogger("ordergraph.simulator.sparkplug")

STATE, DOWN_SINCE, EXPECTED_UP = ("State", 1), ("DownSince", 2), ("ExpectedUpAt", 3)


@dataclasses.dataclass(slots=True)
class EdgeStats:
    connects: int = 0
    births: int = 0  # NBIRTH sent (the first and every rebirth)
    rebirths: int = 0  # rebirth commands obeyed
    published: int = 0  # every message


class SparkplugEdge:
    """Publishes the world's work centres over Sparkplug B (see the module doc)."""

    def __init__(
        self,
        world: World,
        url: str,
        *,
        group: str = "Plant1000",
        edge_node: str = "plant-1000",
        client_id: str | None = None,
        qos: int = 1,
    ) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme in ("mqtts", "ssl")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.world = world
        self.group = group
        self.edge_node = edge_node
        self.client_id = client_id or f"ordergraph-plant-{edge_node}-{os.getpid()}"
        self.qos = qos
        self.stats = EdgeStats()
        self.ready = asyncio.Event()  # births published on the current connection
        self._bd_seq = 0
        self._seq = -1
        self._queue: asyncio.Queue[Change] = asyncio.Queue()
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._sending = asyncio.Lock()  # a rebirth's births are not interleaved with DDATA

    def topic(self, kind: str, device: str | None = None) -> str:
        tail = f"/{device}" if device else ""
        return f"spBv1.0/{self.group}/{kind}/{self.edge_node}{tail}"

    def start(self) -> None:
        self._unsubscribe = self.world.subscribe(self._on_change)
        self._task = asyncio.create_task(self._run(), name="plant-sparkplug-edge")

    async def close(self) -> None:
        """Stop publishing; a connected node says NDEATH first (a clean disconnect sends no will)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        client = self._client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
                async with asyncio.timeout(2):
                    await client.publish(self.topic("NDEATH"), self._ndeath(), qos=self.qos)
        if self._task is not None:
            self._task.cancel()
            # A client whose connection broke oddly may not finish its goodbye: bounded.
            await asyncio.wait({self._task}, timeout=5)

    async def drop(self) -> None:
        """Lose the connection without a goodbye (tests): the broker sends the will."""
        client = self._client
        if client is not None:
            sock = client._client.socket()  # noqa: SLF001 -- a pulled cable has no API
            if sock is not None:
                # Shut down, not closed: the client reads the end of the stream and
                # reconnects; the broker sees no DISCONNECT and publishes the will.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    # --- messages ----------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % 256
        return self._seq

    def _ndeath(self) -> bytes:
        return encode_payload(Payload(None, [Metric("bdSeq", None, DataType.Int64, self._bd_seq)]))

    def _work_centers(self) -> list[WorkCenter]:
        return sorted(
            (r for r in self.world.tables["A_WorkCenter"].records() if isinstance(r, WorkCenter)),
            key=lambda r: r.work_center,
        )

    @staticmethod
    def _metrics(wc: WorkCenter, at: dt.datetime, *, names: bool) -> list[Metric]:
        def m(spec: tuple[str, int], datatype: DataType, value: object) -> Metric:
            return Metric(spec[0] if names else None, spec[1], datatype, value, timestamp=at)

        return [
            m(STATE, DataType.String, "DOWN" if wc.state == "DOWN" else "RUNNING"),
            m(DOWN_SINCE, DataType.DateTime, wc.down_since),
            m(EXPECTED_UP, DataType.DateTime, wc.expected_up_at),
        ]

    async def _births(self, client: aiomqtt.Client) -> None:
        now = self.world.now()
        self._seq = -1
        node = [
            Metric("bdSeq", None, DataType.Int64, self._bd_seq),
            Metric("Node Control/Rebirth", 0, DataType.Boolean, False),
        ]
        await self._send(client, self.topic("NBIRTH"), Payload(now, node, seq=self._next_seq()))
        self.stats.births += 1
        for wc in self._work_centers():
            at = wc.last_change_date_time or now
            payload = Payload(now, self._metrics(wc, at, names=True), seq=self._next_seq())
            await self._send(client, self.topic("DBIRTH", wc.work_center), payload)

    async def _send(self, client: aiomqtt.Client, topic: str, payload: Payload) -> None:
        await client.publish(topic, encode_payload(payload), qos=self.qos)
        self.stats.published += 1

    def _on_change(self, change: Change) -> None:
        if change.entity_set == "A_WorkCenter":
            self._queue.put_nowait(change)

    # --- the connection ----------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.5
        while True:
            self._bd_seq = (self._bd_seq + 1) % 256 if self.stats.connects else self._bd_seq
            will = aiomqtt.Will(self.topic("NDEATH"), self._ndeath(), qos=self.qos)
            try:
                async with aiomqtt.Client(
                    self.host, self.port, identifier=self.client_id, will=will, clean_session=True, keepalive=15,
                    timeout=10.0, username=self.username, password=self.password,
                    tls_context=ssl.create_default_context() if self.tls else None,
                ) as client:
                    self._client = client
                    self.stats.connects += 1
                    await client.subscribe(self.topic("NCMD"), qos=self.qos)
                    async with self._sending:
                        await self._births(client)
                    self.ready.set()
                    delay = 0.5
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._commands(client))
                        tg.create_task(self._changes(client))
            except* aiomqtt.MqttError as group:
                log.warning("plant sparkplug: broker %s:%s: %s; reconnecting in %.1f s",
                            self.host, self.port, group.exceptions[0], delay)
            finally:
                self._client = None
                self.ready.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            try:
                command = decode_payload(payload)
            except SparkplugError as exc:
                log.warning("plant sparkplug: NCMD not understood: %s", exc)
                continue
            rebirth = command.metric("Node Control/Rebirth")
            if rebirth is not None and rebirth.value is True:
                log.info("plant sparkplug: rebirth requested")
                self.stats.rebirths += 1
                async with self._sending:
                    await self._births(client)

    async def _changes(self, client: aiomqtt.Client) -> None:
        while True:
            change = await self._queue.get()
            record = change.record
            if not isinstance(record, WorkCenter):
                continue
            async with self._sending:
                metrics = self._metrics(record, change.occurred_at, names=False)
                payload = Payload(change.occurred_at, metrics, seq=self._next_seq())
                await self._send(client, self.topic("DDATA", record.work_center), payload)
