"""_summary and _elements: trimming a resource to some of its top-level elements."""

from __future__ import annotations

from functools import cache
from typing import Any

from fhirbill.fhir.registry import model_class

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _summary_elements(resource_type: str) -> frozenset[str]:
    """Top-level elements the spec marks isSummary, from the model's metadata."""
    out = set()
    for name, f in model_class(resource_type).model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if extra.get("summary_element_property") or extra.get("element_required"):
            out.add(f.alias or name)
    return frozenset(out)


def subset(resource: dict[str, Any], *, summary: str | None, elements: tuple[str, ...]) -> dict[str, Any]:
    """The resource cut down per _summary (true, text, data) or _elements, tagged SUBSETTED."""
    rt = resource["resourceType"]
    if elements:
        names = {e.split(".", 1)[1] if "." in e else e for e in elements}
        keep = set(_ALWAYS) | names
    elif summary == "true":
        keep = set(_ALWAYS) | _summary_elements(rt)
    elif summary == "text":
        keep = set(_ALWAYS) | {"text"} | {n for n in _summary_elements(rt) if n in ("status",)}
    elif summary == "data":
        keep = set(resource) - {"text"}
    else:
        return resource
    out = {k: v for k, v in resource.items() if k in keep or k.lstrip("_") in keep}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    out["meta"] = meta
    return out
