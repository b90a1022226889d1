"""The store's multi-row inserts (fhirbill.store.resources.insert) and the cached index plans."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, text

from fhirbill.fhir.errors import FHIRError
from fhirbill.fhir.searchparams import SearchParamRegistry
from fhirbill.store import resources as repo
from fhirbill.store.db import write_tx
from fhirbill.store.indexing import make_indexer
from fhirbill.store.tables import INDEX_TABLES, resource_versions, resources


def patient(n: int, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": str(n)}], **extra}


def count(server: Any, table: Any = resources) -> int:
    with server.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_rids_stay_unique_across_single_and_multi_row_inserts(server: Any) -> None:
    """Several rows take reserved rids, one row the database's default: both draw from one supply."""
    with write_tx(server.engine) as conn:
        first = repo.create_many(conn, [patient(1), patient(2, id="chosen"), patient(3)], server.indexer)
        one = repo.create(conn, patient(4), server.indexer)
        last = repo.create_many(conn, [patient(5), patient(6)], server.indexer)
    stored = [*first, one, *last]
    assert stored[1].res_id == "chosen"
    rids = [s.rid for s in stored]
    assert rids == sorted(rids) and len(set(rids)) == 6
    with server.engine.connect() as conn:
        rows = conn.execute(select(resources.c.rid, resources.c.res_id)).all()
        versions = conn.execute(select(resource_versions.c.rid, resource_versions.c.res_id)).all()
    assert sorted(rows) == sorted(versions) == sorted((s.rid, s.res_id) for s in stored)


def test_several_new_resources_with_a_taken_id_store_nothing(server: Any) -> None:
    with write_tx(server.engine) as conn:
        repo.create(conn, patient(1), server.indexer, res_id="taken")
    before = {t.name: count(server, t) for t in (resources, resource_versions, *INDEX_TABLES.values())}
    drafts = [repo.draft(patient(i), f"new-{i}", server.indexer, server.engine.dialect) for i in range(40)]
    drafts.append(repo.draft(patient(99), "taken", server.indexer, server.engine.dialect))
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        with write_tx(server.engine) as conn:
            repo.insert(conn, drafts)
    after = {t.name: count(server, t) for t in (resources, resource_versions, *INDEX_TABLES.values())}
    assert after == before


def test_one_new_resource_with_a_taken_id_is_409_and_the_transaction_goes_on(server: Any) -> None:
    """No savepoint: the clash must not abort the transaction (PostgreSQL would refuse every
    later statement), since update-as-create goes on to update the resource."""
    with write_tx(server.engine) as conn:
        repo.create(conn, patient(1), server.indexer, res_id="taken")
    with write_tx(server.engine) as conn:
        with pytest.raises(FHIRError) as err:
            repo.create(conn, patient(2), server.indexer, res_id="taken")
        assert err.value.status == 409
        current = repo.get_current(conn, "Patient", "taken")
        assert current is not None
        repo.update(conn, current, patient(2), server.indexer)
        conn.execute(text("SELECT 1"))
    with server.engine.connect() as conn:
        cur = repo.get_current(conn, "Patient", "taken")
    assert cur is not None and cur.version == 2 and '"value":"2"' in (cur.content or "")
    assert count(server) == 1 and count(server, resource_versions) == 2


def test_drafts_carry_their_index_rows_and_insert_stamps_last_updated(server: Any) -> None:
    d = repo.draft(patient(7, birthDate="1990-05-06"), "d1", server.indexer, server.engine.dialect)
    assert ("identifier", "urn:test", "7", None) in d.index["token"]
    assert [r[0] for r in d.index["date"]] == ["birthdate"]
    with write_tx(server.engine) as conn:
        [s] = repo.insert(conn, [d], when=repo.now_utc().replace(year=2030))
    assert s.last_updated.year == 2030 and '"lastUpdated":"2030-' in (s.content or "")


def test_index_rows_read_back_as_the_indexer_made_them(server: Any) -> None:
    """Drafts convert index values for the driver themselves (dates to text on SQLite, values
    cut to their column); read back through SQLAlchemy's own types, they are what the indexer
    made, apart from the cut."""
    long_code = "x" * 300
    data = patient(8, birthDate="1990-05-06", deceasedDateTime="2020-02-29T23:59:58.123+02:00")
    data["identifier"].append({"system": "urn:test:long", "value": long_code})
    d = repo.draft(data, "d2", server.indexer, server.engine.dialect)
    made = server.indexer(d.doc)
    with write_tx(server.engine) as conn:
        [s] = repo.insert(conn, [d])
    dt, tok = INDEX_TABLES["date"], INDEX_TABLES["token"]
    with server.engine.connect() as conn:
        dates = conn.execute(select(dt.c.param, dt.c.low, dt.c.high).where(dt.c.rid == s.rid)).all()
        codes = conn.scalars(
            select(tok.c.code).where(tok.c.rid == s.rid, tok.c.system == "urn:test:long")
        ).all()
    assert sorted(tuple(r) for r in dates) == sorted(made["date"]) and len(dates) == 2
    assert codes == [long_code[:255]]


def test_no_indexed_parameter_reads_last_updated(server: Any) -> None:
    """Drafts compute index rows before the write transaction stamps meta.lastUpdated, which is
    right only while no index row depends on it (_lastUpdated is a column of `resources`)."""
    readers = [
        (rt, p.code)
        for rt in server.params.resource_types()
        for p in server.params.indexed_for_type(rt).values()
        if "lastUpdated" in (p.expression or "")
    ]
    assert readers == []
    assert server.params.get("Patient", "_lastUpdated").column == "last_updated"


def test_index_plans_follow_new_definitions() -> None:
    """The indexer caches a plan per type; a definition added later must still be indexed."""
    reg = SearchParamRegistry()

    def define(code: str, path: str) -> None:
        reg.add_definition(
            {
                "resourceType": "SearchParameter",
                "url": f"http://example.org/SearchParameter/{code}",
                "code": code,
                "base": ["Patient"],
                "type": "token",
                "expression": path,
            }
        )

    define("gender", "Patient.gender")
    index = make_indexer(reg, "http://example.org/fhir")
    pat = {"resourceType": "Patient", "gender": "female", "active": True}
    assert index(pat)["token"] == [("gender", None, "female", None)]
    define("active", "Patient.active")
    assert index(pat)["token"] == [("gender", None, "female", None), ("active", None, "true", None)]


def test_get_many_reads_current_rows_in_chunks(server: Any) -> None:
    """Ids across several 500-id chunks; deleted rows come back marked, unknown ids do not."""
    with write_tx(server.engine) as conn:
        stored = repo.create_many(conn, [patient(n) for n in range(1203)], server.indexer)
        gone = repo.mark_deleted(conn, stored[7])
    ids = [s.res_id for s in stored] + ["no-such-id"]
    with server.engine.connect() as conn:
        found = repo.get_many(conn, "Patient", ids)
        assert repo.get_many(conn, "Claim", ids[:3]) == {}
    assert set(found) == {s.res_id for s in stored}
    assert found[gone.res_id].deleted and found[gone.res_id].content is None
    assert found[stored[1000].res_id].content == stored[1000].content
