"""One error type for everything the server refuses, rendered as an OperationOutcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: severity, IssueType code, diagnostics, FHIRPath expressions."""

    severity: str  # fatal | error | warning | information
    code: str  # http://hl7.org/fhir/issue-type: invalid, structure, required, value, not-found, ...
    diagnostics: str
    expression: tuple[str, ...] = ()
    details_code: str | None = None  # stable rule code, e.g. "SCRUB-NPI-LUHN"

    def to_json(self) -> dict[str, Any]:
        """The issue as FHIR JSON."""
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.details_code:
            out["details"] = {
                "coding": [{"system": "urn:fhirbill:rule", "code": self.details_code}],
                "text": self.diagnostics,
            }
        out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    """An OperationOutcome resource for the issues (an 'all ok' information issue when empty)."""
    if not issues:
        issues = [Issue("information", "informational", "No issues found.")]
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


@dataclass
class FHIRError(Exception):
    """An HTTP-level refusal: status plus the issues that explain it."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        status: int,
        code: str,
        diagnostics: str,
        expression: str | list[str] | None = None,
        **headers: str,
    ) -> FHIRError:
        """Shortcut for a one-issue error."""
        expr: tuple[str, ...]
        if expression is None:
            expr = ()
        elif isinstance(expression, str):
            expr = (expression,)
        else:
            expr = tuple(expression)
        return cls(status, [Issue("error", code, diagnostics, expr)], dict(headers))

    def __str__(self) -> str:
        return f"{self.status}: " + "; ".join(i.diagnostics for i in self.issues)

    def to_outcome(self) -> dict[str, Any]:
        """The OperationOutcome body."""
        return outcome(self.issues)
