"""The exception board's order, kept as the open set changes (issue 21).

``Query.exceptions`` answers a page of the tracker's exceptions in board order
(``ExceptionRecord.sort_key``: most severe first, then value at risk, then id). Sorting the
whole open set on every request made each page cost in proportion to the plant (every
sort key sums its record's affected orders). Instead the tracker keeps its open and
recently cleared records in ``Records`` maps: each notes the ids written or removed, and
its ``Board`` (the records' sort keys in order, with indexes by order and by customer)
catches up with those on the next read. Records are replaced, never changed in place
(``gateway/exception_tracker.py`` builds each new version on a copy), so a record's key,
computed once when it enters the board, stays its key.

``select`` answers one request from the boards: a page after a cursor, whether more
follow, and (lazily, only when asked) the count and the records in board order for the
totals. Its answer is the one sorting everything would give:

- records whose orders are escalated (internal viewers see those orders one severity
  higher: few) are taken out of the board's order, escalated, and merged back in by
  their new key;
- a minimum severity keeps a prefix of the board (severity leads the key), found by bisection;
- a customer (the viewer's own, or a filter's) narrows to that customer's records by the
  index, which are then shown, filtered and the page picked without sorting them all;
- other filters walk the board once in order, without sorting.
"""

from __future__ import annotations

import bisect
import collections
import heapq
import itertools
from collections.abc import Callable, Collection, Iterable, Iterator
from operator import itemgetter
from typing import Any

from .exception_rules import ExceptionRecord

Key = tuple[int, float, str]
Item = tuple[Key, ExceptionRecord]
_first = itemgetter(0)


class BoardEntry:
    """One record on the board, with what the board reads of it often (computed once)."""

    __slots__ = ("_work_centers", "key", "record")

    def __init__(self, record: ExceptionRecord) -> None:
        self.record = record
        self.key: Key = record.sort_key()
        self._work_centers: frozenset[str] | None = None

    @property
    def work_centers(self) -> frozenset[str]:
        if self._work_centers is None:
            self._work_centers = frozenset(self.record.work_centers)
        return self._work_centers


class Board:
    """Records in board order, and by sales order and customer."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.entries: dict[str, BoardEntry] = {}
        self._by_order: dict[str, set[str]] = {}
        self._by_customer: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def put(self, record: ExceptionRecord) -> None:
        self.drop(record.id)
        entry = self.entries[record.id] = BoardEntry(record)
        bisect.insort(self.keys, entry.key)
        self._index(entry)

    def drop(self, exception_id: str) -> None:
        entry = self.entries.pop(exception_id, None)
        if entry is None:
            return
        i = bisect.bisect_left(self.keys, entry.key)
        assert self.keys[i] == entry.key
        del self.keys[i]
        for so in entry.record.affected:
            ids = self._by_order[so]
            ids.discard(exception_id)
            if not ids:
                del self._by_order[so]
        for customer in entry.record.customers:
            ids = self._by_customer[customer]
            ids.discard(exception_id)
            if not ids:
                del self._by_customer[customer]

    def rebuild(self, records: Iterable[ExceptionRecord]) -> None:
        """The board of ``records`` from scratch (many changed at once: one sort); an entry
        whose record is the same object is kept."""
        old = self.entries
        self.entries = {}
        for r in records:
            entry = old.get(r.id)
            self.entries[r.id] = entry if entry is not None and entry.record is r else BoardEntry(r)
        self.keys = sorted(e.key for e in self.entries.values())
        self._by_order = {}
        self._by_customer = {}
        for entry in self.entries.values():
            self._index(entry)

    def _index(self, entry: BoardEntry) -> None:
        eid = entry.record.id
        for so in entry.record.affected:
            self._by_order.setdefault(so, set()).add(eid)
        for customer in entry.record.customers:
            self._by_customer.setdefault(customer, set()).add(eid)

    def with_orders(self, orders: Collection[str]) -> set[str]:
        """Ids of the records hitting any of ``orders``."""
        out: set[str] = set()
        for so in orders:
            out |= self._by_order.get(so, set())
        return out

    def of_customer(self, customer: str) -> set[str]:
        """Ids of the records hitting an order of ``customer``."""
        return self._by_customer.get(customer, set())

    def at_least(self, rank: int) -> Iterator[BoardEntry]:
        """Entries of severity rank ``rank`` or more, in board order: the board's prefix
        (severity leads the key), found by bisection."""
        return self.walk(0, bisect.bisect_left(self.keys, (-rank + 1,)))

    def walk(self, lo: int = 0, hi: int | None = None) -> Iterator[BoardEntry]:
        """Entries from position ``lo`` to ``hi``, in board order."""
        entries = self.entries
        for key in itertools.islice(self.keys, lo, hi):
            yield entries[key[2]]


class _Noting:
    """Mixin for a map of records by id: notes every id written or removed, and brings its
    board up to date with those when read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._changed: set[str] = set()
        self._board = Board()
        super().__init__(*args, **kwargs)
        self._changed.update(self)  # type: ignore[arg-type]

    def __setitem__(self, key: str, value: ExceptionRecord) -> None:
        self._changed.add(key)
        super().__setitem__(key, value)  # type: ignore[misc]

    def __delitem__(self, key: str) -> None:
        self._changed.add(key)
        super().__delitem__(key)  # type: ignore[misc]

    def pop(self, key: str, *default: Any) -> Any:
        self._changed.add(key)
        return super().pop(key, *default)  # type: ignore[misc]

    def popitem(self, *args: Any, **kwargs: Any) -> Any:
        key, value = super().popitem(*args, **kwargs)  # type: ignore[misc]
        self._changed.add(key)
        return key, value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:  # type: ignore[operator]
            self[key] = default
        return self[key]  # type: ignore[index]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        self._changed.update(self)  # type: ignore[arg-type]
        super().clear()  # type: ignore[misc]

    def board(self) -> Board:
        """The records in board order, up to date with every change so far."""
        changed, board = self._changed, self._board
        if not changed:
            return board
        if len(changed) > 64 and len(changed) * 8 > len(board) + len(self):  # type: ignore[arg-type]
            board.rebuild(self.values())  # type: ignore[attr-defined]
        else:
            for eid in changed:
                record = self.get(eid)  # type: ignore[attr-defined]
                if record is None:
                    board.drop(eid)
                else:
                    board.put(record)
        changed.clear()
        return board


class Records(_Noting, dict[str, ExceptionRecord]):
    """The open set: exception records by id, with their board."""


class OrderedRecords(_Noting, collections.OrderedDict[str, ExceptionRecord]):
    """Recently cleared exceptions, oldest first, with their board."""


# --- answering a request ---------------------------------------------------------------------


class Selection:
    """One request's choice from the boards: the page, and lazily the count and the chosen
    records in board order (``totalCount``, ``totalValueAtRisk``)."""

    def __init__(
        self,
        page: list[Item],
        has_next: bool,
        count: Callable[[], int],
        ordered: Callable[[], Iterable[Item]],
    ) -> None:
        self.page = page  # (sort key, record) of each on the page
        self.has_next = has_next
        self._count = count
        self._ordered = ordered
        self._count_value: int | None = None
        self._totals: tuple[float, str] | None = None

    def count(self) -> int:
        if self._count_value is None:
            self._count_value = self._count()
        return self._count_value

    def totals(self) -> tuple[float, str]:
        """Sum of the chosen records' value at risk, added one by one in board order (as
        over a sort of them all: the same float), and the currency of the first."""
        if self._totals is None:
            total: float = 0
            currency = None
            for key, r in self._ordered():
                if currency is None:
                    currency = r.currency
                total += -key[1]  # the key holds the negated value at risk
            self._totals = (total, currency or "EUR")
        return self._totals


def select(
    boards: list[Board],
    *,
    first: int,
    start: Key | None,
    show: Callable[[ExceptionRecord], ExceptionRecord | None],
    chosen: Callable[[ExceptionRecord], bool],
    escalated: Collection[str] = frozenset(),
    customers: set[str] | None = None,
    min_rank: int | None = None,
    kinds: Collection[Any] | None = None,
    work_center: str | None = None,
    keep_id: Callable[[str], bool] | None = None,
) -> Selection:
    """The records of ``boards`` that ``show`` turns into what the viewer sees and
    ``chosen`` keeps, in board order of what is shown (equal keys: in the boards' order);
    the page is the first ``first`` after ``start``.

    ``show`` must return a record unchanged (the same object) unless it hits an
    ``escalated`` order or ``customers`` is given (then only records of those customers
    are read at all). Without ``customers``, ``chosen`` must be exactly ``min_rank`` (the
    least severity rank), ``kinds``, ``work_center`` and ``keep_id`` (on ids), which the
    board applies to its own entries.
    """
    if customers is not None:
        return _select_candidates(boards, first, start, show, chosen, customers)
    limit = None if min_rank is None else (-min_rank + 1,)  # keys below it: severe enough
    # Records hitting escalated orders: shown (escalated), filtered and ordered apart.
    moved = [b.with_orders(escalated) if escalated else set() for b in boards]
    apart: list[list[Item]] = []
    for b, ids in zip(boards, moved, strict=True):
        items = []
        for eid in ids:
            v = show(b.entries[eid].record)
            if v is not None and chosen(v):
                items.append((v.sort_key(), v))
        items.sort(key=_first)
        apart.append(items)
    bounds = [len(b) if limit is None else bisect.bisect_left(b.keys, limit) for b in boards]

    def keep(entry: BoardEntry) -> bool:
        r = entry.record
        if kinds and r.kind not in kinds:
            return False
        if work_center is not None and work_center not in entry.work_centers:
            return False
        return keep_id is None or keep_id(r.id)

    if kinds or work_center is not None or keep_id is not None:
        # One walk over the candidates in order (a prefix with a minimum severity): no sort.
        matched = [
            [(e.key, e.record) for e in b.walk(0, hi) if e.record.id not in ids and keep(e)]
            for b, ids, hi in zip(boards, moved, bounds, strict=True)
        ]

        def stream(lo_key: Key | None) -> Iterator[Item]:
            parts = []
            for items, extra in zip(matched, apart, strict=True):
                lo = 0 if lo_key is None else bisect.bisect_right(items, lo_key, key=_first)
                parts.append(_merge(itertools.islice(items, lo, None), extra, lo_key))
            return _chain(parts)

        def count() -> int:
            return sum(len(m) for m in matched) + sum(len(a) for a in apart)

    else:

        def stream(lo_key: Key | None) -> Iterator[Item]:
            parts = []
            for b, ids, hi, extra in zip(boards, moved, bounds, apart, strict=True):
                lo = 0 if lo_key is None else bisect.bisect_right(b.keys, lo_key, 0, hi)
                parts.append(_merge(_items(b.walk(lo, hi), ids), extra, lo_key))
            return _chain(parts)

        def count() -> int:
            n = sum(len(a) for a in apart) + sum(bounds)
            for b, ids in zip(boards, moved, strict=True):
                n -= sum(1 for eid in ids if limit is None or b.entries[eid].key < limit)
            return n

    page_items = list(itertools.islice(stream(start), first + 1))
    return Selection(page_items[:first], len(page_items) > first, count, lambda: stream(None))


def _items(entries: Iterable[BoardEntry], skip: set[str]) -> Iterator[Item]:
    if skip:
        return ((e.key, e.record) for e in entries if e.record.id not in skip)
    return ((e.key, e.record) for e in entries)


def _merge(walk: Iterable[Item], apart: list[Item], lo_key: Key | None) -> Iterator[Item]:
    """One board's walk with its records ordered apart, in key order."""
    if lo_key is not None:
        apart = apart[bisect.bisect_right(apart, lo_key, key=_first) :]
    return heapq.merge(walk, apart, key=_first) if apart else iter(walk)


def _chain(parts: list[Iterator[Item]]) -> Iterator[Item]:
    """The boards' streams in key order; equal keys in the boards' order (a stable sort's)."""
    return parts[0] if len(parts) == 1 else heapq.merge(*parts, key=_first)


def _select_candidates(
    boards: list[Board],
    first: int,
    start: Key | None,
    show: Callable[[ExceptionRecord], ExceptionRecord | None],
    chosen: Callable[[ExceptionRecord], bool],
    customers: set[str],
) -> Selection:
    """Only the records of ``customers``: shown, filtered, and the page picked (no full
    sort). Within a board ids differ, so keys do: any order of its ids gives the same."""
    items: list[Item] = []
    for b in boards:
        ids: set[str] = set()
        for customer in customers:
            ids |= b.of_customer(customer)
        for eid in ids:
            v = show(b.entries[eid].record)
            if v is not None and chosen(v):
                items.append((v.sort_key(), v))
    rest = items if start is None else [it for it in items if it[0] > start]
    page_items = heapq.nsmallest(first + 1, rest, key=_first)
    return Selection(
        page_items[:first],
        len(page_items) > first,
        lambda: len(items),
        lambda: sorted(items, key=_first),
    )
