"""Access decisions in the FHIR layer: scopes per interaction, and patient confinement.

`Access` is built per request from the bearer token. Interactions and Bundles ask it before
they touch data; with authorization switched off (a test-only factory option) it allows all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection

from fhirbill.api.server import Server
from fhirbill.auth.access import Grant, Principal, require
from fhirbill.fhir.compartment import patient_access, patient_param
from fhirbill.fhir.errors import FHIRError
from fhirbill.fhir.indexer import IndexRows, extract
from fhirbill.fhir.search_query import ParsedSearch
from fhirbill.store import search
from fhirbill.store.resources import Stored

# The scope letter each interaction needs.
LETTERS = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "history-type": "r",
    "search-type": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "operation": "r",
}


def _forbidden(why: str) -> FHIRError:
    return FHIRError.of(403, "forbidden", why)


@dataclass
class Access:
    """What the caller may do; `principal` None with `enabled` False means no authorization layer."""

    srv: Server
    principal: Principal | None
    enabled: bool = True

    def grant(self, res_type: str, letter: str) -> Grant | None:
        """The grant for an interaction, or 401/403. None when authorization is off."""
        if not self.enabled:
            return None
        if res_type == "AuditEvent" and letter not in ("r", "s"):
            raise FHIRError.of(
                405, "not-supported", "AuditEvents cannot be changed or deleted through the API."
            )
        return require(self.principal, res_type, letter)

    def may(self, res_type: str, letter: str) -> bool:
        """Whether the token's scopes allow this interaction on the type at all."""
        try:
            self.grant(res_type, letter)
        except FHIRError:
            return False
        return True

    @staticmethod
    def patient(grant: Grant | None) -> str | None:
        """The patient the grant confines to, if any."""
        return grant.patient if grant is not None else None

    def check_type(self, grant: Grant | None, res_type: str) -> str:
        """For a patient-confined grant: how this type may be seen; 403 when not at all."""
        if self.patient(grant) is None:
            return "all"
        mode = patient_access(res_type, self.srv.params)
        if mode == "none":
            raise _forbidden(f"{res_type} is not available to a patient-confined token.")
        return mode

    def confinement(self, grant: Grant | None, res_type: str) -> list[ColumnElement[bool]]:
        """SQL conditions that keep a query (search or conditional match) inside the grant's patient."""
        pid = self.patient(grant)
        if pid is None:
            return []
        mode = self.check_type(grant, res_type)
        if mode == "open":
            return []
        return [search.confine(None if mode == "self" else patient_param(res_type, self.srv.params), pid)]

    def check_hops(self, grant: Grant | None, parsed: ParsedSearch) -> None:
        """Chained and `_has` parameters may only reach types the caller may search, and a
        search that is not itself confined to the patient (Organization, ...) may not reach
        patient-confined records at all: its results would reveal other patients'."""
        if not self.enabled:
            return
        rt = parsed.resource_type
        confined = self.patient(grant) is not None and self.check_type(grant, rt) != "open"
        for clause in parsed.clauses:
            reached = [h.source_type for h in clause.has]
            reached += [t for link in clause.chain for t in link.target_types]
            for t in reached:
                g = self.grant(t, "s")
                if self.patient(g) is not None and self.check_type(g, t) != "open" and not confined:
                    raise _forbidden(
                        f"Chained or _has parameters from {rt} may not reach {t} "
                        "with a patient-confined token."
                    )

    def owner(self, data: dict[str, Any]) -> set[str]:
        """The Patient ids a resource's patient element names (its own id for a Patient)."""
        rt = data["resourceType"]
        if rt == "Patient":
            return {str(data.get("id"))}
        param = patient_param(rt, self.srv.params)
        if param is None:
            return set()
        rows = self._rows(data, [param]).reference
        return {r[2] for r in rows if r[1] == "Patient" and r[2]}

    def _rows(self, data: dict[str, Any], codes: list[str]) -> IndexRows:
        """Index rows of just these parameters (not all ~20 of the type) for one resource."""
        defs = self.srv.params.indexed_for_type(data["resourceType"])
        return extract(data, {c: defs[c] for c in codes if c in defs}, self.srv.base)

    def meets(self, grant: Grant | None, data: dict[str, Any]) -> bool:
        """Whether a resource satisfies a granular scope's parameters (v2 `...rs?type=sys|code`);
        token parameters only: anything else is not matched, so not granted."""
        if grant is None or not grant.constraints:
            return True
        codes = sorted({p for c in grant.constraints for p in c})
        tokens = self._rows(data, codes).token

        def match(param: str, value: str) -> bool:
            for alt in value.split(","):
                system, bar, code = alt.rpartition("|")
                for row in tokens:
                    if row[0] == param and row[2] == code and (not bar or row[1] == (system or None)):
                        return True
            return False

        return any(all(match(p, v) for p, v in c.items()) for c in grant.constraints)

    def check_data(self, grant: Grant | None, data: dict[str, Any]) -> None:
        """A write by a patient-confined token must stay inside that patient's records, and a
        granular scope's writes inside its parameters."""
        if not self.meets(grant, data):
            raise _forbidden("The resource is outside the access token's granular scope.")
        pid = self.patient(grant)
        if pid is None:
            return
        mode = self.check_type(grant, data["resourceType"])
        if mode == "open":
            raise _forbidden(f"A patient-confined token cannot write {data['resourceType']}.")
        if self.owner(data) != {pid}:
            raise _forbidden("The resource would not belong to the token's patient.")

    def check_stored(self, grant: Grant | None, stored: Stored | None) -> None:
        """A stored resource (or its absence) seen through a patient-confined token: same 403 either way."""
        pid = self.patient(grant)
        if pid is None and not (grant is not None and grant.constraints):
            return
        if stored is None or stored.content is None:
            raise _forbidden("Not available to this token.")
        data = orjson.loads(stored.content)
        if not self.meets(grant, data):
            raise _forbidden("Not available to this token.")
        if pid is None or self.check_type(grant, stored.res_type) == "open":
            return
        if pid not in self.owner(data):
            raise _forbidden("Not available to this token.")

    def visible(self, conn: Connection, rows: list[Stored]) -> list[Stored]:
        """Keep the rows this caller may read (for _include, _revinclude and history)."""
        if not self.enabled:
            return rows
        out = []
        for s in rows:
            try:
                g = self.grant(s.res_type, "r")
                self.check_stored(g, s)
            except FHIRError:
                continue
            out.append(s)
        return out
