"""The floor: a bare Flask + SQLAlchemy app doing the least a FHIR store must do, served like fhirbill.

One table (type, id, patient, text). POST inserts the request's JSON text by key, one INSERT and
a commit; GET by id selects it; search selects by the indexed patient column; POST /bundle
inserts every entry's resource text in one transaction. No validation, no versions, no search
index: what is left is HTTP, JSON and the database, which fhirbill cannot avoid either.
It uses fhirbill's `make_engine`, so the database settings are the same (SQLite: WAL,
synchronous=NORMAL, BEGIN IMMEDIATE for writes; PostgreSQL: the same pool).

    FLOOR_DATABASE_URL=... gunicorn bench.floor:app
"""

from __future__ import annotations

import os
import uuid

import orjson
from flask import Flask, Response, request
from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text, insert, select

from fhirbill.store.db import make_engine, read_tx, write_tx

metadata = MetaData()
floor_resources = Table(
    "floor_resources",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("patient", String(200)),
    Column("content", Text, nullable=False),
    Index("floor_key", "res_type", "res_id", unique=True),
    Index("floor_patient", "res_type", "patient"),
)
JSON = "application/fhir+json"


def prepare(url: str) -> None:
    """Create the floor's table (once, before the workers start)."""
    engine = make_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    engine.dispose()


def _patient(data: dict) -> str | None:
    ref = data.get("patient") or (data.get("subject") if data.get("resourceType") != "Patient" else None)
    return ref.get("reference") if isinstance(ref, dict) else None


def create_app(url: str) -> Flask:
    """The floor app over one database."""
    app = Flask(__name__)
    engine = make_engine(url)
    t = floor_resources

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', mimetype="application/json")

    @app.post("/fhir/<rt>")
    def create(rt: str) -> Response:
        text = request.get_data()
        data = orjson.loads(text)
        rid = uuid.uuid4().hex
        with write_tx(engine) as conn:
            conn.execute(
                insert(t),
                {"res_type": rt, "res_id": rid, "patient": _patient(data), "content": text.decode()},
            )
        return Response(text, 201, {"Location": f"/fhir/{rt}/{rid}"}, mimetype=JSON)

    @app.get("/fhir/<rt>/<rid>")
    def read(rt: str, rid: str) -> Response:
        with read_tx(engine) as conn:
            text = conn.execute(
                select(t.c.content).where(t.c.res_type == rt, t.c.res_id == rid)
            ).scalar_one_or_none()
        if text is None:
            return Response(b'{"resourceType":"OperationOutcome"}', 404, mimetype=JSON)
        return Response(text, mimetype=JSON)

    @app.get("/fhir/<rt>")
    def search(rt: str) -> Response:
        patient = request.args["patient"]
        patient = patient if "/" in patient else f"Patient/{patient}"
        count = int(request.args.get("_count", 20))
        with read_tx(engine) as conn:
            rows = conn.execute(
                select(t.c.res_id, t.c.content)
                .where(t.c.res_type == rt, t.c.patient == patient)
                .order_by(t.c.pk)
                .limit(count)
            ).all()
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"fullUrl": f"/fhir/{rt}/{r.res_id}", "resource": orjson.Fragment(r.content)} for r in rows
            ],
        }
        return Response(orjson.dumps(bundle), mimetype=JSON)

    @app.post("/bundle")
    def bundle() -> Response:
        entries = orjson.loads(request.get_data()).get("entry") or []
        rows = []
        for e in entries:
            res = e["resource"]
            rows.append(
                {
                    "res_type": res["resourceType"],
                    "res_id": uuid.uuid4().hex,
                    "patient": _patient(res),
                    "content": orjson.dumps(res).decode(),
                }
            )
        with write_tx(engine) as conn:
            conn.execute(insert(t), rows)
        return Response(orjson.dumps({"stored": len(rows)}), mimetype="application/json")

    return app


app = create_app(os.environ["FLOOR_DATABASE_URL"]) if "FLOOR_DATABASE_URL" in os.environ else None
