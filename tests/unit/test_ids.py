"""Resource ids: unique, unpredictable, and ordered by the second they were minted in."""

from __future__ import annotations

import re

import pytest

from fhirbill.fhir import ids


def test_ids_lead_with_their_second_and_sort_by_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids.time, "time", lambda: 1_764_000_000.9)
    same_second = [ids.new_id() for _ in range(1000)]
    monkeypatch.setattr(ids.time, "time", lambda: 1_764_000_001.0)
    later = ids.new_id()
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in [*same_second, later])
    assert {i[:10] for i in same_second} == {f"{1_764_000_000:010x}"}
    assert len(set(same_second)) == 1000
    assert max(same_second) < later
    # The rest is not a counter: consecutive ids share no run of their random part.
    assert len({i[10:14] for i in same_second}) > 900
