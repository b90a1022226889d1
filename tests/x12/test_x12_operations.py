"""Claim/$x12 and `fhirbill x12 837` on the demo seeds: pyx12-valid files, recorded control numbers."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from x12_helpers import assert_pyx12_valid

from fhirbill.api.imports import import_paths
from fhirbill.cli import main
from fhirbill.store.tables import x12_claims, x12_interchanges, x12_lines

SEEDS = sorted((Path(__file__).parents[2] / "seeds").glob("*.json"))
SEED_CLAIMS = [
    e["resource"]["id"]
    for f in SEEDS
    for e in json.loads(f.read_text())["entry"]
    if e["resource"]["resourceType"] == "Claim"
]
OFFICIAL = Path(__file__).parents[1] / "data" / "fhir-r4-examples"


@pytest.fixture
def seeded(server: Any) -> Any:
    summary = import_paths(server, SEEDS, progress=False)
    assert summary["failed"] == 0, summary["errors"]
    return server


def _count(server: Any, table: Any) -> int:
    with server.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize("claim_id", SEED_CLAIMS)
def test_every_seed_claim_becomes_a_valid_837(client: Any, seeded: Any, claim_id: str) -> None:
    r = client.get(f"/fhir/Claim/{claim_id}/$x12")
    assert r.status_code == 200, r.data
    assert r.mimetype == "application/edi-x12"
    text = r.data.decode()
    assert_pyx12_valid(text)
    if claim_id.endswith("-void"):
        assert "*8~" in text.replace("\n", "") or ":8*" in text
        assert "REF*F8*" in text
    if claim_id.endswith("-r1"):
        assert "REF*F8*" in text


def test_control_numbers_are_unique_and_lines_remembered(client: Any, seeded: Any) -> None:
    for _ in range(3):
        assert client.get(f"/fhir/Claim/{SEED_CLAIMS[0]}/$x12").status_code == 200
    with seeded.engine.connect() as conn:
        isa = [r[0] for r in conn.execute(select(x12_interchanges.c.isa13))]
        pairs = [(r.gs06, r.st02) for r in conn.execute(select(x12_claims))]
    assert len(set(isa)) == 3 and len(set(pairs)) == 3
    assert _count(seeded, x12_lines) == 3 * len(client.get(f"/fhir/Claim/{SEED_CLAIMS[0]}").json["item"])


def test_a_claim_that_is_not_billable_gets_422_with_what_to_fix(client: Any, seeded: Any) -> None:
    claim = client.get("/fhir/Claim/john-carter-2026-03-10").json
    claim["total"]["value"] = claim["total"]["value"] + 1
    claim["provider"] = {"reference": "Organization/acme-health-plan"}  # a payer has no NPI
    r = client.put("/fhir/Claim/john-carter-2026-03-10", json=claim)
    assert r.status_code == 200
    bad = client.get("/fhir/Claim/john-carter-2026-03-10/$x12")
    assert bad.status_code == 422
    codes = {i["details"]["coding"][0]["code"] for i in bad.json["issue"] if "details" in i}
    assert "SCRUB-TOTAL-MISMATCH" in codes
    assert any(e.startswith("Claim.") for i in bad.json["issue"] for e in i.get("expression", []))
    assert _count(seeded, x12_interchanges) == 0
    assert client.get("/fhir/Claim/nope/$x12").status_code == 404


def test_official_example_claims_are_refused_with_reasons(client: Any, seeded: Any) -> None:
    from helpers import put

    claim = json.loads((OFFICIAL / "Claim-100150.json").read_text())
    for ref in ("Patient/1", "Organization/1", "Organization/2", "Practitioner/example", "Coverage/9876B1"):
        t, i = ref.split("/")
        stub: dict[str, Any] = {"resourceType": t, "id": i}
        if t == "Coverage":
            stub |= {
                "status": "active",
                "beneficiary": {"reference": "Patient/1"},
                "payor": [{"reference": "Organization/2"}],
            }
        assert put(client, stub).status_code == 201
    assert put(client, claim).status_code == 201
    r = client.get("/fhir/Claim/100150/$x12")
    assert r.status_code == 422
    text = " ".join(i["diagnostics"] for i in r.json["issue"])
    assert "NPI" in text


def test_batch_by_payer_and_parameters_answer(client: Any, seeded: Any) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "payer", "valueReference": {"reference": "Organization/acme-health-plan"}},
            {"name": "claim", "valueReference": {"reference": "Claim/missing"}},
        ],
    }
    r = client.post("/fhir/Claim/$x12", json=body)
    assert r.status_code == 200
    params = r.json["parameter"]
    binary = next(p["resource"] for p in params if p["name"] == "interchange")
    assert binary["contentType"] == "application/edi-x12"
    text = base64.b64decode(binary["data"]).decode()
    assert_pyx12_valid(text)
    rejected = [p for p in params if p["name"] == "rejected"]
    assert [p["part"][0]["valueReference"]["reference"] for p in rejected] == ["Claim/missing"]
    sent = _count(seeded, x12_claims)
    assert sent >= 3
    again = client.post(
        "/fhir/Claim/$x12", json={"resourceType": "Parameters", "parameter": body["parameter"][:1]}
    )
    assert again.json == {"resourceType": "Parameters"}  # everything of that payer is billed already
    assert client.post("/fhir/Claim/$x12", json={"resourceType": "Parameters"}).status_code == 400


def test_cli_writes_the_file(
    seeded: Any, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIRBILL_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("FHIRBILL_INSTANCE_DIR", str(tmp_path))
    out = tmp_path / "batch.x12"
    result = CliRunner().invoke(
        main, ["x12", "837", "--payer", "Organization/lakeshore-blue", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert_pyx12_valid(out.read_text())
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert len(summary["sent"]) == 3 and summary["rejected"] == []
    nothing = CliRunner().invoke(main, ["x12", "837"])
    assert nothing.exit_code == 2
