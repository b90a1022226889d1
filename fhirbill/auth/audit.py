"""R4 AuditEvents for REST interactions and token requests (built here, stored by the caller)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from fhirbill.auth.access import Principal

AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
ENTITY_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
CLIENT_SYSTEM = "urn:fhirbill:client"
USER_SYSTEM = "urn:fhirbill:user"
ACTIONS = frozenset("CRUDE")
# RESTful interactions -> AuditEvent.action
ACTION_OF = {
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "search-type": "E",
    "search-system": "E",
    "search": "E",
    "create": "C",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "batch": "E",
    "transaction": "E",
    "operation": "E",
    "capabilities": "R",
}


def _outcome(outcome: int | str) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (4xx), 8 serious failure (5xx), or as given."""
    if isinstance(outcome, str):
        if outcome not in ("0", "4", "8", "12"):
            raise ValueError("outcome must be 0, 4, 8 or 12")
        return outcome
    if outcome in (0, 4, 8, 12):
        return str(outcome)
    if outcome < 400:
        return "0"
    return "4" if outcome < 500 else "8"


def _instant(when: datetime | int | float) -> str:
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, UTC)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _source() -> dict[str, Any]:
    return {
        "observer": {"display": "fhirbill"},
        "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
    }


def _network(source_ip: str | None) -> dict[str, Any]:
    return {"network": {"address": source_ip, "type": "2"}} if source_ip else {}


def audit_event(
    principal: Principal | None,
    action: str,
    subtype: str,
    entities: Iterable[str],
    outcome: int | str,
    source_ip: str | None,
    when: datetime | int | float,
    *,
    description: str | None = None,
) -> dict[str, Any]:
    """An AuditEvent for one REST interaction.

    `subtype` is the FHIR restful-interaction code (read, search-type, create, ...); `entities`
    are relative references (`Claim/1`) of what was touched; `outcome` an HTTP status or an
    AuditEvent outcome code.
    """
    if action not in ACTIONS:
        raise ValueError("action must be one of C R U D E")
    agents: list[dict[str, Any]] = []
    if principal is not None:
        agents.append(
            {
                "type": {"text": "client application"},
                "who": {"identifier": {"system": CLIENT_SYSTEM, "value": principal.client_id}},
                "name": principal.client_id,
                "requestor": principal.sub is None,
                **_network(source_ip),
            }
        )
        if principal.sub is not None:
            user: dict[str, Any] = {
                "type": {"text": "user"},
                "who": {"identifier": {"system": USER_SYSTEM, "value": principal.sub}},
                "requestor": True,
                **_network(source_ip),
            }
            if principal.fhir_user:
                user["who"]["reference"] = principal.fhir_user
            agents.append(user)
    else:
        agents.append({"type": {"text": "anonymous"}, "requestor": True, **_network(source_ip)})
    entity: list[dict[str, Any]] = []
    for ref in entities:
        entity.append(
            {
                "what": {"reference": ref},
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            }
        )
    if principal is not None and principal.patient:
        entity.append(
            {
                "what": {"reference": f"Patient/{principal.patient}"},
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": ENTITY_ROLE, "code": "1", "display": "Patient"},
            }
        )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": AUDIT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": INTERACTION, "code": subtype}],
        "action": action,
        "recorded": _instant(when),
        "outcome": _outcome(outcome),
        "agent": agents,
        "source": _source(),
    }
    if description:
        event["outcomeDesc"] = description
    if entity:
        event["entity"] = entity
    return event


def token_event(
    *,
    client_id: str | None,
    grant_type: str | None,
    outcome: int | str,
    description: str,
    source_ip: str | None,
    when: datetime | int | float,
) -> dict[str, Any]:
    """An AuditEvent for a token request (issued or refused): DICOM 110114 User Authentication."""
    agent: dict[str, Any] = {"type": {"text": "client application"}, "requestor": True}
    if client_id:
        agent["who"] = {"identifier": {"system": CLIENT_SYSTEM, "value": client_id}}
        agent["name"] = client_id
    agent.update(_network(source_ip))
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": "110114", "display": "User Authentication"},
        "subtype": [{"system": DCM, "code": "110122", "display": "Login"}],
        "action": "E",
        "recorded": _instant(when),
        "outcome": _outcome(outcome),
        "outcomeDesc": description if not grant_type else f"{grant_type}: {description}",
        "agent": [agent],
        "source": _source(),
    }
    return event
