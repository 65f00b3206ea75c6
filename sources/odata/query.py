"""OData v2 query options: ``$filter`` expressions, a ``Query``, and key batches cut to
fit a URL length limit.

Filters are built, never concatenated by hand, so field names are checked and literals
quoted (``O'Neil`` → ``'O''Neil'``)::

    f = any_of("SalesOrder", ["1", "2"]) & eq("SalesOrderType", "OR")
    Query("A_SalesOrder", filter=f, select=("SalesOrder",), expand=("to_Item/to_ScheduleLine",))

A batch of keys becomes ``(K eq 'a' or K eq 'b' …)``. SAP Gateway and the proxies in front
of it refuse long request lines (commonly 8 KB), so ``chunk_keys`` cuts a batch into as few
queries as fit under ``max_url_length`` once encoded.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from .values import literal

__all__ = ["Filter", "Query", "all_of", "any_of", "chunk_keys", "encode_params", "encode_value", "eq", "field_filter"]

_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*$")
# Characters left as they are in a query value: what SAP Gateway reads unencoded.
_SAFE = "'(),/:$*=@"


def _check_field(name: str) -> str:
    if not isinstance(name, str) or not _FIELD_RE.match(name):
        raise ValueError(f"not an OData property path: {name!r}")
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class Filter:
    """A ``$filter`` expression; combine with ``&`` (and) and ``|`` (or)."""

    text: str
    compound: bool = False  # needs parentheses when combined

    def _operand(self) -> str:
        return f"({self.text})" if self.compound else self.text

    def __and__(self, other: Filter) -> Filter:
        return Filter(f"{self._operand()} and {other._operand()}", compound=True)

    def __or__(self, other: Filter) -> Filter:
        return Filter(f"{self._operand()} or {other._operand()}", compound=True)

    def __str__(self) -> str:
        return self.text


def field_filter(field: str, op: str, value: Any, kind: str | None = None) -> Filter:
    """``field op literal``; ``op`` is one of eq, ne, gt, ge, lt, le."""
    if op not in ("eq", "ne", "gt", "ge", "lt", "le"):
        raise ValueError(f"unsupported operator {op!r}")
    return Filter(f"{_check_field(field)} {op} {literal(value, kind)}")


def eq(field: str, value: Any) -> Filter:
    """``field eq value``."""
    return field_filter(field, "eq", value)


def any_of(field: str, values: Iterable[Any]) -> Filter:
    """``field eq v1 or field eq v2 …`` (one term: no parentheses)."""
    terms = [eq(field, v).text for v in values]
    if not terms:
        raise ValueError("any_of needs at least one value")
    return Filter(" or ".join(terms), compound=len(terms) > 1)


def all_of(filters: Iterable[Filter]) -> Filter:
    """All of ``filters`` joined with ``and``."""
    out: Filter | None = None
    for f in filters:
        out = f if out is None else out & f
    if out is None:
        raise ValueError("all_of needs at least one filter")
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    """One read of an entity set with its system query options."""

    entity_set: str
    filter: Filter | None = None
    select: tuple[str, ...] = ()
    expand: tuple[str, ...] = ()
    orderby: tuple[str, ...] = ()
    top: int | None = None
    skip: int | None = None
    inlinecount: bool = False

    def __post_init__(self) -> None:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.entity_set):
            raise ValueError(f"not an entity set name: {self.entity_set!r}")
        for name in (*self.select, *self.expand):
            _check_field(name)
        for item in self.orderby:
            name, _, direction = item.partition(" ")
            _check_field(name)
            if direction not in ("", "asc", "desc"):
                raise ValueError(f"bad $orderby item {item!r}")
        for name, n in (("$top", self.top), ("$skip", self.skip)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                raise ValueError(f"{name} must be a non-negative integer")

    def params(self) -> list[tuple[str, str]]:
        """The system query options, in SAP's usual order."""
        out: list[tuple[str, str]] = []
        if self.filter is not None:
            out.append(("$filter", self.filter.text))
        if self.select:
            out.append(("$select", ",".join(self.select)))
        if self.expand:
            out.append(("$expand", ",".join(self.expand)))
        if self.orderby:
            out.append(("$orderby", ",".join(self.orderby)))
        if self.top is not None:
            out.append(("$top", str(self.top)))
        if self.skip is not None:
            out.append(("$skip", str(self.skip)))
        if self.inlinecount:
            out.append(("$inlinecount", "allpages"))
        return out

    def replace(self, **changes: Any) -> Query:
        return dataclasses.replace(self, **changes)


def encode_params(params: Sequence[tuple[str, str]]) -> str:
    """``k=v&…`` with values percent-encoded the way SAP Gateway expects (spaces as %20)."""
    return "&".join(f"{quote(k, safe='$')}={encode_value(v)}" for k, v in params)


def encode_value(text: str) -> str:
    """One query value (or key predicate) percent-encoded as in ``encode_params``."""
    return quote(text, safe=_SAFE)


def _encoded_len(text: str) -> int:
    return len(encode_value(text))


def chunk_keys(
    url_of: Any,
    query: Query,
    field: str,
    keys: Sequence[Any],
    *,
    max_url_length: int,
    max_keys: int | None = None,
) -> list[Query]:
    """Split ``field`` ∈ ``keys`` (and ``query.filter``, if any) into queries whose URLs,
    as built by ``url_of(query)``, stay within ``max_url_length`` characters.

    Raises ValueError when even one key does not fit (the limit is too small for the
    rest of the query).
    """
    _check_field(field)
    unique = list(dict.fromkeys(keys))
    if not unique:
        return []
    extra = query.filter
    # The URL without the key terms: the filter is "(<terms>) and <extra>" or "<terms>".
    shell = query.replace(filter=Filter("X" if extra is None else f"(X) and {extra._operand()}"))
    base = len(url_of(shell)) - 1  # minus the placeholder
    separator = _encoded_len(" or ")
    terms = [_encoded_len(eq(field, k).text) for k in unique]

    chunks: list[list[Any]] = []
    current: list[Any] = []
    length = base
    for key, size in zip(unique, terms, strict=True):
        extra_len = size if not current else size + separator
        full = max_keys is not None and len(current) >= max_keys
        if current and (full or length + extra_len > max_url_length):
            chunks.append(current)
            current, length, extra_len = [], base, size
        if base + size > max_url_length:
            raise ValueError(
                f"one {field} filter term makes a {base + size}-character URL, over the {max_url_length} limit"
            )
        current.append(key)
        length += extra_len
    chunks.append(current)

    out = []
    for chunk in chunks:
        keys_filter = any_of(field, chunk)
        f = keys_filter if extra is None else Filter(f"({keys_filter.text}) and {extra._operand()}", compound=True)
        q = query.replace(filter=f)
        if len(url_of(q)) > max_url_length:  # a guard on the arithmetic above
            raise ValueError(f"a chunk of {len(chunk)} {field} keys does not fit in {max_url_length} characters")
        out.append(q)
    return out
