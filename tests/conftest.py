"""Shared fixtures: one migrated database per test session (SQLite file, or a fresh PostgreSQL
schema when FHIRBILL_TEST_DATABASE_URL is set), emptied after every test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from fhirbill import create_app
from fhirbill.settings import Settings
from fhirbill.store import auth_tables  # noqa: F401  (so that _empty clears them too)
from fhirbill.store.db import make_engine
from fhirbill.store.migrate import upgrade
from fhirbill.store.tables import metadata

FIXTURES = Path(__file__).parent / "data"
BASE = "http://127.0.0.1:8080/fhir"


def _postgres_engine(url: str) -> tuple[Engine, str, str]:
    schema = f"test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    sep = "&" if "?" in url else "?"
    scoped = f"{url}{sep}options=-csearch_path%3D{schema}"
    return make_engine(scoped), scoped, schema


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, str]]:
    """A migrated database for the whole session: (engine, url)."""
    pg = os.environ.get("FHIRBILL_TEST_DATABASE_URL")
    if pg:
        engine, url, schema = _postgres_engine(pg)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        engine, schema = make_engine(url), ""
    upgrade(engine)
    yield engine, url
    engine.dispose()
    if pg:
        admin = make_engine(pg)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def settings(database: tuple[Engine, str], tmp_path: Path) -> Settings:
    """Settings pointing at the test database."""
    return Settings(instance_dir=tmp_path, database_url=database[1], base_url=BASE, log_level="WARNING")


@pytest.fixture
def app(settings: Settings, database: tuple[Engine, str]):  # type: ignore[no-untyped-def]
    """The app, sharing the session's engine; the database is emptied afterwards."""
    application = create_app(settings, authorization=False)
    srv = application.extensions["fhirbill"]
    srv.engine.dispose()
    srv.engine = database[0]
    application.config["TESTING"] = True
    yield application
    _empty(database[0])


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    """Flask test client."""
    return app.test_client()


@pytest.fixture
def server(app):  # type: ignore[no-untyped-def]
    """The app's Server object."""
    return app.extensions["fhirbill"]


@pytest.fixture
def base_url(app):  # type: ignore[no-untyped-def]
    """The app served over real HTTP by a threaded server on a free loopback port."""
    import threading

    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}/fhir"
    srv.shutdown()
    thread.join(5)
    srv.server_close()
