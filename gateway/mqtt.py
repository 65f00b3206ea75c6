"""The shop floor over MQTT: a broker consumer feeding the event path.

``ShopFloorConsumer`` subscribes to the configured broker (``[mqtt]``) and turns each
message into the MES events a pushed CloudEvent would be (``sources/sparkplug``): machine
state, good and scrap counts, operation confirmations. They go through the same door as
``POST /events`` after its checks (``EventIngress.accept_parsed``): journaled and
deduplicated by source + id, the cache invalidated, subscribers pushed.

Sparkplug B (the default profile), as a secondary host application:

- ``SparkplugHost`` keeps one session per edge node (births, aliases, ``seq``, ``bdSeq``);
- on NDEATH, DDEATH or a ``seq`` gap the work centres of that node (or device) are marked
  STALE (``WorkCenterStaleness``, read by the production section's ``freshness``), a
  notification-only ``WorkCenter.Changed`` event is journaled so the orders on them are
  re-resolved and pushed, and an NCMD ``Node Control/Rebirth`` is published;
- the next DBIRTH (or NBIRTH for node metrics) makes the work centre live again.

The connection is kept with a doubling back-off (``reconnect_min_seconds`` to
``reconnect_max_seconds``, with jitter). The session is clean: messages sent while the
consumer was away are not replayed by the broker, so the first message of a node after a
reconnect shows a ``seq`` gap, and the node is asked for a rebirth — as Sparkplug intends.

The MES stays the system of record: like any event, a shop-floor message makes the gateway
re-read what it names from the MES.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import logging
import os
import random
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from urllib.parse import unquote, urlsplit

import aiomqtt

from sources import mes
from sources.events import EventError, EventRegistry, SourceEvent, cloud_event
from sources.sparkplug import (
    SUBSCRIPTION,
    JsonProfile,
    Outcome,
    ShopFloorError,
    ShopFloorMapper,
    SparkplugHost,
)
from sources.sparkplug.session import Command, Update
from sources.tasks import stop_task

from .config import MqttConfig
from .ingress import EventIngress, Rejection

log = logging.getLogger("ordergraph.mqtt")

_WORK_CENTER = next(t for t in mes.EVENT_TYPES if t.entity == "WorkCenter")
MAX_BATCH = 500  # messages taken from the client's queue for one journal append


@dataclasses.dataclass(frozen=True, slots=True)
class StaleMark:
    """Why and since when a work centre's shop-floor data is not to be trusted."""

    since: dt.datetime
    reason: str


class WorkCenterStaleness(Mapping[str, StaleMark]):
    """Work centres whose shop-floor picture is unreliable (a death or a ``seq`` gap),
    until their next birth. Read-only for everyone but the consumer."""

    def __init__(self) -> None:
        self._marks: dict[str, StaleMark] = {}

    def mark(self, work_center: str, at: dt.datetime, reason: str) -> bool:
        """Mark ``work_center`` stale; False when it already was."""
        if work_center in self._marks:
            return False
        self._marks[work_center] = StaleMark(at, reason)
        return True

    def clear(self, work_center: str) -> bool:
        """The work centre is live again; False when it was not stale."""
        return self._marks.pop(work_center, None) is not None

    def __getitem__(self, key: str) -> StaleMark:
        return self._marks[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._marks)

    def __len__(self) -> int:
        return len(self._marks)


@dataclasses.dataclass(slots=True)
class ConsumerStats:
    connects: int = 0
    disconnects: int = 0
    received: int = 0
    journaled: int = 0  # events handed to the journal (duplicates included)
    duplicates: int = 0  # Sparkplug redeliveries caught by the session
    gaps: int = 0
    deaths: int = 0
    births: int = 0
    rebirths_requested: int = 0
    bad: int = 0  # messages that are not Sparkplug / not the JSON profile
    dropped: int = 0  # events outside the accepted time window


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def broker_address(config: MqttConfig) -> BrokerAddress:
    """Host, port and TLS from ``[mqtt] url``; credentials from the settings, else the URL."""
    parts = urlsplit(config.url)
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=config.username or (unquote(parts.username) if parts.username else None),
        password=config.password or (unquote(parts.password) if parts.password else None),
    )


def tls_context(config: MqttConfig) -> ssl.SSLContext:
    """The TLS context for ``mqtts://``: the system's CAs or ``tls_ca_file``, a client
    certificate when configured."""
    ctx = ssl.create_default_context(cafile=config.tls_ca_file or None)
    if config.tls_cert_file:
        ctx.load_cert_chain(config.tls_cert_file, config.tls_key_file or None)
    if config.tls_insecure:
        ctx.check_hostname = False
    return ctx


class ShopFloorConsumer:
    """Consumes the plant's MQTT broker into the event path (see the module doc)."""

    def __init__(
        self,
        config: MqttConfig,
        ingress: EventIngress,
        registry: EventRegistry,
        staleness: WorkCenterStaleness,
        *,
        plant_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.config = config
        self.ingress = ingress
        self.registry = registry
        self.staleness = staleness
        self.plant_clock = plant_clock
        self.address = broker_address(config)
        self.host = SparkplugHost(rebirth_interval_seconds=config.rebirth_interval_seconds)
        self.mapper = ShopFloorMapper(registry, clock=plant_clock)
        self.json = JsonProfile(config.json_prefix)
        self.stats = ConsumerStats()
        self.connected = asyncio.Event()
        self.client_id = config.client_id or f"ordergraph-{socket.gethostname()}-{os.getpid()}"
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_at: dict[str, dt.datetime] = {}  # newest business time per work centre
        self._stale_ids = itertools.count(1)
        self._run_id = os.urandom(4).hex()  # stale notices stay unique across restarts

    @property
    def subscriptions(self) -> list[str]:
        if self.config.profile == "json":
            return [self.json.subscription]
        if self.config.group:
            return [f"spBv1.0/{self.config.group}/#"]
        return [SUBSCRIPTION]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ordergraph-mqtt-consumer")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        self.connected.clear()

    # --- the connection ----------------------------------------------------------------

    def _client_for(self) -> aiomqtt.Client:
        a = self.address
        return aiomqtt.Client(
            a.host,
            a.port,
            username=a.username,
            password=a.password,
            identifier=self.client_id,
            clean_session=True,
            keepalive=self.config.keepalive_seconds,
            tls_context=tls_context(self.config) if a.tls else None,
            timeout=10.0,
        )

    async def _run(self) -> None:
        delay = self.config.reconnect_min_seconds
        where = f"{self.address.host}:{self.address.port}"
        while True:
            try:
                async with self._client_for() as client:
                    self._client = client
                    for topic in self.subscriptions:
                        await client.subscribe(topic, qos=self.config.qos)
                    self.stats.connects += 1
                    log.info("mqtt: connected to %s as %s; following %s", where, self.client_id, ", ".join(self.subscriptions))
                    self.connected.set()
                    delay = self.config.reconnect_min_seconds
                    await self._consume(client)
            except aiomqtt.MqttError as exc:
                if self.connected.is_set():
                    self.stats.disconnects += 1
                log.warning("mqtt: %s: %s; reconnecting in %.1f s", where, exc, delay)
            except ssl.SSLError as exc:
                log.error("mqtt: TLS to %s failed: %s; retrying in %.1f s", where, exc, delay)
            except Exception:  # whatever it was, the consumer lives on and reconnects
                log.exception("mqtt: consumer failed; reconnecting to %s in %.1f s", where, delay)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.config.reconnect_max_seconds)

    async def _consume(self, client: aiomqtt.Client) -> None:
        messages = client.messages
        while True:
            batch = [await anext(messages)]
            while len(messages) and len(batch) < MAX_BATCH:
                batch.append(await anext(messages))
            events: list[SourceEvent] = []
            for message in batch:
                payload = message.payload
                body = payload if isinstance(payload, bytes) else str(payload or "").encode()
                try:
                    events += await self.handle(str(message.topic), body)
                except aiomqtt.MqttError:
                    raise
                except Exception as exc:  # one message must not stop the consumer
                    log.exception("mqtt: message on %s failed", message.topic)
                    self._bad(str(message.topic), exc)
            await self._journal(events)

    async def _journal(self, events: list[SourceEvent]) -> None:
        """One durable append for a batch; while the journal is away, wait for it (the
        broker holds what arrives meanwhile)."""
        delay = 0.2
        while events:
            try:
                await self.ingress.accept_parsed(events)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("mqtt: could not journal %d events (%s); retrying in %.1f s", len(events), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.stats.journaled += len(events)
            return

    async def publish(self, command: Command) -> None:
        """Publish a command (a rebirth request) if connected; a lost connection is the
        reconnect loop's to mend, and the next gap asks again."""
        client = self._client
        if client is None:
            return
        try:
            await client.publish(command.topic, command.payload, qos=command.qos, retain=command.retain)
        except aiomqtt.MqttError as exc:
            log.warning("mqtt: could not publish %s: %s", command.topic, exc)

    # --- one message ---------------------------------------------------------------------

    async def handle(self, topic: str, payload: bytes) -> list[SourceEvent]:
        """The events of one message (possibly none); staleness and rebirths as a side effect."""
        self.stats.received += 1
        if self.config.profile == "json":
            try:
                events = self.mapper.from_json(topic, payload, prefix=self.json.prefix)
            except (ShopFloorError, EventError) as exc:
                return self._bad(topic, exc)
            return self._checked(events)
        try:
            update = self.host.receive(topic, payload)
        except ShopFloorError as exc:
            return self._bad(topic, exc)
        try:
            events = self.mapper.from_sparkplug(update)
        except EventError as exc:  # e.g. a work-centre id the MES key format refuses
            events = []
            self._bad(topic, exc)
        for problem in self.mapper.problems:
            log.warning("mqtt: %s", problem)
        self.mapper.problems.clear()
        events = self._checked(events)
        events += self._session_changes(update)
        if update.rebirth is not None:
            self.stats.rebirths_requested += 1
            log.info("mqtt: %s (%s): asking %s/%s for a rebirth", topic, update.detail or update.outcome.value,
                     update.topic.group_id, update.topic.edge_node_id)
            await self.publish(update.rebirth)
        return events

    def _session_changes(self, update: Update) -> list[SourceEvent]:
        outcome = update.outcome
        if outcome is Outcome.DUPLICATE:
            self.stats.duplicates += 1
        elif outcome is Outcome.GAP:
            self.stats.gaps += 1
        elif outcome is Outcome.DEATH:
            self.stats.deaths += 1
        elif outcome is Outcome.BIRTH:
            self.stats.births += 1
        t = update.topic
        out = []
        for device in update.became_live:
            wc = self.mapper.profile.work_center_of(t.group_id, t.edge_node_id, device)
            if wc and self.staleness.clear(wc):
                log.info("mqtt: work centre %s is live again (%s)", wc, t)
                notice = self._notice(wc, t.group_id, t.edge_node_id, self._last_at.get(wc) or self.plant_clock())
                if notice is not None:
                    out.append(notice)
        reason = {
            Outcome.DEATH: f"{t.message_type} from {t}",
            Outcome.GAP: f"seq gap on {t.group_id}/{t.edge_node_id}: {update.detail}",
        }.get(outcome, f"{outcome.value.lower()}: {update.detail}")
        marked = []
        for wc in self.mapper.work_centers_of(update):
            at = self._last_at.get(wc) or self.plant_clock()
            if self.staleness.mark(wc, self.plant_clock(), reason):
                marked.append(wc)
                notice = self._notice(wc, t.group_id, t.edge_node_id, at)
                if notice is not None:
                    out.append(notice)
        if marked:
            log.warning("mqtt: STALE until reborn: %s (%s)", ", ".join(marked), reason)
        return out

    def _notice(self, wc: str, group: str, edge: str, at: dt.datetime) -> SourceEvent | None:
        """A notification-only ``WorkCenter.Changed`` at the newest business time seen for
        ``wc``: it applies (equal to the watermark is not stale), invalidates the work
        centre and pushes its orders, whose freshness now says STALE (or, after a birth,
        no longer does)."""
        ce = cloud_event(
            _WORK_CENTER,
            "Changed",
            id=f"spb-session:{group}:{edge}:{wc}:{self._run_id}:{next(self._stale_ids)}",
            source=f"{self.mapper.source_prefix}/{group}/{edge}/mes",
            time=at,
            key=wc,
            data={"WorkCenter": wc},
        )
        try:
            return self.registry.parse(ce, system="mes")
        except EventError as exc:
            log.debug("mqtt: no stale notice for work centre %r: %s", wc, exc)
            return None

    def _checked(self, events: list[SourceEvent]) -> list[SourceEvent]:
        """Events whose business time lies in the accepted window (as at ``POST /events``)."""
        out = []
        for event in events:
            try:
                self.ingress.check_window(event)
            except Rejection as exc:
                self.stats.dropped += 1
                log.warning("mqtt: event dropped: %s", exc.message)
                continue
            wc = event.refs.get("WorkCenter")
            if wc and (wc not in self._last_at or event.occurred_at > self._last_at[wc]):
                self._last_at[wc] = event.occurred_at
            out.append(event)
        return out

    def _bad(self, topic: str, exc: Exception) -> list[SourceEvent]:
        self.stats.bad += 1
        shown = topic if len(topic) <= 120 else f"{topic[:120]}…"
        log.warning("mqtt: message on %s not taken: %s", shown, exc)
        return []
