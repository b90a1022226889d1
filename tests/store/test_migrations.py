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
