"""Which notifications a batch's MGET of cancellation marks found cancelled."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.channel.cancelled import cancelled_among


@given(st.dictionaries(st.text(min_size=1), st.booleans()))
def test_an_id_is_cancelled_exactly_when_its_mark_is_set(marks: dict[str, bool]) -> None:
    nids = list(marks)
    values = [b"1" if marked else None for marked in marks.values()]
    assert cancelled_among(nids, values) == {n for n, marked in marks.items() if marked}
