"""Small helpers shared by the API tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def load(path: str | Path) -> dict[str, Any]:
    """A JSON file under tests/data (or an absolute path)."""
    p = Path(path)
    return json.loads((p if p.is_absolute() else DATA / p).read_text())  # type: ignore[no-any-return]


def examples() -> dict[tuple[str, str], dict[str, Any]]:
    """The official R4 examples by (type, id)."""
    out = {}
    for f in sorted((DATA / "fhir-r4-examples").glob("*.json")):
        d = json.loads(f.read_text())
        out[(d["resourceType"], d["id"])] = d
    return out


def without_meta(d: dict[str, Any]) -> dict[str, Any]:
    """A resource without id and meta, for comparing what was stored with what was sent."""
    return {k: v for k, v in d.items() if k not in ("id", "meta")}


def put(client: Any, resource: dict[str, Any]) -> Any:
    """PUT a resource to its own id."""
    return client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=FHIR_JSON)


def post(client: Any, resource: dict[str, Any], **headers: str) -> Any:
    """POST a resource to its type."""
    return client.post(f"/fhir/{resource['resourceType']}", json=resource, headers={**FHIR_JSON, **headers})
