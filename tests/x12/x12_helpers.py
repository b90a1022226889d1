"""Test helpers: pyx12 validation through its Python API, fixture loading, X12 parsing."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyx12.error_handler
import pyx12.params
import pyx12.x12n_document

from fhirbill.x12 import ClaimInput, ControlNumbers, X12Config, build_837, resolver

DATA = Path(__file__).resolve().parents[1] / "data" / "x12"
SHARED_X12 = DATA  # the shared pyx12-valid samples, copied from ../shared/fixtures/x12
NOW = datetime(2024, 1, 15, 12, 0)
# With charset B pyx12 flags the ISA11 repetition separator ^ itself: the one expected finding.
ISA11_FINDING = "ISA11 (^): 6"

logging.getLogger("pyx12").addHandler(logging.NullHandler())


@contextlib.contextmanager
def _capture_errh() -> Iterator[list[Any]]:
    """Record the err_handler that x12n_document creates (it does not return it)."""
    created: list[Any] = []
    original = pyx12.error_handler.err_handler

    class Recording(original):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            created.append(self)

    pyx12.error_handler.err_handler = Recording  # type: ignore[misc]
    try:
        yield created
    finally:
        pyx12.error_handler.err_handler = original  # type: ignore[misc]


def _walk(node: Any, out: list[str]) -> None:
    """Collect every error in the errh tree: ISA/GS/ST/segment errors and their element errors."""
    label = getattr(node, "seg_id", None) or getattr(node, "id", "?")
    for err in getattr(node, "errors", ()):
        out.append(f"{label}: {err[0]} {err[1]}" + (f" ({err[2]})" if len(err) > 2 and err[2] else ""))
    for ele in getattr(node, "elements", ()):
        for cde, _text, value in ele.errors:
            ref = f"{label}{ele.ele_pos:02d}" if label in ("ISA", "GS", "ST") else ele.name
            out.append(
                f"{ref} ({value}): {cde}" if label == "ISA" else f"{label} {ref} ({value}): {cde} {_text}"
            )
    for child in getattr(node, "children", ()):
        _walk(child, out)


def pyx12_findings(text: str) -> list[str]:
    """Validate X12 text with pyx12 (charset B) and return every finding, as readable strings."""
    param = pyx12.params.params()
    param.set("charset", "B")
    with _capture_errh() as created:
        ok = pyx12.x12n_document.x12n_document(
            param=param, src_file=io.StringIO(text), fd_997=None, fd_html=None, fd_xmldoc=None
        )
    findings: list[str] = []
    for errh in created:
        _walk(errh, findings)
    if not ok and not findings:
        findings.append("pyx12 reported failure without a recorded error")
    return findings


def assert_pyx12_valid(text: str) -> None:
    """Fail unless pyx12's only finding is the expected ISA11 one."""
    findings = pyx12_findings(text)
    assert findings == [ISA11_FINDING], "\n".join(findings) + "\n\n" + text


def load(name: str) -> dict[str, Any]:
    """A JSON fixture from tests/data/x12."""
    with open(DATA / name, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def resources() -> list[dict[str, Any]]:
    """The shared demo resources (providers, payers, patients, coverages)."""
    return [e["resource"] for e in load("resources.json")["entry"]]


def claim_input(claim: dict[str, Any], extra: list[dict[str, Any]] | None = None) -> ClaimInput:
    """A ClaimInput resolving against the demo resources (plus `extra`)."""
    return ClaimInput(claim, resolver(resources() + (extra or [])))


def build(claims: list[ClaimInput], control: ControlNumbers | None = None, **config: Any) -> Any:
    """build_837 with demo settings."""
    return build_837(claims, X12Config(**config), control or ControlNumbers(101, 101, 1), NOW)


def segments(text: str) -> list[list[str]]:
    """X12 text split into segments of elements."""
    return [s.strip().split("*") for s in text.split("~") if s.strip()]


def find(segs: list[list[str]], seg_id: str, first: str | None = None) -> list[list[str]]:
    """Segments with `seg_id` (and element 1 equal to `first` when given)."""
    return [s for s in segs if s[0] == seg_id and (first is None or (len(s) > 1 and s[1] == first))]
