"""Pure X12 5010 translation: FHIR Claims in, 837P/837I text out; no database, web or clock.

Public API: `build_837(claims, config, control, now) -> Interchange` (writer), `ClaimInput` and
`resolver` (claims), `X12Config` (config), `ControlNumbers` (envelope).
"""

from fhirbill.x12.claims import ClaimInput, resolver
from fhirbill.x12.config import X12Config
from fhirbill.x12.envelope import ControlNumbers
from fhirbill.x12.writer import BuiltClaim, Group, Interchange, RefusedClaim, build_837

__all__ = [
    "BuiltClaim",
    "ClaimInput",
    "ControlNumbers",
    "Group",
    "Interchange",
    "RefusedClaim",
    "X12Config",
    "build_837",
    "resolver",
]
