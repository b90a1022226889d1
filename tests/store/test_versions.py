"""Every version's text is stored once: the current one in `resources`, replaced ones in
`resource_versions`; vread and history give back each version exactly as it was written."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from fhirbill.fhir.errors import FHIRError
from fhirbill.store import resources as repo
from fhirbill.store.db import write_tx
from fhirbill.store.tables import resource_versions


def patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}]}


def version_texts(server: Any, rid: int) -> dict[int, str | None]:
    """What resource_versions itself holds for each version."""
    v = resource_versions
    with server.engine.connect() as conn:
        rows = conn.execute(select(v.c.version, v.c.content).where(v.c.rid == rid)).all()
    return {int(r[0]): r[1] for r in rows}


def test_each_version_reads_back_as_written_and_its_text_is_stored_once(server: Any) -> None:
    written = {}
    with write_tx(server.engine) as conn:
        cur = repo.create(conn, patient("One"), server.indexer, res_id="p")
        written[1] = cur.content
    assert version_texts(server, cur.rid) == {1: None}  # the text is in `resources` only

    for family in ("Two", "Three"):
        with write_tx(server.engine) as conn:
            cur = repo.update(conn, cur, patient(family), server.indexer)
            written[cur.version] = cur.content
    with write_tx(server.engine) as conn:
        deleted = repo.mark_deleted(conn, cur)
    with write_tx(server.engine) as conn:
        again = repo.update(conn, deleted, patient("Five"), server.indexer)
        written[again.version] = again.content

    assert version_texts(server, cur.rid) == {1: written[1], 2: written[2], 3: written[3], 4: None, 5: None}
    with server.engine.connect() as conn:
        for version, text in written.items():
            got = repo.get_version(conn, "Patient", "p", version)
            assert got is not None and got.content == text and not got.deleted
        tomb = repo.get_version(conn, "Patient", "p", 4)
        assert tomb is not None and tomb.deleted and tomb.content is None and tomb.method == "DELETE"
        history = repo.history(conn, rid=cur.rid, limit=10)
    assert [h.version for h in history] == [5, 4, 3, 2, 1]
    assert {h.version: h.content for h in history if not h.deleted} == written


def test_an_update_that_fails_its_version_check_moves_no_text(server: Any) -> None:
    with write_tx(server.engine) as conn:
        stale = repo.create(conn, patient("One"), server.indexer, res_id="p")
    with write_tx(server.engine) as conn:
        repo.update(conn, stale, patient("Two"), server.indexer)
    with pytest.raises(FHIRError) as err:
        with write_tx(server.engine) as conn:
            repo.update(conn, stale, patient("Late"), server.indexer)
    assert err.value.status == 412
    assert version_texts(server, stale.rid) == {1: stale.content, 2: None}
