"""Validation of incoming resources: the R4B model plus the checks the models skip.

The models check structure, types, dates and cardinality. On top of them this module checks
FHIR JSON rules (no empty arrays, objects, strings or nulls), required value-set bindings
(the `enum_values` the models carry as metadata), reference syntax and target types, and
collects the literal references a write must resolve. Every problem becomes an Issue with
the FHIRPath of the element.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, get_args, get_origin

import orjson
from pydantic import ValidationError

from fhirbill.fhir.errors import FHIRError, Issue
from fhirbill.fhir.registry import is_resource_type, model_class

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# Type/id or Type/id/_history/vid, relative to this server.
LOCAL_REF_RE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?$")
ABSOLUTE_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True, slots=True)
class LocalRef:
    """A literal reference to a resource on this server, found at `path`."""

    path: str
    resource_type: str
    id: str


@dataclass
class Checked:
    """A resource that passed validation, with what the store needs to know about it."""

    data: dict[str, Any]
    references: list[LocalRef] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    enums: frozenset[str] | None
    child: Any  # model class for complex children, None for primitives
    ref_types: tuple[str, ...]
    resource_slot: bool  # holds any resource (contained, Bundle.entry.resource)
    json_type: str | None  # for primitives: the JSON type FHIR requires (boolean, integer, number, string)


# The models coerce "yes" to true and "1" to 1; FHIR JSON does not, so check JSON types first.
_JSON_TYPES: dict[type, str] = {bool: "boolean", int: "integer", Decimal: "number", float: "number"}
_JSON_CHECKS = {
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
}


def _json_type(ann: Any) -> str | None:
    base = get_args(ann)[0] if get_origin(ann) is Annotated else ann
    if base in _JSON_TYPES:
        return _JSON_TYPES[base]
    if base in (str, bytes, datetime, date, time):
        return "string"
    return None


def parse_json(body: bytes) -> Any:
    """Parse a request body, refusing empty or malformed JSON with 400."""
    if not body or not body.strip():
        raise FHIRError.of(400, "structure", "The request body is empty; a FHIR JSON resource is required.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FHIRError.of(
            400, "structure", f"The body is not valid JSON: {exc.msg} at position {exc.pos}."
        ) from None


def loc_to_fhirpath(root: str, loc: tuple[Any, ...]) -> str:
    """Turn a pydantic error location into a FHIRPath expression like Claim.item[0].sequence."""
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = str(part)
            if name.endswith("__ext"):
                name = "_" + name[: -len("__ext")]
            if "Type" in name and name[:1].isupper() and out.endswith("]"):
                continue  # union member tags that pydantic adds for polymorphic slots
            out += "." + name
    return out


def _model_issues(root: str, exc: ValidationError) -> list[Issue]:
    issues = []
    for err in exc.errors(include_url=False, include_input=False):
        kind = err["type"]
        path = loc_to_fhirpath(root, tuple(err["loc"]))
        if kind == "extra_forbidden":
            issues.append(Issue("error", "structure", f"Unknown element '{path}'.", (path,)))
        elif kind == "missing":
            issues.append(Issue("error", "required", f"Missing required element '{path}'.", (path,)))
        else:
            issues.append(Issue("error", "value", f"Invalid value at '{path}': {err['msg']}.", (path,)))
    return issues


@cache
def _plan(cls: Any) -> dict[str, _FieldPlan]:
    plan: dict[str, _FieldPlan] = {}
    for fname, finfo in cls.model_fields.items():
        alias = finfo.alias or fname
        extra = finfo.json_schema_extra if isinstance(finfo.json_schema_extra, dict) else {}
        enums = extra.get("enum_values")
        ann = finfo.annotation
        # Unwrap Optional[List[X]] / Optional[X] to the element type.
        for _ in range(3):
            args = [a for a in get_args(ann) if a is not type(None)]
            if getattr(ann, "__origin__", None) in (list,) or (args and len(args) == 1):
                ann = args[0] if args else ann
            else:
                break
        child = None
        resource_slot = False
        getter = getattr(ann, "get_model_klass", None)
        if getter is not None:
            klass = getter()
            if klass.__name__ == "Resource":
                resource_slot = True
            elif hasattr(klass, "model_fields"):
                child = klass
        plan[alias] = _FieldPlan(
            frozenset(enums) if enums else None,
            child,
            tuple(extra.get("enum_reference_types") or ()),
            resource_slot,
            None if (child is not None or resource_slot) else _json_type(ann),
        )
    return plan


class _Walker:
    """Walks raw JSON beside the model classes, for what the models do not check."""

    def __init__(self, in_bundle: bool) -> None:
        self.in_bundle = in_bundle
        self.issues: list[Issue] = []
        self.refs: list[LocalRef] = []
        self.contained_ids: set[str] = set()
        self.reference_cls = model_class("Reference")

    def resource(self, data: dict[str, Any], path: str) -> None:
        rt = data.get("resourceType")
        if not isinstance(rt, str) or not is_resource_type(rt):
            return  # the model check reports this
        self.obj(data, model_class(rt), path)

    def obj(self, data: dict[str, Any], cls: Any, path: str) -> None:
        if not data:
            self.issues.append(Issue("error", "structure", f"Empty object at '{path}'.", (path,)))
            return
        plan = _plan(cls)
        for key, value in data.items():
            if key == "resourceType":
                continue
            fp = plan.get(key)
            sub = f"{path}.{key}"
            if isinstance(value, list):
                if not value:
                    self.issues.append(Issue("error", "structure", f"Empty array at '{sub}'.", (sub,)))
                    continue
                for i, item in enumerate(value):
                    if item is not None or not key.startswith("_"):
                        self.value(item, fp, f"{sub}[{i}]")
            else:
                self.value(value, fp, sub)
        if cls is self.reference_cls:
            self.reference(data, path)

    def value(self, value: Any, fp: _FieldPlan | None, path: str) -> None:
        if fp is not None and fp.json_type is not None and value is not None:
            if not _JSON_CHECKS[fp.json_type](value):
                self.issues.append(
                    Issue("error", "value", f"'{path}' must be a JSON {fp.json_type}.", (path,))
                )
                return
        if value is None:
            self.issues.append(Issue("error", "structure", f"Null value at '{path}'.", (path,)))
        elif isinstance(value, str):
            if value == "" or value.isspace():
                self.issues.append(Issue("error", "structure", f"Empty string at '{path}'.", (path,)))
            elif fp is not None and fp.enums is not None and value not in fp.enums:
                allowed = ", ".join(sorted(fp.enums))
                self.issues.append(
                    Issue("error", "code-invalid", f"'{path}' must be one of: {allowed}.", (path,))
                )
        elif isinstance(value, dict) and fp is not None:
            if fp.resource_slot:
                self.resource(value, path)
                if path.split(".")[-1].startswith("contained") and isinstance(value.get("id"), str):
                    self.contained_ids.add(value["id"])
            elif fp.child is not None:
                self.obj(value, fp.child, path)
                if fp.ref_types and fp.child is self.reference_cls:
                    self.target_type(value, fp.ref_types, path)

    def reference(self, ref: dict[str, Any], path: str) -> None:
        text = ref.get("reference")
        if not isinstance(text, str) or not text:
            return
        if text.startswith("#"):
            if text != "#" and not ID_RE.match(text[1:]):
                self._bad_ref(path, "a contained reference must be '#' followed by a FHIR id")
            return
        if text.startswith("urn:uuid:") or text.startswith("urn:oid:"):
            if not self.in_bundle:
                self._bad_ref(path, "urn: references are only allowed inside a Bundle")
            return
        m = LOCAL_REF_RE.match(text)
        if m:
            if not is_resource_type(m.group(1)):
                self._bad_ref(path, f"'{m.group(1)}' is not a resource type this server knows")
                return
            self.refs.append(LocalRef(f"{path}.reference", m.group(1), m.group(2)))
            return
        if ABSOLUTE_RE.match(text) and " " not in text:
            return  # absolute URL; the caller localises ones that point at this server
        self._bad_ref(path, "expected 'Type/id', an absolute URL, '#id' or a urn:uuid")

    def target_type(self, ref: dict[str, Any], allowed: tuple[str, ...], path: str) -> None:
        text = ref.get("reference")
        m = LOCAL_REF_RE.match(text) if isinstance(text, str) else None
        if m and "Resource" not in allowed and m.group(1) not in allowed:
            self.issues.append(
                Issue(
                    "error",
                    "value",
                    f"'{path}' may only refer to {', '.join(allowed)}, not {m.group(1)}.",
                    (f"{path}.reference",),
                )
            )

    def _bad_ref(self, path: str, why: str) -> None:
        self.issues.append(
            Issue("error", "value", f"Invalid reference at '{path}': {why}.", (f"{path}.reference",))
        )


def validate_resource(
    data: Any, expected_type: str | None = None, *, in_bundle: bool = False, root: str | None = None
) -> Checked:
    """Validate one resource (a parsed JSON object); raise FHIRError 400 listing every problem."""
    if not isinstance(data, dict):
        raise FHIRError.of(400, "structure", "A FHIR resource must be a JSON object.", root)
    rt = data.get("resourceType")
    if not isinstance(rt, str):
        raise FHIRError.of(400, "required", "The resource has no resourceType.", root)
    if not is_resource_type(rt):
        raise FHIRError.of(400, "not-supported", f"'{rt}' is not a resource type this server stores.", root)
    if expected_type is not None and rt != expected_type:
        raise FHIRError.of(
            400, "invalid", f"resourceType '{rt}' does not match the URL's type '{expected_type}'.", root
        )
    prefix = root or rt
    issues: list[Issue] = []
    if "id" in data and not (isinstance(data["id"], str) and ID_RE.match(data["id"])):
        issues.append(
            Issue("error", "value", "Resource id must be 1-64 of A-Z a-z 0-9 - and .", (f"{prefix}.id",))
        )
    try:
        model_class(rt).model_validate(data)
    except ValidationError as exc:
        issues.extend(_model_issues(prefix, exc))
    walker = _Walker(in_bundle)
    walker.obj(data, model_class(rt), prefix)
    issues.extend(walker.issues)
    if issues:
        raise FHIRError(400, _dedupe(issues))
    return Checked(data, walker.refs)


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str, tuple[str, ...]]] = set()
    out = []
    for i in issues:
        key = (i.diagnostics, i.expression)
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out
