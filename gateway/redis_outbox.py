"""The notices outbox on Redis, shared by every gateway replica (``[scaleout]``).

Same interface as :class:`gateway.outbox.Outbox` (the SQLite default). What changes with
several replicas, each of which evaluates the orders every event names:

- **Decided once.** ``record`` applies each decision with one Lua script that first
  checks the order's stored state is still the one the decision was made against
  (``Decision.expected``) -- and, when it folds into a waiting notice, that the notice is
  still the same. The first replica's decision wins; the others' change nothing.
- **Released once, deliveries created in the same step.** ``release_due`` is one script:
  due notices leave the waiting set and get one delivery per wanted endpoint atomically.
- **Delivered by one replica at a time, at least once.** ``due`` claims deliveries by
  moving them ``lease_seconds`` ahead in the due set (one script); a replica that dies
  mid-send leaves them to be claimed again when the lease ends, under the same notice id.
- **Told once** (the internal CRITICAL rule): ``watch`` marks what it returns, in a script.

Keys (under ``prefix``, e.g. ``ordergraph:notices:``): ``state:<order>``, ``n:<notice>``
(hash), ``wait:<customer>:<order>`` / ``rel:<customer>:<order>`` (the waiting notice, the
last release time), ``waiting`` / ``due`` / ``dead`` (sorted sets), ``all`` / ``c:<customer>``
/ ``s:<order>`` (notices by seq), ``d:<delivery>`` (hash), ``nd:<notice>`` / ``ed:<endpoint>``
(a notice's, an endpoint's deliveries), ``e:<endpoint>`` (JSON), ``es`` / ``es:<customer>``,
``retrying``, ``sent``, ``watch``, ``told``, ``seq``, ``dseq``. Scripts build key names from
the prefix, so this needs one Redis primary (not Redis Cluster), like the journal.
Durability is Redis's: see ``gateway/redis_journal.py`` on ``appendfsync``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as redis

from .outbox import Decision, Delivery, Endpoint, Merge, Notice, new_notice_id

_RECORD = """
local P = ARGV[1]
local skey = P .. 'state:' .. ARGV[2]
local cur = redis.call('GET', skey)
if (cur or '') ~= ARGV[4] then return 0 end
local mode = ARGV[6]
local wkey = P .. 'wait:' .. ARGV[3] .. ':' .. ARGV[2]
if mode == 'merge' then
  local wid = ARGV[7]
  if redis.call('GET', wkey) ~= wid then return 0 end
  local nkey = P .. 'n:' .. wid
  if redis.call('HGET', nkey, 'items') ~= ARGV[8] then return 0 end
  redis.call('HSET', nkey, 'items', ARGV[9], 'context', ARGV[10], 'status', ARGV[11])
  redis.call('HINCRBY', nkey, 'decisions', 1)
  if ARGV[11] == 'cancelled' then
    redis.call('DEL', wkey)
    redis.call('ZREM', P .. 'waiting', wid)
  end
elseif mode == 'new' then
  if redis.call('EXISTS', wkey) == 1 then return 0 end
  local nid = ARGV[7]
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('HSET', P .. 'n:' .. nid, 'id', nid, 'seq', seq, 'customer', ARGV[3], 'subject', ARGV[2],
    'items', ARGV[8], 'context', ARGV[9], 'decisions', 1, 'created_at', ARGV[10], 'send_at', ARGV[11],
    'status', 'waiting', 'released_at', '')
  redis.call('SET', wkey, nid)
  redis.call('ZADD', P .. 'waiting', ARGV[11], nid)
  redis.call('ZADD', P .. 'all', seq, nid)
  redis.call('ZADD', P .. 'c:' .. ARGV[3], seq, nid)
  redis.call('ZADD', P .. 's:' .. ARGV[2], seq, nid)
end
redis.call('SET', skey, ARGV[5])
return 1
"""

_INTERNAL = """
local P = ARGV[1]
local nid = ARGV[2]
local seq = redis.call('INCR', P .. 'seq')
redis.call('HSET', P .. 'n:' .. nid, 'id', nid, 'seq', seq, 'customer', '', 'subject', ARGV[3],
  'items', ARGV[4], 'context', ARGV[5], 'decisions', 1, 'created_at', ARGV[6], 'send_at', ARGV[6],
  'status', 'waiting', 'released_at', '')
redis.call('ZADD', P .. 'waiting', ARGV[6], nid)
redis.call('ZADD', P .. 'all', seq, nid)
redis.call('ZADD', P .. 'c:', seq, nid)
redis.call('ZADD', P .. 's:' .. ARGV[3], seq, nid)
return seq
"""

_RELEASE = """
local P = ARGV[1]
local now = ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', P .. 'waiting', '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, nid in ipairs(ids) do
  local nkey = P .. 'n:' .. nid
  local customer = redis.call('HGET', nkey, 'customer') or ''
  local subject = redis.call('HGET', nkey, 'subject') or ''
  local kinds = {}
  for _, item in ipairs(cjson.decode(redis.call('HGET', nkey, 'items') or '[]')) do kinds[item['kind']] = true end
  local n = 0
  for _, eid in ipairs(redis.call('SMEMBERS', P .. 'es:' .. customer)) do
    local raw = redis.call('GET', P .. 'e:' .. eid)
    if raw then
      local e = cjson.decode(raw)
      local wants = #e['kinds'] == 0
      for _, k in ipairs(e['kinds']) do if kinds[k] then wants = true end end
      if wants then
        local did = redis.call('INCR', P .. 'dseq')
        redis.call('HSET', P .. 'd:' .. did, 'id', did, 'notice_id', nid, 'endpoint_id', eid, 'channel', e['channel'],
          'target', e['target'], 'status', 'pending', 'attempts', 0, 'next_attempt_at', now, 'last_error', '', 'sent_at', '')
        redis.call('ZADD', P .. 'due', now, did)
        redis.call('RPUSH', P .. 'nd:' .. nid, did)
        redis.call('SADD', P .. 'ed:' .. eid, did)
        n = n + 1
      end
    end
  end
  redis.call('ZREM', P .. 'waiting', nid)
  local status = 'no_endpoint'
  if n > 0 then status = 'released' end
  redis.call('HSET', nkey, 'status', status, 'released_at', now)
  if customer ~= '' then
    redis.call('DEL', P .. 'wait:' .. customer .. ':' .. subject)
    redis.call('SET', P .. 'rel:' .. customer .. ':' .. subject, now)
  end
end
return #ids
"""

_CLAIM = """
local P = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', P .. 'due', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))
for _, did in ipairs(ids) do redis.call('ZADD', P .. 'due', ARGV[3], did) end
return ids
"""

_SENT = """
local P = ARGV[1]
local dk = P .. 'd:' .. ARGV[2]
if redis.call('HGET', dk, 'status') ~= 'pending' then return 0 end
redis.call('HSET', dk, 'status', 'sent', 'sent_at', ARGV[3], 'last_error', '')
redis.call('HINCRBY', dk, 'attempts', 1)
redis.call('ZREM', P .. 'due', ARGV[2])
redis.call('SREM', P .. 'retrying', ARGV[2])
redis.call('INCR', P .. 'sent')
return 1
"""

_FAILED = """
local P = ARGV[1]
local dk = P .. 'd:' .. ARGV[2]
if redis.call('HGET', dk, 'status') ~= 'pending' then return 0 end
redis.call('HINCRBY', dk, 'attempts', 1)
redis.call('HSET', dk, 'last_error', ARGV[3])
if ARGV[4] == '' then
  redis.call('HSET', dk, 'status', 'dead')
  redis.call('ZREM', P .. 'due', ARGV[2])
  redis.call('SREM', P .. 'retrying', ARGV[2])
  redis.call('ZADD', P .. 'dead', ARGV[2], ARGV[2])
else
  redis.call('HSET', dk, 'next_attempt_at', ARGV[4])
  redis.call('ZADD', P .. 'due', ARGV[4], ARGV[2])
  redis.call('SADD', P .. 'retrying', ARGV[2])
end
return 1
"""

_REPLAY = """
local P = ARGV[1]
local ids = {}
if ARGV[3] == 'all' then ids = redis.call('ZRANGE', P .. 'dead', 0, -1) else
  for i = 4, #ARGV do table.insert(ids, ARGV[i]) end end
local n = 0
for _, did in ipairs(ids) do
  local dk = P .. 'd:' .. did
  if redis.call('HGET', dk, 'status') == 'dead' then
    redis.call('HSET', dk, 'status', 'pending', 'attempts', 0, 'next_attempt_at', ARGV[2])
    redis.call('ZREM', P .. 'dead', did)
    redis.call('ZADD', P .. 'due', ARGV[2], did)
    n = n + 1
  end
end
return n
"""

_REMOVE_ENDPOINT = """
local P = ARGV[1]
local eid = ARGV[2]
local raw = redis.call('GET', P .. 'e:' .. eid)
if not raw then return 0 end
local e = cjson.decode(raw)
redis.call('DEL', P .. 'e:' .. eid)
redis.call('SREM', P .. 'es:' .. e['customer'], eid)
redis.call('SREM', P .. 'es', eid)
for _, did in ipairs(redis.call('SMEMBERS', P .. 'ed:' .. eid)) do
  local dk = P .. 'd:' .. did
  local status = redis.call('HGET', dk, 'status')
  if status == 'pending' or status == 'dead' then
    redis.call('HSET', dk, 'status', 'dropped', 'last_error', 'endpoint removed')
    redis.call('ZREM', P .. 'due', did)
    redis.call('ZREM', P .. 'dead', did)
    redis.call('SREM', P .. 'retrying', did)
  end
end
return 1
"""

_WATCH = """
local P = ARGV[1]
local W, T = P .. 'watch', P .. 'told'
local now, after = tonumber(ARGV[2]), tonumber(ARGV[3])
local wanted = {}
for i = 4, #ARGV do wanted[ARGV[i]] = true end
for _, eid in ipairs(redis.call('HKEYS', W)) do
  if not wanted[eid] then redis.call('HDEL', W, eid); redis.call('SREM', T, eid) end
end
for i = 4, #ARGV do redis.call('HSETNX', W, ARGV[i], ARGV[2]) end
local due = {}
for _, eid in ipairs(redis.call('HKEYS', W)) do
  local since = redis.call('HGET', W, eid)
  if tonumber(since) <= now - after and redis.call('SISMEMBER', T, eid) == 0 then
    redis.call('SADD', T, eid)
    table.insert(due, eid)
    table.insert(due, since)
  end
end
return due
"""


def _f(value: Any) -> float | None:
    return float(value) if value not in (None, "") else None


def _notice(h: dict[str, str]) -> Notice:
    return Notice(
        id=h["id"],
        seq=int(h["seq"]),
        customer=h["customer"],
        subject=h["subject"],
        items=orjson.loads(h["items"]),
        context=orjson.loads(h["context"]),
        decisions=int(h["decisions"]),
        created_at=float(h["created_at"]),
        send_at=float(h["send_at"]),
        status=h["status"],
        released_at=_f(h.get("released_at")),
    )


def _delivery(h: dict[str, str]) -> Delivery:
    return Delivery(
        id=int(h["id"]),
        notice_id=h["notice_id"],
        endpoint_id=h["endpoint_id"],
        channel=h["channel"],
        target=h["target"],
        status=h["status"],
        attempts=int(h["attempts"]),
        next_attempt_at=float(h["next_attempt_at"] or 0),
        last_error=h.get("last_error") or None,
        sent_at=_f(h.get("sent_at")),
    )


def _endpoint(raw: str) -> Endpoint:
    d = orjson.loads(raw)
    return Endpoint(
        d["id"], d["customer"], d["channel"], d["target"], d["secret"], d["language"], tuple(d["kinds"]),
        d["created_at"], d["created_by"],
    )  # fmt: skip


class RedisOutbox:
    """The outbox on Redis: the interface of ``gateway.outbox.Outbox``."""

    def __init__(self, client: redis.Redis, prefix: str, url: str, lease_seconds: float) -> None:
        self._r = client
        self.prefix = prefix
        self.path = f"{url} ({prefix}*)"
        self.lease_seconds = lease_seconds
        self._record = client.register_script(_RECORD)
        self._internal = client.register_script(_INTERNAL)
        self._release = client.register_script(_RELEASE)
        self._claim = client.register_script(_CLAIM)
        self._sent = client.register_script(_SENT)
        self._failed = client.register_script(_FAILED)
        self._replay = client.register_script(_REPLAY)
        self._remove = client.register_script(_REMOVE_ENDPOINT)
        self._watch = client.register_script(_WATCH)

    @classmethod
    async def open(cls, url: str, *, prefix: str = "ordergraph:notices:", lease_seconds: float = 60.0) -> RedisOutbox:
        client = redis.from_url(url, decode_responses=True)
        await client.ping()
        return cls(client, prefix, url, lease_seconds)

    async def close(self) -> None:
        await self._r.aclose()

    # --- order state and decisions ------------------------------------------------------

    async def states(self, sales_orders: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(sales_orders)
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            values = await self._r.mget([f"{self.prefix}state:{so}" for so in chunk])
            out.update({so: orjson.loads(v) for so, v in zip(chunk, values, strict=True) if v})
        return out

    async def record(self, decisions: list[Decision], now: float, window: float, merge: Merge) -> list[str]:
        """Apply each decision if the order's state is still the one it was made against."""
        ids: list[str] = []
        P = self.prefix
        for d in decisions:
            expected = orjson.dumps(d.expected).decode() if d.expected is not None else ""
            new_state = orjson.dumps(d.state).decode()
            context = orjson.dumps(d.context).decode()
            if not d.items:
                await self._record(args=[P, d.sales_order, d.customer, expected, new_state, "state"])
                continue
            waiting = await self._r.get(f"{P}wait:{d.customer}:{d.sales_order}")
            if waiting:
                old_items = await self._r.hget(f"{P}n:{waiting}", "items") or "[]"
                merged = merge(orjson.loads(old_items), d.items)
                args = [P, d.sales_order, d.customer, expected, new_state, "merge", waiting, old_items,
                        orjson.dumps(merged).decode(), context, "waiting" if merged else "cancelled"]  # fmt: skip
                nid = waiting
            else:
                last = _f(await self._r.get(f"{P}rel:{d.customer}:{d.sales_order}"))
                send_at = now if last is None else max(now, last + window)
                nid = new_notice_id()
                args = [P, d.sales_order, d.customer, expected, new_state, "new", nid,
                        orjson.dumps(merge([], d.items)).decode(), context, repr(now), repr(send_at)]  # fmt: skip
            if await self._record(args=args):
                ids.append(nid)
        return ids

    async def add_internal(self, subject: str, items: list[dict[str, Any]], context: dict[str, Any], now: float) -> str:
        nid = new_notice_id()
        await self._internal(
            args=[self.prefix, nid, subject, orjson.dumps(items).decode(), orjson.dumps(context).decode(), repr(now)]
        )
        return nid

    # --- release and delivery ----------------------------------------------------------

    async def release_due(self, now: float) -> int:
        return int(await self._release(args=[self.prefix, repr(now), 500]))

    async def due(self, now: float, limit: int = 50) -> list[tuple[Delivery, Notice, Endpoint | None]]:
        """Claim due deliveries for ``lease_seconds`` (another replica takes them after)."""
        ids = await self._claim(args=[self.prefix, repr(now), repr(now + self.lease_seconds), limit])
        out = []
        for did in ids:
            h = await self._r.hgetall(f"{self.prefix}d:{did}")
            if not h:
                continue
            d = _delivery(h)
            n = await self._r.hgetall(f"{self.prefix}n:{d.notice_id}")
            if not n:
                continue
            raw = await self._r.get(f"{self.prefix}e:{d.endpoint_id}")
            out.append((d, _notice(n), _endpoint(raw) if raw else None))
        return out

    async def mark_sent(self, delivery_id: int, now: float) -> None:
        await self._sent(args=[self.prefix, delivery_id, repr(now)])

    async def mark_failed(self, delivery_id: int, error: str, next_attempt_at: float | None) -> None:
        await self._failed(
            args=[self.prefix, delivery_id, error[:500], "" if next_attempt_at is None else repr(next_attempt_at)]
        )

    async def dead(self, limit: int = 100) -> list[tuple[Delivery, Notice]]:
        out = []
        for did in await self._r.zrange(f"{self.prefix}dead", 0, limit - 1):
            h = await self._r.hgetall(f"{self.prefix}d:{did}")
            if not h:
                continue
            d = _delivery(h)
            n = await self._r.hgetall(f"{self.prefix}n:{d.notice_id}")
            if n:
                out.append((d, _notice(n)))
        return out

    async def replay(self, delivery_ids: list[int] | None, now: float) -> int:
        which = ["all"] if delivery_ids is None else ["ids", *map(str, delivery_ids)]
        return int(await self._replay(args=[self.prefix, repr(now), *which]))

    async def counts(self) -> dict[str, int]:
        P = self.prefix
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.zcard(f"{P}due").scard(f"{P}retrying").get(f"{P}sent").zcard(f"{P}dead").zcard(f"{P}waiting")
            pending, retrying, sent, dead, waiting = await pipe.execute()
        return {"pending": pending, "retrying": retrying, "sent": int(sent or 0), "dead": dead, "waiting": waiting}

    async def notices(
        self, customer: str | None, *, subject: str | None = None, limit: int = 50
    ) -> list[tuple[Notice, list[Delivery]]]:
        P = self.prefix
        key = f"{P}s:{subject}" if subject is not None else f"{P}c:{customer}" if customer is not None else f"{P}all"
        out = []
        for nid in await self._r.zrevrange(key, 0, (limit * 20 if subject and customer is not None else limit) - 1):
            h = await self._r.hgetall(f"{P}n:{nid}")
            if not h:
                continue
            n = _notice(h)
            if customer is not None and n.customer != customer:
                continue
            ds = [_delivery(await self._r.hgetall(f"{P}d:{did}")) for did in await self._r.lrange(f"{P}nd:{nid}", 0, -1)]
            out.append((n, ds))
            if len(out) >= limit:
                break
        return out

    # --- endpoints -----------------------------------------------------------------------

    async def add_endpoint(
        self,
        customer: str,
        channel: str,
        target: str,
        *,
        kinds: Iterable[str] = (),
        language: str | None = None,
        created_by: str = "",
        now: float,
        endpoint_id: str | None = None,
        secret: str | None = None,
    ) -> Endpoint:
        e = Endpoint.new(
            customer, channel, target, kinds=kinds, language=language, created_by=created_by, now=now,
            endpoint_id=endpoint_id, secret=secret,
        )  # fmt: skip
        await self._put(e)
        return e

    async def _put(self, e: Endpoint) -> None:
        P = self.prefix
        raw = orjson.dumps({
            "id": e.id, "customer": e.customer, "channel": e.channel, "target": e.target, "secret": e.secret,
            "language": e.language, "kinds": list(e.kinds), "created_at": e.created_at, "created_by": e.created_by,
        })  # fmt: skip
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.set(f"{P}e:{e.id}", raw).sadd(f"{P}es:{e.customer}", e.id).sadd(f"{P}es", e.id)
            await pipe.execute()

    async def endpoints(self, customer: str | None) -> list[Endpoint]:
        P = self.prefix
        ids = await self._r.smembers(f"{P}es" if customer is None else f"{P}es:{customer}")
        if not ids:
            return []
        raws = await self._r.mget([f"{P}e:{i}" for i in ids])
        return sorted((_endpoint(r) for r in raws if r), key=lambda e: (e.created_at, e.id))

    async def endpoint(self, endpoint_id: str) -> Endpoint | None:
        raw = await self._r.get(f"{self.prefix}e:{endpoint_id}")
        return _endpoint(raw) if raw else None

    async def update_endpoint(self, endpoint_id: str, *, kinds: Iterable[str] | None, language: str | None | bool) -> None:
        e = await self.endpoint(endpoint_id)
        if e is None:
            return
        if kinds is not None:
            e = Endpoint(e.id, e.customer, e.channel, e.target, e.secret, e.language, tuple(kinds), e.created_at, e.created_by)
        if language is not False:
            e = Endpoint(e.id, e.customer, e.channel, e.target, e.secret, language or None, e.kinds, e.created_at, e.created_by)  # type: ignore[arg-type]
        await self._put(e)

    async def remove_endpoint(self, endpoint_id: str) -> bool:
        return bool(await self._remove(args=[self.prefix, endpoint_id]))

    # --- CRITICAL exceptions watched -----------------------------------------------------

    async def watch(self, unacknowledged: set[str], now: float, after: float) -> list[tuple[str, float]]:
        flat = await self._watch(args=[self.prefix, repr(now), repr(after), *sorted(unacknowledged)])
        return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]

