"""The schema comes from the migrations, and the models and migrations agree (alembic check)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect

from fhirbill.store.migrate import at_head, check
from fhirbill.store.tables import metadata


def test_models_and_migrations_agree(database: tuple[Any, str]) -> None:
    engine = database[0]
    check(engine)  # raises if autogenerate would produce any operation
    assert at_head(engine)


def test_every_table_exists(database: tuple[Any, str]) -> None:
    names = set(inspect(database[0]).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= names


def test_combo_rows_go_and_their_parts_stay(tmp_path: Any) -> None:
    """Observation's combo parameters read their parts' rows now; a database written before keeps
    the parts' rows and loses the combo ones."""
    from sqlalchemy import text

    from fhirbill.store.db import make_engine
    from fhirbill.store.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "10f779ab8d7e")
    rows = [("Observation", p, c) for p in ("code", "combo-code", "component-code") for c in ("8480-6",)]
    rows.append(("Condition", "combo-code", "x"))  # not Observation's: left alone
    with engine.begin() as conn:
        for rt, param, code in rows:
            conn.execute(
                text("INSERT INTO idx_token (rid, res_type, param, code) VALUES (1, :rt, :p, :c)"),
                {"rt": rt, "p": param, "c": code},
            )
        conn.execute(
            text("INSERT INTO idx_quantity (rid, res_type, param, value) VALUES (1, 'Observation', :p, 1)"),
            [{"p": "value-quantity"}, {"p": "combo-value-quantity"}],
        )
    upgrade(engine)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT res_type, param FROM idx_token ORDER BY 1, 2")).all()
        qty = conn.execute(text("SELECT param FROM idx_quantity")).scalars().all()
    engine.dispose()
    assert [tuple(r) for r in left] == [
        ("Condition", "combo-code"),
        ("Observation", "code"),
        ("Observation", "component-code"),
    ]
    assert qty == ["value-quantity"]
