"""Properties: any text stays valid X12, CLM02 = sum of SV102, control numbers never repeat."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from x12_helpers import assert_pyx12_valid, build, claim_input, find, load, resources, segments

from fhirbill.x12 import ClaimInput, ControlNumbers, resolver
from fhirbill.x12.text import DELIMITERS, clean

# Delimiters, accents, emoji and control characters mixed into ordinary text.
nasty = st.text(
    alphabet=st.one_of(
        st.sampled_from("*:^~ \n\t#@%_|<>$éÉñÑüßøÆłŁ漢字😀🏥-.'&"),
        st.characters(codec="utf-8"),
        st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"),
    ),
    max_size=120,
)
long_text = st.one_of(nasty, nasty.map(lambda s: (s + "X") * 40))
TEXT_ISSUES = {"X12-NAME", "X12-ADDRESS", "X12-SUBSCRIBER-ID"}
SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(nasty)
@settings(max_examples=200, deadline=None)
def test_clean_never_leaves_a_delimiter_or_lowercase(value: str) -> None:
    out = clean(value)
    assert not DELIMITERS & set(out)
    assert out == out.upper() and out.isascii()
    assert out == out.strip() and "  " not in out
    assert len(clean(value, 10)) <= 10


def _dependent_with(texts: dict[str, str]) -> tuple[ClaimInput, dict[str, Any]]:
    res = {r["id"]: copy.deepcopy(r) for r in resources()}
    jane, john, org = res["jane-doe"], res["john-doe"], res["springfield-fm"]
    jane["name"] = [{"family": texts["family"], "given": [texts["given"], texts["middle"]]}]
    jane["address"][0]["line"] = [texts["line1"], texts["line2"]]
    jane["address"][0]["city"] = texts["city"]
    john["name"][0]["family"] = texts["sub_family"]
    org["name"] = texts["org"]
    res["cov-jane"]["subscriberId"] = texts["member"]
    claim = load("claim-professional-dependent.json")
    return ClaimInput(claim, resolver(list(res.values()))), jane


@given(
    st.fixed_dictionaries(
        {
            k: long_text
            for k in (
                "family",
                "given",
                "middle",
                "line1",
                "line2",
                "city",
                "sub_family",
                "org",
                "member",
            )
        }
    )
)
@SLOW
def test_any_text_yields_a_valid_file_or_a_clear_refusal(texts: dict[str, str]) -> None:
    inp, _ = _dependent_with(texts)
    result = build([inp])
    if result.refused:
        # Only values with nothing left after cleaning (or too short) may be refused.
        assert {i.details_code for i in result.refused[0].issues} <= TEXT_ISSUES
        return
    assert_pyx12_valid(result.text)
    segs = segments(result.text)
    # Values land in their own elements: nothing shifted by a stray delimiter.
    assert find(segs, "NM1", "QC")[0][3] == clean(texts["family"], 60)
    assert find(segs, "NM1", "IL")[0][9] == clean(texts["member"], 80)
    assert find(segs, "NM1", "85")[0][3] == clean(texts["org"], 60)
    for seg in segs[1:]:
        for element in seg:
            assert not {"^", "~"} & set(element)


amounts = st.decimals(min_value=0, max_value=Decimal("99999.99"), places=2)


def _with_lines(charges: list[Decimal]) -> dict[str, Any]:
    claim = load("claim-professional-subscriber.json")
    template = claim["item"][1]
    claim["item"] = [
        dict(copy.deepcopy(template), sequence=n, net={"value": str(c), "currency": "USD"})
        for n, c in enumerate(charges, start=1)
    ]
    claim["total"] = {"value": str(sum(charges, Decimal(0))), "currency": "USD"}
    return claim


@given(st.lists(amounts, min_size=1, max_size=50))
@settings(max_examples=60, deadline=None)
def test_clm02_equals_the_sum_of_sv102(charges: list[Decimal]) -> None:
    result = build([claim_input(_with_lines(charges))])
    segs = segments(result.text)
    clm02 = Decimal(find(segs, "CLM")[0][2])
    sv102 = [Decimal(s[2]) for s in find(segs, "SV1")]
    assert len(sv102) == len(charges)
    assert clm02 == sum(sv102, Decimal(0)) == sum(charges, Decimal(0))
    for seg in find(segs, "SV1") + find(segs, "CLM"):
        assert "." not in seg[2] or not seg[2].endswith("0")  # no trailing zeros
    assert len(set(result.claims[0].line_controls.values())) == len(charges)


@given(st.lists(amounts, min_size=1, max_size=50))
@SLOW
def test_generated_line_sets_are_pyx12_valid(charges: list[Decimal]) -> None:
    assert_pyx12_valid(build([claim_input(_with_lines(charges))]).text)


@given(st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=25))
@settings(max_examples=40, deadline=None)
def test_control_numbers_never_repeat_across_batches(batch_sizes: list[int]) -> None:
    base = [load("claim-professional-subscriber.json"), load("claim-institutional.json")]
    control = ControlNumbers(1, 1, 1)
    isa13s: list[int] = []
    gs06s: list[int] = []
    st02s: list[int] = []
    for size in batch_sizes:
        result = build([claim_input(base[n % 2]) for n in range(size)], control)
        if result.text:
            isa13s.append(result.isa13)
            gs06s += [g.gs06 for g in result.groups]
            st02s += [c.st02 for c in result.claims]
            segs = segments(result.text)
            assert [int(s[6]) for s in find(segs, "GS")] == [g.gs06 for g in result.groups]
            assert [int(s[2]) for s in find(segs, "ST")] == [c.st02 for c in result.claims]
        control = result.next_control
    for used in (isa13s, gs06s, st02s):
        assert len(used) == len(set(used))
        assert used == sorted(used)
