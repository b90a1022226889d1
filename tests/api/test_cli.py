"""The `fhirbill` command line: seed, clients, users, launch, db."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from fhirbill.cli import main
from fhirbill.store.tables import resource_versions


@pytest.fixture
def run(app: Any, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FHIRBILL_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("FHIRBILL_INSTANCE_DIR", str(tmp_path))
    monkeypatch.setenv("FHIRBILL_LOG_LEVEL", "WARNING")

    def invoke(*args: str, stdin: str | None = None) -> Any:
        return CliRunner().invoke(main, list(args), input=stdin)

    return invoke


def _versions(server: Any) -> int:
    with server.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(resource_versions)).scalar_one())


def test_seed_is_idempotent(run: Any, server: Any, client: Any, tmp_path: Path) -> None:
    first = run("seed", "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["failed"] == 0 and summary["created"] >= 40
    assert set(summary["smart"]["clients"]) == {"demo-billing-service", "demo-patient-app", "demo-ehr"}
    versions = _versions(server)
    second = json.loads(run("seed", "--json").output)
    assert second["created"] == 0 and second["updated"] == 0 and second["unchanged"] == summary["created"]
    assert second["smart"] == {"clients": [], "users": []}
    assert _versions(server) == versions
    creds = json.loads((tmp_path / "demo-credentials.json").read_text())
    assert creds["demo-billing-service"]["client_secret"]
    assert oct((tmp_path / "demo-credentials.json").stat().st_mode & 0o777) == "0o600"
    # the demo practice is there: a dependent on a parent's policy
    cov = client.get("/fhir/Coverage/carter-acme-2026-emma").json
    assert cov["beneficiary"]["reference"] == "Patient/emma-carter"
    assert cov["subscriber"]["reference"] == "Patient/john-carter"
    human = run("seed")
    assert "Get a token" in human.output and "unchanged" in human.output


def test_clients_users_and_launch(run: Any) -> None:
    added = run(
        "clients",
        "add",
        "--name",
        "App",
        "--grant-type",
        "authorization_code",
        "--redirect-uri",
        "https://app.example/cb",
        "--origin",
        "https://app.example",
        "--scope",
        "patient/*.rs openid fhirUser",
        "--public",
    )
    assert added.exit_code == 0, added.output
    cid = json.loads(added.output)["client_id"]
    backend = json.loads(
        run("clients", "add", "--name", "B", "--grant-type", "client_credentials", "--secret").output
    )
    assert backend["client_secret"]
    listed = json.loads(run("clients", "list").output)
    assert {c["client_id"] for c in listed} == {cid, backend["client_id"]}
    assert backend["client_secret"] not in json.dumps(listed)
    assert all("client_secret" not in c for c in listed)
    assert json.loads(run("clients", "revoke", cid).output) == {"client_id": cid, "revoked": True}
    assert run("clients", "revoke", "nope").exit_code == 1
    bad = run("clients", "add", "--name", "C", "--grant-type", "client_credentials", "--public")
    assert bad.exit_code == 1 and "confidential" in bad.output
    user = run(
        "users",
        "add",
        "--username",
        "pat",
        "--password-stdin",
        "--patient",
        "Patient/p1",
        stdin="long enough password\n",
    )
    assert user.exit_code == 0, user.output
    short = run(
        "users", "add", "--username", "x", "--password-stdin", "--patient", "Patient/p1", stdin="short\n"
    )
    assert short.exit_code == 1 and "8 characters" in short.output
    launch = json.loads(run("launch", "--patient", "p1").output)
    assert len(launch["launch"]) >= 16


def test_db_commands(run: Any) -> None:
    assert json.loads(run("db", "upgrade").output)["migrations"] == "head"
    assert json.loads(run("db", "check").output) == {"drift": False}
    assert json.loads(run("db", "reindex", "--type", "Patient").output)["type"] == "Patient"
    bad = run("db", "reindex", "--type", "Nope")
    assert bad.exit_code == 1 and "not a resource type" in bad.output
