"""Transaction Bundles store their new resources in one multi-row insert per table (issue 3
performance): the rows must be exactly those of the one-at-a-time create, a failure anywhere
must leave nothing, and the CPU work must happen before the write transaction when it can."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from helpers import DATA, FHIR_JSON, load
from sqlalchemy import func, insert, select

from fhirbill.api import audit, bundles
from fhirbill.api import interactions as ia
from fhirbill.store.tables import INDEX_TABLES, create_guards, resource_versions, resources

ALL_TABLES = [resources, resource_versions, create_guards, *INDEX_TABLES.values()]


def bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def post_entry(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    if full_url:
        e["fullUrl"] = full_url
    return e


def row_counts(server: Any) -> dict[str, int]:
    with server.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in ALL_TABLES}


def raw_rows(server: Any, rid: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of one resource as the driver reads it (dates as SQLite stores them), without
    the rid and res_id that differ between copies."""
    out = {}
    with server.engine.connect() as conn:
        ph = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        for t in (resources, resource_versions, *INDEX_TABLES.values()):
            keep = [c.name for c in t.columns if c.name not in ("rid", "res_id")]
            got = conn.exec_driver_sql(f"SELECT {', '.join(keep)} FROM {t.name} WHERE rid = {ph}", (rid,))
            out[t.name] = sorted((tuple(r) for r in got), key=repr)
    return out


def comparable(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Rows with the stored JSON parsed, less the id and lastUpdated that differ between copies."""
    out = dict(rows)
    for name in ("resources", "resource_versions"):
        cols = [c.name for c in (resources if name == "resources" else resource_versions).columns]
        keep = [c for c in cols if c not in ("rid", "res_id")]
        at, text = keep.index("last_updated"), keep.index("content")
        fixed = []
        for r in rows[name]:
            doc = None  # a current version's row: its text is in `resources`
            if r[text] is not None:
                doc = orjson.loads(r[text])
                doc.pop("id")
                doc["meta"].pop("lastUpdated")
            fixed.append(tuple(doc if i == text else None if i == at else v for i, v in enumerate(r)))
        out[name] = fixed
    return out


def rid_of(server: Any, res_type: str, res_id: str) -> int:
    with server.engine.connect() as conn:
        q = select(resources.c.rid).where(resources.c.res_type == res_type, resources.c.res_id == res_id)
        return int(conn.execute(q).scalar_one())


def located(entry: dict[str, Any]) -> tuple[str, str]:
    res_type, res_id = entry["response"]["location"].split("/")[:2]
    return res_type, res_id


def test_bulk_insert_stores_what_one_at_a_time_creates_store(client: Any, server: Any) -> None:
    """Every row of a Synthea record loaded as a transaction equals the row that POSTing the same
    resource on its own stores (bar ids and times): content, version, every index table."""
    record = load(next((DATA / "synthea").glob("Kermit*.json")))
    r = client.post("/fhir", json=record, headers=FHIR_JSON)
    assert r.status_code == 200, r.json
    created = [located(e) for e in r.json["entry"]]
    assert len(created) == len(record["entry"]) > 100
    kinds_seen: set[str] = set()
    for res_type, res_id in created:
        stored = client.get(f"/fhir/{res_type}/{res_id}").json
        again = client.post(f"/fhir/{res_type}", json=stored, headers=FHIR_JSON)
        assert again.status_code == 201, again.json
        bulk = raw_rows(server, rid_of(server, res_type, res_id))
        single = raw_rows(server, rid_of(server, res_type, again.json["id"]))
        assert comparable(bulk) == comparable(single), (res_type, res_id)
        kinds_seen |= {name for name, rows in bulk.items() if rows}
    assert {"idx_token", "idx_reference", "idx_date", "idx_string", "idx_quantity"} <= kinds_seen


def _odd_resources() -> list[dict[str, Any]]:
    """Resources that reach every index table, with values longer than their index columns."""
    long = "x" * 600
    return [
        {
            "resourceType": "Patient",
            "name": [{"family": "Ó" + long, "given": ["Ana"]}],
            "identifier": [{"system": "urn:test:" + long, "value": long}],
            "birthDate": "1970-03",
            "meta": {"profile": ["http://example.org/StructureDefinition/" + long]},
        },
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": "urn:uuid:10000000-0000-4000-8000-000000000001"},
            "occurrenceDateTime": "2026-01-02T03:04:05.678+02:00",
            "prediction": [{"probabilityDecimal": 0.123456789}],
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart " + long}]
            },
            "subject": {"reference": "urn:uuid:10000000-0000-4000-8000-000000000001"},
            "valueQuantity": {"value": 72.5, "unit": "beats/min", "system": "http://unitsofmeasure.org"},
            "effectivePeriod": {"start": "2026-01-02", "end": "2026-01-03T10:00:00Z"},
        },
        {"resourceType": "ValueSet", "status": "active", "url": "http://example.org/vs/" + long},
    ]


def test_stored_rows_are_what_sqlalchemy_would_store(client: Any, server: Any) -> None:
    """The inserts bypass SQLAlchemy's parameter processing: the rows must still be identical to
    what its Core inserts store (dates as SQLite text, decimals, values cut to their column)."""
    docs = _odd_resources()
    entries = [post_entry(d) for d in docs]
    entries[0]["fullUrl"] = "urn:uuid:10000000-0000-4000-8000-000000000001"
    r = client.post("/fhir", json=bundle(entries), headers=FHIR_JSON)
    assert r.status_code == 200, r.json
    kinds_seen: set[str] = set()
    for entry in r.json["entry"]:
        res_type, res_id = located(entry)
        rid = rid_of(server, res_type, res_id)
        with server.engine.begin() as conn:
            row = conn.execute(select(resources).where(resources.c.rid == rid)).one()
            copy_id = f"copy-{res_id}"
            new_row = {k: v for k, v in row._asdict().items() if k != "rid"} | {"res_id": copy_id}
            copy = conn.execute(insert(resources).returning(resources.c.rid), new_row).scalar_one()
            version = conn.execute(select(resource_versions).where(resource_versions.c.rid == rid)).one()
            conn.execute(insert(resource_versions), version._asdict() | {"rid": copy, "res_id": copy_id})
            for kind, values in server.indexer(orjson.loads(row.content)).items():
                table = INDEX_TABLES[kind]
                cols = list(table.columns)[3:]
                params = [
                    {"rid": copy, "res_type": res_type, "param": v[0]}
                    | {
                        c.name: cut(x, getattr(c.type, "length", None))
                        for c, x in zip(cols, v[1:], strict=True)
                    }
                    for v in values
                ]
                if params:
                    conn.execute(insert(table), params)
        stored = raw_rows(server, rid)
        assert stored == raw_rows(server, copy), res_type
        kinds_seen |= {name for name, rows in stored.items() if rows}
    assert kinds_seen == {"resources", "resource_versions", *(t.name for t in INDEX_TABLES.values())}


def cut(value: Any, limit: int | None) -> Any:
    """What the store did before its inserts bypassed SQLAlchemy: index strings cut to the column."""
    return value[:limit] if limit and isinstance(value, str) else value


@pytest.mark.parametrize("failure", ["stale If-Match", "dangling reference", "deleted reference"])
def test_a_failure_after_the_bulk_insert_leaves_no_row_anywhere(
    client: Any, server: Any, failure: str
) -> None:
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
    before = row_counts(server)
    p = "urn:uuid:20000000-0000-4000-8000-000000000000"
    entries = [post_entry({"resourceType": "Patient", "name": [{"family": "Bulk"}]}, p)]
    entries += [
        post_entry(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": p},
            }
        )
        for _ in range(40)
    ]
    if failure == "stale If-Match":
        entries.append(
            {
                "resource": {"resourceType": "Patient", "id": "p1", "gender": "male"},
                "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": 'W/"9"'},
            }
        )
        status = 412
    elif failure == "dangling reference":
        entries[20]["resource"]["subject"] = {"reference": "Patient/nobody"}
        entries.append(entries.pop(20))
        status = 422
    else:  # a reference to a resource the same transaction deletes
        entries.append({"request": {"method": "DELETE", "url": "Patient/p1"}})
        entries[20]["resource"]["subject"] = {"reference": "Patient/p1"}
        entries.append(entries.pop(20))
        status = 422
    r = client.post("/fhir", json=bundle(entries), headers=FHIR_JSON)
    assert r.status_code == status, r.json
    assert r.json["issue"][0]["expression"][0].startswith(f"Bundle.entry[{len(entries) - 1}]")
    assert row_counts(server) == before
    assert client.get("/fhir/Patient/p1").status_code == 200


def test_references_to_resources_the_transaction_writes_need_no_lookup(
    client: Any, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only references outside the transaction's own writes are looked up."""
    looked_up: list[tuple[str, str]] = []
    real = bundles.repo.existing

    def existing(conn: Any, keys: Any) -> set[tuple[str, str]]:
        keys = list(keys)
        looked_up.extend(keys)
        return real(conn, keys)

    monkeypatch.setattr(bundles.repo, "existing", existing)
    assert (
        client.put("/fhir/Organization/o1", json={"resourceType": "Organization", "id": "o1"}).status_code
        == 201
    )
    p = "urn:uuid:30000000-0000-4000-8000-000000000000"
    entries = [
        post_entry({"resourceType": "Patient", "managingOrganization": {"reference": "Organization/o1"}}, p),
        post_entry(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": p},
            }
        ),
        {
            "resource": {
                "resourceType": "Organization",
                "id": "o2",
                "partOf": {"reference": "Organization/o1"},
            },
            "request": {"method": "PUT", "url": "Organization/o2"},
        },
        post_entry(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "serviceProvider": {"reference": "Organization/o2"},
            }
        ),
    ]
    r = client.post("/fhir", json=bundle(entries), headers=FHIR_JSON)
    assert r.status_code == 200, r.json
    assert sorted(set(looked_up)) == [("Organization", "o1")]


def _timeline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    events: list[str] = []
    real_tx, real_check, real_draft, real_event = bundles.write_tx, ia.check, ia.draft, audit.draft

    @contextmanager
    def write_tx(engine: Any) -> Any:
        events.append("begin")
        with real_tx(engine) as conn:
            yield conn
        events.append("commit")

    def check(*a: Any, **k: Any) -> Any:
        events.append("check")
        return real_check(*a, **k)

    def draft(*a: Any, **k: Any) -> Any:
        events.append("draft")
        return real_draft(*a, **k)

    def event(*a: Any, **k: Any) -> Any:
        events.append("audit")
        return real_event(*a, **k)

    monkeypatch.setattr(bundles, "write_tx", write_tx)
    monkeypatch.setattr(ia, "check", check)
    monkeypatch.setattr(ia, "draft", draft)
    monkeypatch.setattr(audit, "draft", event)
    return events


def test_cpu_work_runs_before_the_write_transaction(
    app: Any, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation, drafting (index rows) and the AuditEvent happen before the write lock is taken."""
    app.config["FHIRBILL_AUDIT"] = True
    events = _timeline(monkeypatch)
    entries = [post_entry({"resourceType": "Patient", "name": [{"family": f"T{i}"}]}) for i in range(3)]
    entries.append(
        {
            "resource": {"resourceType": "Patient", "id": "put-1"},
            "request": {"method": "PUT", "url": "Patient/put-1"},
        }
    )
    r = client.post("/fhir", json=bundle(entries), headers=FHIR_JSON)
    assert r.status_code == 200, r.json
    assert events == ["check"] * 4 + ["draft"] * 3 + ["audit", "begin", "commit"]


def test_conditional_entries_are_planned_inside_the_write_transaction(
    app: Any, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ifNoneExist decides ids, so rewriting and validation wait for the transaction."""
    app.config["FHIRBILL_AUDIT"] = True
    events = _timeline(monkeypatch)
    entries = [post_entry({"resourceType": "Patient", "name": [{"family": "T"}]}) for _ in range(2)]
    entries[0]["request"]["ifNoneExist"] = "name=T"
    r = client.post("/fhir", json=bundle(entries), headers=FHIR_JSON)
    assert r.status_code == 200, r.json
    assert events == ["begin", "check", "check", "draft", "draft", "audit", "commit"]


def test_an_entry_resource_that_is_not_an_object_is_400(client: Any, server: Any) -> None:
    """Reference rewriting walks objects only; anything else is left to validation to refuse."""
    before = row_counts(server)
    entries = [
        post_entry({"resourceType": "Patient"}),
        {"resource": ["Patient"], "request": {"method": "DELETE", "url": "Patient/x"}},
    ]
    r = client.post("/fhir", json=bundle(entries), headers=FHIR_JSON)
    assert r.status_code == 400, r.json
    assert r.json["issue"][0]["expression"] == ["Bundle.entry[1]"]
    assert row_counts(server) == before
