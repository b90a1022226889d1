"""Patient isolation over real HTTP: alice's patient token never reaches bob's billing records.

Both patients' Claim, ClaimResponse, ExplanationOfBenefit, Coverage (beneficiary) and Account
are loaded; alice's token comes from a standalone launch with `patient/*.cruds`.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from smart_support import Live, fhir

BOBS = {
    "Claim": "claim-b",
    "ClaimResponse": "cr-b",
    "ExplanationOfBenefit": "eob-b",
    "Coverage": "cov-b",
    "Account": "acct-b",
}
ALICES = {
    "Claim": "claim-a",
    "ClaimResponse": "cr-a",
    "ExplanationOfBenefit": "eob-a",
    "Coverage": "cov-a",
    "Account": "acct-a",
}
PATIENT_ELEMENT = {"Coverage": "beneficiary", "Account": "subject"}


def owner(resource: dict[str, Any]) -> str | None:
    """The patient a billing resource belongs to (the element the SMART rule names)."""
    rt = resource["resourceType"]
    if rt == "Patient":
        return f"Patient/{resource['id']}"
    value = resource.get(PATIENT_ELEMENT.get(rt, "patient"))
    if isinstance(value, list):
        value = value[0] if value else None
    return value.get("reference") if value else None


def entries(r: requests.Response, mode: str | None = None) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    return [
        e["resource"]
        for e in r.json().get("entry", [])
        if "resource" in e
        and e["resource"]["resourceType"] != "OperationOutcome"
        and (mode is None or e["search"]["mode"] == mode)
    ]


def assert_only_alice(resources: list[dict[str, Any]]) -> None:
    for res in resources:
        if res["resourceType"] in ("Organization",):
            continue
        assert owner(res) == "Patient/pat-a", res


def same_refusal(a: requests.Response, b: requests.Response) -> None:
    """Identical status and body: the refusal says nothing about whether the resource exists."""
    assert a.status_code == b.status_code == 403, (a.text, b.text)
    assert a.json() == b.json()


# --- own records ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rt", sorted(ALICES))
def test_alice_reads_and_searches_her_own(billing_data: Live, alice: str, rt: str) -> None:
    r = fhir(billing_data, "GET", f"{rt}/{ALICES[rt]}", alice)
    assert r.status_code == 200, r.text
    assert owner(r.json()) == "Patient/pat-a"
    found = entries(fhir(billing_data, "GET", rt, alice))
    assert ALICES[rt] in {x["id"] for x in found}
    assert_only_alice(found)
    assert BOBS[rt] not in {x["id"] for x in found}


@pytest.mark.parametrize("rt", sorted(ALICES))
def test_totals_count_only_her_own(billing_data: Live, alice: str, rt: str) -> None:
    r = fhir(billing_data, "GET", f"{rt}?status:missing=false&_total=accurate", alice)
    found = entries(r, "match")
    assert ALICES[rt] in {x["id"] for x in found}
    assert_only_alice(found)
    assert r.json()["total"] == len(found)


def test_the_same_search_by_bob_sees_only_his(billing_data: Live, bob: str) -> None:
    found = entries(fhir(billing_data, "GET", "ExplanationOfBenefit", bob))
    assert {x["id"] for x in found} >= {"eob-b"}
    assert all(owner(x) == "Patient/pat-b" for x in found)


def test_reference_data_is_open(billing_data: Live, alice: str) -> None:
    assert fhir(billing_data, "GET", "Organization/org-payer", alice).status_code == 200


# --- read, vread, existence ----------------------------------------------------------------------


@pytest.mark.parametrize("rt", sorted(BOBS) + ["Patient"])
def test_read_and_vread_of_bobs_records(billing_data: Live, alice: str, rt: str) -> None:
    rid = BOBS.get(rt, "pat-b")
    read = fhir(billing_data, "GET", f"{rt}/{rid}", alice)
    missing = fhir(billing_data, "GET", f"{rt}/no-such-id", alice)
    same_refusal(read, missing)
    assert "pat-b" not in read.text and rid not in read.text
    vread = fhir(billing_data, "GET", f"{rt}/{rid}/_history/1", alice)
    same_refusal(vread, fhir(billing_data, "GET", f"{rt}/no-such-id/_history/1", alice))
    same_refusal(vread, read)


def test_bob_reads_his_own(billing_data: Live, bob: str) -> None:
    for rt, rid in BOBS.items():
        assert fhir(billing_data, "GET", f"{rt}/{rid}", bob).status_code == 200, rt


# --- search --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "Claim?patient=pat-b",
        "Claim?patient=Patient/pat-b",
        "Claim?patient=pat-a,pat-b",
        "ClaimResponse?patient=pat-b",
        "ExplanationOfBenefit?patient=pat-b",
        "Coverage?beneficiary=pat-b",
        "Coverage?patient=pat-b",
        "Account?patient=pat-b",
        "Patient?_id=pat-b",
    ],
)
def test_searching_for_bob_is_403(billing_data: Live, alice: str, query: str) -> None:
    r = fhir(billing_data, "GET", query, alice)
    assert r.status_code == 403, r.text


def test_searching_for_bob_by_post_is_403(billing_data: Live, alice: str) -> None:
    r = fhir(billing_data, "POST", "Claim/_search", alice, data={"patient": "pat-b"})
    assert r.status_code == 403


@pytest.mark.parametrize("rt", sorted(BOBS))
def test_search_by_id_is_filtered(billing_data: Live, alice: str, rt: str) -> None:
    r = fhir(billing_data, "GET", f"{rt}?_id={BOBS[rt]}", alice)
    assert entries(r) == []
    assert r.json().get("total", 0) == 0


def test_search_by_identifier_is_filtered(billing_data: Live, alice: str) -> None:
    assert entries(fhir(billing_data, "GET", "Claim?identifier=urn:test:claim|claim-b", alice)) == []
    assert [x["id"] for x in entries(fhir(billing_data, "GET", "Claim?identifier=claim-a", alice))] == [
        "claim-a"
    ]


# --- _include / _revinclude ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "ExplanationOfBenefit?_include=ExplanationOfBenefit:*",
        "ExplanationOfBenefit?_include=ExplanationOfBenefit:patient&_include=ExplanationOfBenefit:coverage",
        "ClaimResponse?_include=ClaimResponse:request&_include:iterate=Claim:patient",
        "Patient?_revinclude=Claim:patient&_revinclude=ExplanationOfBenefit:patient",
        "Organization?_revinclude=ExplanationOfBenefit:insurer&_revinclude=Coverage:payor",
        "Organization?_revinclude=Claim:provider&_revinclude=ClaimResponse:insurer",
        "Organization?_revinclude=*",
        "Coverage?_revinclude=ExplanationOfBenefit:coverage",
        "Claim?_revinclude=ClaimResponse:request&_revinclude=ExplanationOfBenefit:claim",
    ],
)
def test_includes_never_bring_in_bob(billing_data: Live, alice: str, query: str) -> None:
    r = fhir(billing_data, "GET", query, alice)
    found = entries(r)
    assert_only_alice(found)
    assert "pat-b" not in r.text and "-b" not in {x["id"][-2:] for x in found}


def test_includes_work_for_alice(billing_data: Live, alice: str) -> None:
    r = fhir(billing_data, "GET", "Organization?_revinclude=ExplanationOfBenefit:insurer", alice)
    assert "eob-a" in {x["id"] for x in entries(r, "include")}
    r = fhir(billing_data, "GET", "ExplanationOfBenefit?_include=ExplanationOfBenefit:coverage", alice)
    assert "cov-a" in {x["id"] for x in entries(r, "include")}


# --- chains and _has -----------------------------------------------------------------------------


def _ids(r: requests.Response) -> set[str]:
    return {x["id"] for x in entries(r)}


@pytest.mark.parametrize(
    ("query", "control"),
    [
        ("Claim?patient.identifier=urn:test:mrn|mrn-b", "Claim?patient.identifier=urn:test:mrn|nobody"),
        ("Claim?patient.family=PatientB", "Claim?patient.family=Nobody"),
        ("ExplanationOfBenefit?claim.patient=pat-b", "ExplanationOfBenefit?claim.patient=nobody"),
        (
            "ExplanationOfBenefit?coverage.beneficiary=pat-b",
            "ExplanationOfBenefit?coverage.beneficiary=nobody",
        ),
        ("Patient?_has:Claim:patient:identifier=claim-b", "Patient?_has:Claim:patient:identifier=nothing"),
        (
            "Organization?_has:Claim:provider:identifier=claim-b",
            "Organization?_has:Claim:provider:identifier=nothing",
        ),
        (
            "Organization?_has:ExplanationOfBenefit:insurer:patient=pat-b",
            "Organization?_has:ExplanationOfBenefit:insurer:patient=nobody",
        ),
        (
            "Organization?_has:Coverage:payor:beneficiary=pat-b",
            "Organization?_has:Coverage:payor:beneficiary=nobody",
        ),
    ],
)
def test_chains_and_has_reveal_nothing(billing_data: Live, alice: str, query: str, control: str) -> None:
    """Naming bob's records in a chain or _has answers exactly as naming nothing does."""
    r, c = fhir(billing_data, "GET", query, alice), fhir(billing_data, "GET", control, alice)
    assert r.status_code == c.status_code
    if r.status_code == 200:
        assert _ids(r) == _ids(c) == set()
        assert r.json().get("total") == c.json().get("total")


def test_chains_work_for_alice(billing_data: Live, alice: str) -> None:
    assert "claim-a" in _ids(fhir(billing_data, "GET", "Claim?patient.identifier=urn:test:mrn|mrn-a", alice))
    assert _ids(fhir(billing_data, "GET", "Patient?_has:Claim:patient:identifier=claim-a", alice)) == {
        "pat-a"
    }


# --- history -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rt", sorted(BOBS))
def test_instance_history_of_bobs_records(billing_data: Live, alice: str, rt: str) -> None:
    r = fhir(billing_data, "GET", f"{rt}/{BOBS[rt]}/_history", alice)
    same_refusal(r, fhir(billing_data, "GET", f"{rt}/no-such-id/_history", alice))


def test_own_instance_history(billing_data: Live, alice: str) -> None:
    r = fhir(billing_data, "GET", "Claim/claim-a/_history", alice)
    assert r.status_code == 200 and r.json()["type"] == "history"


@pytest.mark.parametrize(
    "path", ["Claim/_history", "ExplanationOfBenefit/_history", "Patient/_history", "_history"]
)
def test_no_type_or_system_history(billing_data: Live, alice: str, path: str) -> None:
    r = fhir(billing_data, "GET", path, alice)
    assert r.status_code == 403, r.text
    assert "pat-b" not in r.text


def test_history_does_not_show_versions_from_before_a_move(
    billing_data: Live, alice: str, admin_token: str
) -> None:
    """A claim an administrator moved from bob to alice: alice sees no version that was bob's."""
    from smart_support import billing

    claim = {**billing("b")[1], "id": "claim-moved", "identifier": [{"value": "claim-moved"}]}
    assert fhir(billing_data, "PUT", "Claim/claim-moved", admin_token, json=claim).status_code == 201
    moved = {**claim, "patient": {"reference": "Patient/pat-a"}}
    assert fhir(billing_data, "PUT", "Claim/claim-moved", admin_token, json=moved).status_code == 200
    assert fhir(billing_data, "GET", "Claim/claim-moved", alice).status_code == 200
    assert fhir(billing_data, "GET", "Claim/claim-moved/_history/1", alice).status_code == 403
    r = fhir(billing_data, "GET", "Claim/claim-moved/_history", alice)
    if r.status_code == 200:
        versions = [e["resource"] for e in r.json()["entry"] if "resource" in e]
        assert versions and all(owner(v) == "Patient/pat-a" for v in versions)
        assert "pat-b" not in r.text
    else:
        assert r.status_code == 403


# --- operations ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_validate_bobs_claim(billing_data: Live, alice: str, method: str) -> None:
    r = fhir(billing_data, method, "Claim/claim-b/$validate", alice)
    same_refusal(r, fhir(billing_data, method, "Claim/no-such-id/$validate", alice))


def test_x12_of_bobs_claim(billing_data: Live, alice: str) -> None:
    r = fhir(billing_data, "GET", "Claim/claim-b/$x12", alice)
    same_refusal(r, fhir(billing_data, "GET", "Claim/no-such-id/$x12", alice))
    assert "ISA" not in r.text


def test_batch_837_is_not_for_patients(billing_data: Live, alice: str) -> None:
    body = {"resourceType": "Parameters", "parameter": [{"name": "claim", "valueString": "claim-b"}]}
    assert fhir(billing_data, "POST", "Claim/$x12", alice, json=body).status_code == 403


# --- batch and transaction -----------------------------------------------------------------------


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _get(url: str) -> dict[str, Any]:
    return {"request": {"method": "GET", "url": url}}


def test_batch_reads_are_authorized_one_by_one(billing_data: Live, alice: str) -> None:
    urls = [f"{rt}/{rid}" for rt, rid in BOBS.items()]
    b = _bundle(
        "batch",
        *[_get(u) for u in urls],
        _get("Claim/claim-a"),
        _get("Claim?patient=pat-b"),
        _get("Claim?_id=claim-b"),
        _get("Claim/no-such-id"),
    )
    r = fhir(billing_data, "POST", "", alice, json=b)
    assert r.status_code == 200, r.text
    out = r.json()["entry"]
    for e in out[: len(urls)]:
        assert e["response"]["status"] == "403"
        assert "resource" not in e
    assert out[len(urls)]["response"]["status"].startswith("200")
    assert out[len(urls)]["resource"]["id"] == "claim-a"
    assert out[len(urls) + 1]["response"]["status"] == "403"
    assert out[len(urls) + 2]["resource"].get("entry", []) == []
    # unknown and forbidden look the same (but for the entry number)
    unknown, forbidden = out[len(urls) + 3]["response"], out[0]["response"]
    assert unknown["status"] == forbidden["status"] == "403"
    assert [(i["code"], i["diagnostics"].split(": ", 1)[1]) for i in unknown["outcome"]["issue"]] == [
        (i["code"], i["diagnostics"].split(": ", 1)[1]) for i in forbidden["outcome"]["issue"]
    ]
    assert "pat-b" not in r.text


def test_batch_writes_to_bob_are_refused(billing_data: Live, alice: str) -> None:
    from smart_support import billing

    bobs_claim = billing("b")[1]
    b = _bundle(
        "batch",
        {"request": {"method": "PUT", "url": "Claim/claim-b"}, "resource": bobs_claim},
        {"request": {"method": "DELETE", "url": "Claim/claim-b"}},
        {"request": {"method": "POST", "url": "Claim"}, "resource": {**bobs_claim, "id": None}},
    )
    b["entry"][2]["resource"].pop("id")
    r = fhir(billing_data, "POST", "", alice, json=b)
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["403", "403", "403"]
    assert fhir(billing_data, "GET", "Claim/claim-b", alice).status_code == 403


def _count(live: Live, token: str, query: str) -> int:
    r = fhir(live, "GET", query + ("&" if "?" in query else "?") + "_total=accurate", token)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


@pytest.mark.parametrize(
    "forbidden",
    [
        _get("Claim/claim-b"),
        _get("ExplanationOfBenefit/eob-b"),
        _get("Claim?patient=pat-b"),
        {"request": {"method": "DELETE", "url": "Coverage/cov-b"}},
        {
            "request": {"method": "PUT", "url": "Account/acct-b"},
            "resource": {
                "resourceType": "Account",
                "id": "acct-b",
                "status": "inactive",
                "subject": [{"reference": "Patient/pat-a"}],
            },
        },
        {
            "request": {"method": "POST", "url": "Account"},
            "resource": {
                "resourceType": "Account",
                "status": "active",
                "subject": [{"reference": "Patient/pat-b"}],
            },
        },
    ],
)
def test_transaction_with_one_forbidden_entry_fails_whole(
    billing_data: Live, alice: str, admin_token: str, forbidden: dict[str, Any]
) -> None:
    before = _count(billing_data, admin_token, "Account")
    mine = {"resourceType": "Account", "status": "active", "subject": [{"reference": "Patient/pat-a"}]}
    b = _bundle("transaction", {"request": {"method": "POST", "url": "Account"}, "resource": mine}, forbidden)
    r = fhir(billing_data, "POST", "", alice, json=b)
    assert r.status_code == 403, r.text
    assert (
        "pat-b" not in r.text.replace("Patient/pat-b", "") or r.json()["resourceType"] == "OperationOutcome"
    )
    assert _count(billing_data, admin_token, "Account") == before
    for rt, rid in BOBS.items():
        got = fhir(billing_data, "GET", f"{rt}/{rid}", admin_token)
        assert got.status_code == 200 and got.json()["meta"]["versionId"] == "1", (rt, got.text)


def test_transaction_conditional_create_does_not_find_bobs(billing_data: Live, alice: str) -> None:
    """ifNoneExist that matches bob's claim must not hand alice its id."""
    from smart_support import billing

    mine = {**billing("a")[1]}
    mine.pop("id")
    entry = {
        "request": {"method": "POST", "url": "Claim", "ifNoneExist": "identifier=urn:test:claim|claim-b"},
        "resource": mine,
    }
    r = fhir(billing_data, "POST", "", alice, json=_bundle("transaction", entry))
    assert r.status_code in (201, 200, 403), r.text
    assert "claim-b" not in r.text
    if r.status_code == 200:  # it created alice's own claim instead
        assert r.json()["entry"][0]["response"]["status"].startswith("201")
    r = fhir(billing_data, "POST", "", alice, json=_bundle("batch", entry))
    assert "claim-b" not in r.text


def test_conditional_writes_do_not_find_bobs(billing_data: Live, alice: str, bob: str) -> None:
    from smart_support import billing

    mine = {**billing("a")[1]}
    mine.pop("id")
    r = fhir(
        billing_data,
        "POST",
        "Claim",
        alice,
        json=mine,
        headers={"If-None-Exist": "identifier=urn:test:claim|claim-b"},
    )
    assert "claim-b" not in r.text and r.status_code in (201, 403)
    r = fhir(billing_data, "PUT", "Claim?identifier=urn:test:claim|claim-b", alice, json=mine)
    assert "claim-b" not in r.text and r.status_code in (201, 403)
    r = fhir(billing_data, "DELETE", "Claim?identifier=urn:test:claim|claim-b", alice)
    assert r.status_code in (204, 403)
    assert fhir(billing_data, "GET", "Claim/claim-b", bob).status_code == 200


# --- writes that would move a record -------------------------------------------------------------


def test_update_that_moves_her_claim_to_bob(billing_data: Live, alice: str) -> None:
    from smart_support import billing

    moved = {**billing("a")[1], "patient": {"reference": "Patient/pat-b"}}
    assert fhir(billing_data, "PUT", "Claim/claim-a", alice, json=moved).status_code == 403
    patch = [{"op": "replace", "path": "/patient/reference", "value": "Patient/pat-b"}]
    r = fhir(
        billing_data,
        "PATCH",
        "Claim/claim-a",
        alice,
        json=patch,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 403, r.text
    cov = {**billing("a")[0], "beneficiary": {"reference": "Patient/pat-b"}}
    assert fhir(billing_data, "PUT", "Coverage/cov-a", alice, json=cov).status_code == 403
    got = fhir(billing_data, "GET", "Claim/claim-a", alice)
    assert got.json()["patient"]["reference"] == "Patient/pat-a"


def test_update_that_takes_bobs_claim(billing_data: Live, alice: str) -> None:
    from smart_support import billing

    taken = {**billing("b")[1], "patient": {"reference": "Patient/pat-a"}}
    r = fhir(billing_data, "PUT", "Claim/claim-b", alice, json=taken)
    assert r.status_code == 403
    assert fhir(billing_data, "DELETE", "Claim/claim-b", alice).status_code == 403
    same_refusal(
        fhir(billing_data, "DELETE", "Claim/claim-b", alice),
        fhir(billing_data, "DELETE", "Claim/no-such-id", alice),
    )


def test_update_as_create_does_not_reveal_which_ids_exist(billing_data: Live, alice: str) -> None:
    from smart_support import billing

    for rt_index, res in enumerate(billing("a")):
        rt = res["resourceType"]
        taken = fhir(billing_data, "PUT", f"{rt}/{BOBS[rt]}", alice, json={**res, "id": BOBS[rt]})
        free = fhir(
            billing_data, "PUT", f"{rt}/free-{rt_index}", alice, json={**res, "id": f"free-{rt_index}"}
        )
        same_refusal(taken, free)
    assert fhir(billing_data, "GET", "Claim/free-1", alice).status_code == 403


def test_create_for_bob(billing_data: Live, alice: str) -> None:
    from smart_support import billing

    for res in billing("b"):
        res = {k: v for k, v in res.items() if k != "id"}
        r = fhir(billing_data, "POST", res["resourceType"], alice, json=res)
        assert r.status_code == 403, (res["resourceType"], r.text)


def test_alice_may_write_her_own(billing_data: Live, alice: str) -> None:
    acct = {"resourceType": "Account", "status": "active", "subject": [{"reference": "Patient/pat-a"}]}
    r = fhir(billing_data, "POST", "Account", alice, json=acct)
    assert r.status_code == 201, r.text
    new = r.json()
    r = fhir(billing_data, "PUT", f"Account/{new['id']}", alice, json={**new, "status": "inactive"})
    assert r.status_code == 200, r.text
    assert fhir(billing_data, "DELETE", f"Account/{new['id']}", alice).status_code == 204


def test_conditional_matches_ignore_bobs_records(billing_data: Live, alice: str, admin_token: str) -> None:
    """Whether bob has none, one or several matching claims, alice's conditional writes answer alike."""
    from smart_support import billing

    for n in (1, 2):
        dup = {
            **billing("b")[1],
            "id": f"claim-dup-{n}",
            "identifier": [{"system": "urn:test:claim", "value": "dup"}],
        }
        assert fhir(billing_data, "PUT", f"Claim/claim-dup-{n}", admin_token, json=dup).status_code == 201
    mine = {k: v for k, v in billing("a")[1].items() if k not in ("id", "identifier")}
    statuses = []
    for cond in ("identifier=urn:test:claim|dup", "identifier=urn:test:claim|claim-b"):
        create = fhir(billing_data, "POST", "Claim", alice, json=mine, headers={"If-None-Exist": cond})
        update = fhir(billing_data, "PUT", f"Claim?{cond}", alice, json=mine)
        entry = {"request": {"method": "POST", "url": "Claim", "ifNoneExist": cond}, "resource": mine}
        tx = fhir(billing_data, "POST", "", alice, json=_bundle("transaction", entry))
        statuses.append((create.status_code, update.status_code, tx.status_code))
        for r in (create, update, tx):
            assert "claim-dup" not in r.text and "claim-b" not in r.text
    # conditional create makes alice's own claim; a conditional update that matches nothing would
    # be an update-as-create, which patient tokens may not do (see the test above)
    assert statuses == [(201, 403, 200), (201, 403, 200)]
