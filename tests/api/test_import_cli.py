"""`fhirbill import` (issue 3): Synthea transaction Bundles through the same code path as
`POST /fhir`, NDJSON with a bad line, JSON summaries, and re-imports that change nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_search_synthea import SYNTHEA, check_loaded, stored_resources

from fhirbill.api.imports import import_paths
from fhirbill.cli import main

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted((ROOT / "seeds").glob("*.json"))


@pytest.fixture
def cli(settings: Any, app: Any, tmp_path: Path) -> Any:
    """Run `fhirbill ...` against the test database; returns (exit code, stdout, stderr)."""
    env = {
        "FHIRBILL_DATABASE_URL": settings.database_url,
        "FHIRBILL_INSTANCE_DIR": str(tmp_path),
        "FHIRBILL_BASE_URL": settings.base_url,
        "FHIRBILL_LOG_LEVEL": "WARNING",
    }

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return run


def test_import_synthea_bundles(cli: Any, client: Any, server: Any) -> None:
    code, out, _ = cli("import", "--json", *map(str, SYNTHEA))
    assert code == 0, out
    summary = json.loads(out)
    total = sum(len(json.loads(p.read_text())["entry"]) for p in SYNTHEA)
    assert summary == {"created": total, "updated": 0, "unchanged": 0, "failed": 0, "errors": []}
    check_loaded(client, server, SYNTHEA)


def test_import_paths_matches_post(client: Any, server: Any) -> None:
    """import_paths (the CLI's engine) stores what POST /fhir stores, linked the same way."""
    summary = import_paths(server, SYNTHEA, progress=False)
    assert summary["failed"] == 0 and summary["created"] == len(stored_resources(server))
    check_loaded(client, server, SYNTHEA)


def test_import_of_a_failing_transaction_counts_every_entry_and_writes_nothing(
    cli: Any, server: Any, tmp_path: Path
) -> None:
    data = json.loads(SYNTHEA[0].read_text())
    data["entry"][5]["resource"]["status"] = "not-a-status"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    code, out, _ = cli("import", "--json", str(bad))
    assert code == 1
    summary = json.loads(out)
    assert summary["created"] == 0 and summary["failed"] == len(data["entry"])
    (err,) = summary["errors"]
    assert err["source"] == "bad.json" and err["status"] == 400 and "Entry 5" in err["diagnostics"]
    assert stored_resources(server) == {}


def _ndjson(tmp_path: Path) -> Path:
    lines = [
        json.dumps({"resourceType": "Patient", "id": f"nd-{i}", "name": [{"family": f"Nd{i}"}]})
        for i in range(5)
    ]
    lines.insert(2, '{"resourceType": "Patient", "id": "broken", ')  # line 3: not JSON
    lines.append(json.dumps({"resourceType": "Patient", "name": [{"family": "NoId"}]}))  # POSTed
    lines.append("")  # blank lines are skipped
    path = tmp_path / "patients.ndjson"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_ndjson_with_a_bad_line(cli: Any, client: Any, tmp_path: Path) -> None:
    path = _ndjson(tmp_path)
    code, out, _ = cli("import", "--json", str(path))
    assert code == 1  # something failed
    summary = json.loads(out)
    assert {k: summary[k] for k in ("created", "updated", "unchanged", "failed")} == {
        "created": 6,
        "updated": 0,
        "unchanged": 0,
        "failed": 1,
    }
    (err,) = summary["errors"]
    assert err["source"] == "patients.ndjson:3" and err["status"] == 400
    assert "broken" not in err["diagnostics"]
    assert client.get("/fhir/Patient", query_string={"_summary": "count"}).json["total"] == 6
    assert client.get("/fhir/Patient/nd-4").json["name"] == [{"family": "Nd4"}]
    # human-readable output names the counts and the failing line
    code, out, err_text = cli("import", str(path))
    assert code == 1
    assert "created 1, updated 0, unchanged 5, failed 1" in out
    assert "patients.ndjson:3" in err_text


def test_reimport_is_idempotent(cli: Any, client: Any, server: Any, tmp_path: Path) -> None:
    path = tmp_path / "patients.ndjson"
    path.write_text(
        "\n".join(
            json.dumps({"resourceType": "Patient", "id": f"re-{i}", "gender": "female"}) for i in range(4)
        )
    )
    files = [*map(str, SEEDS), str(path)]
    code, out, _ = cli("import", "--json", *files)
    assert code == 0, out
    first = json.loads(out)
    n = first["created"]
    assert first["failed"] == 0 and n == len(stored_resources(server))
    before = stored_resources(server)
    history = client.get("/fhir/_history", query_string={"_count": "1"}).json["total"]
    code, out, _ = cli("import", "--json", *files)
    assert code == 0, out
    assert json.loads(out) == {"created": 0, "updated": 0, "unchanged": n, "failed": 0, "errors": []}
    assert stored_resources(server) == before
    assert client.get("/fhir/_history", query_string={"_count": "1"}).json["total"] == history
    # a changed line is an update and only that
    path.write_text(
        "\n".join(
            json.dumps({"resourceType": "Patient", "id": f"re-{i}", "gender": "female" if i else "male"})
            for i in range(4)
        )
    )
    code, out, _ = cli("import", "--json", str(path))
    assert json.loads(out)["updated"] == 1 and json.loads(out)["unchanged"] == 3
