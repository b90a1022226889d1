"""Golden field-by-field checks of the 837s built from the tests/data/x12 claims."""

from __future__ import annotations

import pytest
from x12_helpers import (
    SHARED_X12,
    assert_pyx12_valid,
    build,
    claim_input,
    find,
    load,
    segments,
)

from fhirbill.x12 import ControlNumbers

FIXTURES = [
    "claim-professional-subscriber",
    "claim-professional-dependent",
    "claim-professional-replacement",
    "claim-professional-void",
    "claim-institutional",
]


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_claims_are_pyx12_valid(name: str) -> None:
    result = build([claim_input(load(f"{name}.json"))])
    assert result.refused == ()
    assert_pyx12_valid(result.text)


def _loop_ids(text: str) -> list[str]:
    """Segment ids with their qualifier for NM1/HL/REF/DTP: the loop skeleton of a file."""
    out = []
    for seg in segments(text):
        out.append(seg[0] + ("*" + seg[1] if seg[0] in ("NM1", "REF", "DTP", "HI") else ""))
    return out


def test_professional_subscriber_golden() -> None:
    result = build([claim_input(load("claim-professional-subscriber.json"))])
    segs = segments(result.text)
    assert find(segs, "CLM") == [["CLM", "PATACCT001", "150", "", "", "11:B:1", "Y", "A", "Y", "Y"]]
    assert find(segs, "HI") == [["HI", "ABK:J069", "ABF:R509"]]
    assert find(segs, "SV1") == [
        ["SV1", "HC:99213:25", "100", "UN", "1", "", "", "1:2"],
        ["SV1", "HC:87880", "50", "UN", "1", "", "", "1"],
    ]
    assert find(segs, "SBR") == [["SBR", "P", "18", "GRP001", "", "", "", "", "", "CI"]]
    assert find(segs, "NM1", "85") == [
        ["NM1", "85", "2", "SPRINGFIELD FAMILY MEDICINE", "", "", "", "", "XX", "1234567893"]
    ]
    assert find(segs, "N4")[0] == ["N4", "SPRINGFIELD", "IL", "627011234"]
    assert find(segs, "REF", "EI") == [["REF", "EI", "123456789"]]
    assert find(segs, "NM1", "IL") == [["NM1", "IL", "1", "DOE", "JOHN", "Q", "", "", "MI", "MEM123456"]]
    assert find(segs, "DMG") == [["DMG", "D8", "19800101", "M"]]
    assert find(segs, "NM1", "PR") == [["NM1", "PR", "2", "ACME HEALTH PLAN", "", "", "", "", "PI", "ACME01"]]
    assert find(segs, "NM1", "82") == [
        ["NM1", "82", "1", "SMITH", "ROBERT", "A", "", "MD", "XX", "1245319599"]
    ]
    assert find(segs, "HL") == [["HL", "1", "", "20", "1"], ["HL", "2", "1", "22", "0"]]
    assert find(segs, "PAT") == []
    assert find(segs, "REF", "6R") == [["REF", "6R", "PATACCT001-1"], ["REF", "6R", "PATACCT001-2"]]
    assert find(segs, "DTP", "472") == [["DTP", "472", "D8", "20240110"]] * 2
    st = segs.index(find(segs, "ST")[0])
    se = segs.index(find(segs, "SE")[0])
    assert find(segs, "SE") == [["SE", str(se - st + 1), "0001"]]
    assert find(segs, "GE") == [["GE", "1", "101"]]
    assert find(segs, "IEA") == [["IEA", "1", "000000101"]]
    assert segs[0][13] == "000000101" and find(segs, "GS")[0][6] == "101"
    (claim,) = result.claims
    assert (claim.isa13, claim.gs06, claim.st02, claim.clm01) == (101, 101, 1, "PATACCT001")
    assert claim.line_controls == {1: "PATACCT001-1", 2: "PATACCT001-2"}
    assert claim.bht03 == "000000101-0001" and find(segs, "BHT")[0][3] == claim.bht03


def test_professional_has_the_loop_structure_of_the_shared_sample() -> None:
    ours = build([claim_input(load("claim-professional-subscriber.json"))]).text
    sample = (SHARED_X12 / "min837p.x12").read_text()
    # The sample also carries REF*D9 (a clearinghouse id), which fhirbill does not send.
    assert [s for s in _loop_ids(sample) if s != "REF*D9"] == _loop_ids(ours)


def test_institutional_golden_and_structure() -> None:
    result = build([claim_input(load("claim-institutional.json"))])
    segs = segments(result.text)
    assert find(segs, "GS")[0][8] == "005010X223A2"
    assert find(segs, "CLM") == [["CLM", "PATACCT002", "350", "", "", "13:A:1", "", "A", "Y", "Y"]]
    assert find(segs, "DTP", "434") == [["DTP", "434", "RD8", "20240110-20240110"]]
    assert find(segs, "CL1") == [["CL1", "2", "1", "01"]]
    assert find(segs, "HI") == [
        ["HI", "ABK:R0789"],
        ["HI", "ABF:I10"],
        ["HI", "BE:A1:::100"],
        ["HI", "BG:01"],
    ]
    assert find(segs, "SV2") == [
        ["SV2", "0450", "HC:99283", "300", "UN", "1"],
        ["SV2", "0300", "HC:80053", "50", "UN", "1"],
    ]
    assert find(segs, "NM1", "71") == [["NM1", "71", "1", "JONES", "MARY", "", "", "", "XX", "1333333338"]]
    assert find(segs, "NM1", "DN")[0][3] == "NGO"
    # The item's own line item control number wins over the derived one.
    assert result.claims[0].line_controls == {1: "PATACCT002-1", 2: "LINE0002"}
    sample = (SHARED_X12 / "min837i.x12").read_text()
    skeleton = [s for s in _loop_ids(sample) if s != "REF*D9"]
    ours = [s for s in _loop_ids(result.text) if s not in ("REF*6R", "NM1*DN")]
    assert skeleton == ours


def test_dependent_has_2000c_and_facility() -> None:
    result = build([claim_input(load("claim-professional-dependent.json"))])
    segs = segments(result.text)
    assert find(segs, "HL") == [
        ["HL", "1", "", "20", "1"],
        ["HL", "2", "1", "22", "1"],
        ["HL", "3", "2", "23", "0"],
    ]
    assert find(segs, "SBR")[0][2] == ""  # SBR02 blank when the patient is not the subscriber
    assert find(segs, "PAT") == [["PAT", "19"]]
    assert find(segs, "NM1", "QC") == [["NM1", "QC", "1", "DOE", "JANE"]]
    assert find(segs, "DMG") == [["DMG", "D8", "19800101", "M"], ["DMG", "D8", "20120504", "F"]]
    assert find(segs, "NM1", "77") == [
        ["NM1", "77", "2", "SPRINGFIELD URGENT CARE", "", "", "", "", "XX", "1555555550"]
    ]
    assert find(segs, "CLM")[0][2] == "135.5"
    assert find(segs, "SV1")[0][2] == "135.5"


@pytest.mark.parametrize(
    ("name", "code", "icn"),
    [
        ("claim-professional-replacement", "7", "PAYERCLM0001"),
        ("claim-professional-void", "8", "PAYERCLM0002"),
    ],
)
def test_replacement_and_void(name: str, code: str, icn: str) -> None:
    result = build([claim_input(load(f"{name}.json"))])
    segs = segments(result.text)
    assert find(segs, "CLM")[0][5] == f"11:B:{code}"
    assert find(segs, "REF", "F8") == [["REF", "F8", icn]]
    assert result.claims[0].frequency == code


def test_batch_groups_by_payer_and_kind() -> None:
    claims = [load(f"{name}.json") for name in FIXTURES]
    other_payer = load("claim-professional-subscriber.json")
    other_payer["id"] = "prof-other-payer"
    other_payer["identifier"][0]["value"] = "PATACCT009"
    other_payer["insurer"] = {"reference": "Organization/blue-plan"}
    claims.append(other_payer)
    result = build([claim_input(c) for c in claims], ControlNumbers(7, 40, 900))
    assert_pyx12_valid(result.text)
    assert [(g.gs06, g.kind, g.payer_id, g.st02s) for g in result.groups] == [
        (40, "837P", "ACME01", (900, 901, 902, 903)),
        (41, "837I", "ACME01", (904,)),
        (42, "837P", "PBC77", (905,)),
    ]
    segs = segments(result.text)
    assert [s[2] for s in find(segs, "ST")] == ["0900", "0901", "0902", "0903", "0904", "0905"]
    assert [s[1:] for s in find(segs, "GE")] == [["4", "40"], ["1", "41"], ["1", "42"]]
    assert find(segs, "IEA") == [["IEA", "3", "000000007"]]
    assert result.next_control == ControlNumbers(8, 43, 906)
    assert sorted(c.index for c in result.claims) == list(range(6))


def test_payer_id_override_and_production_flag() -> None:
    result = build(
        [claim_input(load("claim-professional-subscriber.json"))],
        payer_id_overrides={"acme-health": "87726"},
        usage_indicator="P",
        line_breaks=False,
    )
    assert "\n" not in result.text
    segs = segments(result.text)
    assert find(segs, "NM1", "PR")[0][9] == "87726"
    assert segs[0][15] == "P"
    assert len(result.text.split("~")[0]) + 1 == 106  # ISA is fixed width
    assert_pyx12_valid(result.text)
