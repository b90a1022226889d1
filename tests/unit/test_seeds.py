"""The demo practice in seeds/: idempotent transaction Bundles of valid R4 resources whose
references resolve within the seeds, and whose every Claim scrubs clean."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhirbill.fhir.billing import (
    CLAIM_FREQUENCY_SYSTEM,
    NPI_SYSTEM,
    PAYER_ICN_SYSTEM,
    PCN_SYSTEM,
    TAX_ID_SYSTEM,
    V2_0203,
)
from fhirbill.rcm.codes import npi_valid
from fhirbill.rcm.scrub import date_range, scrub_claim

ROOT = Path(__file__).resolve().parents[2]
SEED_FILES = sorted((ROOT / "seeds").glob("*.json"))
TODAY = date(2026, 11, 28)


def bundles() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in SEED_FILES]


def resources() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for b in bundles():
        for e in b["entry"]:
            r = e["resource"]
            out[f"{r['resourceType']}/{r['id']}"] = r
    return out


RES = resources()
CLAIMS = sorted(k for k in RES if k.startswith("Claim/"))


def _of(rtype: str) -> list[dict[str, Any]]:
    return [r for k, r in RES.items() if k.startswith(rtype + "/")]


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["reference"]] if isinstance(node.get("reference"), str) else []
        for k, v in node.items():
            if k != "contained":
                out += _references(v)
        return out
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []


def test_seed_files_are_transaction_bundles_of_puts() -> None:
    assert len(SEED_FILES) >= 4
    seen: set[str] = set()
    for b in bundles():
        assert b["resourceType"] == "Bundle" and b["type"] == "transaction"
        for e in b["entry"]:
            r = e["resource"]
            key = f"{r['resourceType']}/{r['id']}"
            assert e["request"] == {"method": "PUT", "url": key}
            assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", r["id"])
            assert key not in seen, f"{key} seeded twice"
            seen.add(key)


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.name)
def test_every_seed_resource_validates_with_r4b(path: Path) -> None:
    b = json.loads(path.read_text())
    get_fhir_model_class("Bundle").model_validate(b)
    for e in b["entry"]:
        r = e["resource"]
        get_fhir_model_class(r["resourceType"]).model_validate(r)


def test_references_resolve_within_the_seeds_and_load_in_file_order() -> None:
    loaded: set[str] = set()
    for b in bundles():
        keys = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in b["entry"]}
        loaded |= keys
        for e in b["entry"]:
            for ref in _references(e["resource"]):
                assert ref in loaded, f"{ref} (from {e['request']['url']}) is not seeded earlier"


@pytest.mark.parametrize("key", CLAIMS)
def test_every_seed_claim_scrubs_clean(key: str) -> None:
    issues = scrub_claim(RES[key], RES.get, TODAY)
    assert issues == []


@pytest.mark.parametrize("key", CLAIMS)
def test_claim_control_numbers_and_dates(key: str) -> None:
    claim = RES[key]
    pcns = [i["value"] for i in claim["identifier"] if i["system"] == PCN_SYSTEM]
    assert len(pcns) == 1 and len(pcns[0]) <= 20
    for item in claim["item"]:
        rng = date_range(item["servicedDate"])
        assert rng and rng[0].year == 2026 and rng[1] <= TODAY


def test_control_numbers_are_unique() -> None:
    pcns = [i["value"] for r in _of("Claim") for i in r["identifier"] if i["system"] == PCN_SYSTEM]
    assert len(pcns) == len(set(pcns))


def test_all_dates_are_in_2026_and_not_in_the_future() -> None:
    text = "\n".join(p.read_text() for p in SEED_FILES)
    service_dates = re.findall(r'"(?:servicedDate|start|created|date)": "(\d{4}-\d{2}-\d{2})', text)
    assert service_dates
    for d in service_dates:
        assert d.startswith("2026-") and date.fromisoformat(d) <= TODAY, d


def test_npis_are_luhn_valid() -> None:
    npis = [
        i["value"]
        for rt in ("Organization", "Practitioner", "Location")
        for r in _of(rt)
        for i in r.get("identifier", [])
        if i["system"] == NPI_SYSTEM
    ]
    assert len(npis) >= 5 and all(npi_valid(n) for n in npis)


def test_billing_organization() -> None:
    org = RES["Organization/riverside-family-medicine"]
    systems = {i["system"] for i in org["identifier"]}
    assert {NPI_SYSTEM, TAX_ID_SYSTEM} <= systems
    assert re.fullmatch(r"\d{5}-?\d{4}", org["address"][0]["postalCode"])
    assert any(c["system"] == "http://nucc.org/provider-taxonomy" for t in org["type"] for c in t["coding"])


def test_two_payers_with_clearinghouse_payer_ids() -> None:
    payers = [
        r
        for r in _of("Organization")
        if any(
            c.get("system") == V2_0203 and c.get("code") == "NIIP"
            for i in r.get("identifier", [])
            for c in i.get("type", {}).get("coding", [])
        )
    ]
    assert {p["id"] for p in payers} == {"acme-health-plan", "lakeshore-blue"}


def test_cast_dependent_on_parent_policy_and_self_insured_adult() -> None:
    dep = RES["Coverage/carter-acme-2026-emma"]
    assert dep["beneficiary"]["reference"] == "Patient/emma-carter"
    assert dep["subscriber"]["reference"] == "Patient/john-carter"
    assert dep["relationship"]["coding"][0]["code"] == "child"
    adult = RES["Coverage/nguyen-lakeshore"]
    assert adult["relationship"]["coding"][0]["code"] == "self"
    assert adult["payor"][0]["reference"] != dep["payor"][0]["reference"]
    assert all(c["status"] == "active" and c["subscriberId"] for c in _of("Coverage"))


def test_claim_kinds_replacement_and_void() -> None:
    types = {r["type"]["coding"][0]["code"] for r in _of("Claim")}
    assert types == {"professional", "institutional"}
    freqs = {
        c["code"]: rel
        for r in _of("Claim")
        for rel in r.get("related", [])
        for c in rel["relationship"]["coding"]
        if c["system"] == CLAIM_FREQUENCY_SYSTEM
    }
    assert set(freqs) == {"7", "8"}
    for rel in freqs.values():
        assert rel["reference"]["system"] == PAYER_ICN_SYSTEM
        assert rel["claim"]["reference"] in RES
        # the payer claim number is the one the original's ClaimResponse carries
        original = rel["claim"]["reference"]
        icns = [
            i["value"]
            for cr in _of("ClaimResponse")
            if cr["request"]["reference"] == original
            for i in cr["identifier"]
        ]
        assert rel["reference"]["value"] in icns


def test_institutional_claim_follows_carin_conventions() -> None:
    (inst,) = [r for r in _of("Claim") if r["type"]["coding"][0]["code"] == "institutional"]
    cats = {s["category"]["coding"][0]["code"] for s in inst["supportingInfo"]}
    assert {"typeofbill", "admtype", "pointoforigin", "discharge-status"} <= cats
    assert all(re.fullmatch(r"\d{4}", i["revenue"]["coding"][0]["code"]) for i in inst["item"])
    roles = {c["role"]["coding"][0]["code"] for c in inst["careTeam"]}
    assert "attending" in roles


def test_readme_describes_every_claim() -> None:
    readme = (ROOT / "seeds" / "README.md").read_text()
    for key in CLAIMS:
        assert key.split("/")[1] in readme
