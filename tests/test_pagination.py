"""Every kind of cursor, from its one codec in ``resolvers/pagination.py``: each reads back
what it sealed, refuses another kind's cursor and anything made up with BAD_USER_INPUT."""

from __future__ import annotations

import pytest
from graphql import GraphQLError

from resolvers import pagination as p

KINDS = {
    "order": (lambda c: p.encode_order_cursor(c, "4711"), p.decode_order_cursor, "4711"),
    "sorted": (
        lambda c: p.encode_sorted_cursor(c, "DAYS_LATE", (3, "4711")),
        lambda c, cursor: p.decode_sorted_cursor(c, "DAYS_LATE", cursor),
        (3, "4711"),
    ),
    "board": (lambda c: p.encode_board_cursor(c, (2, 1234.5, "MACHINE_DOWN:mes:WC-20")), p.decode_board_cursor, (2, 1234.5, "MACHINE_DOWN:mes:WC-20")),
    "transition": (lambda c: p.encode_transition_cursor(c, 17), p.decode_transition_cursor, 17),
    "change": (lambda c: p.encode_change_cursor(c, 42, "4711"), p.decode_change_cursor, (42, "4711")),
    "history": (lambda c: p.encode_history_cursor(c, 9), p.decode_history_cursor, 9),
    "workflow": (lambda c: p.encode_workflow_cursor(c, 5), p.decode_workflow_cursor, 5),
}


def _bad_input(call) -> GraphQLError:
    with pytest.raises(GraphQLError) as caught:
        call()
    assert caught.value.extensions == {"code": "BAD_USER_INPUT"}
    return caught.value


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_cursor_reads_back_what_it_sealed_and_nothing_else(kind: str) -> None:
    cursors = p.Cursors.random()
    encode, decode, position = KINDS[kind]
    cursor = encode(cursors)
    assert decode(cursors, cursor) == position
    assert encode(cursors) != cursor  # a fresh nonce each time: nothing to read off a cursor
    for other, (other_encode, _decode, _position) in KINDS.items():
        if other != kind:  # the kind is bound in: another kind's cursor never reads as this one
            _bad_input(lambda other_encode=other_encode: decode(cursors, other_encode(cursors)))
    _bad_input(lambda: decode(cursors, "made-up"))
    _bad_input(lambda: decode(p.Cursors.random(), cursor))  # another gateway's key


def test_a_sorted_cursor_is_for_its_own_sort_only() -> None:
    cursors = p.Cursors.random()
    cursor = p.encode_sorted_cursor(cursors, "DAYS_LATE", (3, "4711"))
    error = _bad_input(lambda: p.decode_sorted_cursor(cursors, "VALUE", cursor))
    assert "same sort" in error.message


def test_a_transition_cursor_is_never_negative() -> None:
    cursors = p.Cursors.random()
    forged = cursors.seal(p.TRANSITION_CURSOR, "-1")  # only this module could seal it
    _bad_input(lambda: p.decode_transition_cursor(cursors, forged))


def test_page_info_takes_its_ends_from_the_edges() -> None:
    info = p.page_info(["a", "b", "c"], has_next=True, has_previous=False)
    assert (info.start_cursor, info.end_cursor, info.has_next_page, info.has_previous_page) == ("a", "c", True, False)
    empty = p.page_info([], has_next=False, has_previous=True)
    assert (empty.start_cursor, empty.end_cursor, empty.has_previous_page) == (None, None, True)
