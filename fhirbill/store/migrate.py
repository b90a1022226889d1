"""Alembic, driven from code: upgrade to head, check for drift, and tell whether we are at head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    """An Alembic Config bound to this engine (env.py picks the connection up)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to `revision`."""
    command.upgrade(alembic_config(engine), revision)


def check(engine: Engine) -> None:
    """Raise if the models and the migrations disagree (alembic check)."""
    command.check(alembic_config(engine))


def at_head(engine: Engine) -> bool:
    """True when the database's revision is the newest migration."""
    heads = set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current == heads


def _revision(message: str) -> None:
    """Autogenerate a migration against a scratch SQLite database at head."""
    import tempfile

    from fhirbill.store.db import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/scratch.db")
        upgrade(engine)
        command.revision(alembic_config(engine), message=message, autogenerate=True)


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "revision":
        _revision(sys.argv[2])
    else:
        sys.exit("usage: python -m fhirbill.store.migrate revision MESSAGE")
