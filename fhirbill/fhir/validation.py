"""Validation of incoming resources: one walk over the raw JSON, driven by the compiled R4B models.

The walk checks what the models check (element names, cardinality, required elements, choice
groups, primitive formats; see schema.py) and, in the same pass, what FHIR asks beyond them:
- JSON types: true, not "yes"; 1, not "1" or 1.0;
- no empty arrays, objects or strings, and no nulls, except a null lining a primitive array up with
  its `_x` extension array (which must then have the same length);
- required value-set bindings (the `enum_values` the models carry as metadata);
- reference syntax and target types; and it collects the literal references a write must resolve;
- every resource inside a resource (contained, Bundle.entry.resource) names a type this server knows;
- only FHIR JSON names (the models also take their Python names, such as `class_fhir`).
Every problem becomes an Issue with the FHIRPath of the element. `model_check` runs the pydantic
model itself; the tests hold the walk to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson
from pydantic import ValidationError

from fhirbill.fhir.errors import FHIRError, Issue
from fhirbill.fhir.registry import RESOURCE_TYPES, is_resource_type, model_class
from fhirbill.fhir.schema import Field, Shape, shape_of

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


def validate_resource(
    data: Any,
    expected_type: str | None = None,
    *,
    in_bundle: bool = False,
    root: str | None = None,
    rewrite: Mapping[str, str] | None = None,
) -> Checked:
    """Validate one resource (a parsed JSON object); raise FHIRError 400 listing every problem.

    With `rewrite` (a transaction's fullUrls and the server ids they became), every `reference`
    the walk meets that names a fullUrl is replaced in place before it is checked: the walk
    visits every object of a valid resource, so no second pass is needed.
    """
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
    shape = _resource_shape(rt)
    assert shape is not None  # every stored type has a model
    walk = _Walk(in_bundle, rewrite)
    walk.element(data, shape, prefix)
    issues.extend(walk.issues)
    if issues:
        raise FHIRError(400, _dedupe(issues))
    return Checked(data, walk.refs)


def model_check(data: dict[str, Any], root: str | None = None) -> list[Issue]:
    """The issues the pydantic model itself finds: the slow reference the walk is tested against."""
    rt = data["resourceType"]
    try:
        model_class(rt).model_validate(data)
    except ValidationError as exc:
        return _model_issues(root or rt, exc)
    except (KeyError, AttributeError, TypeError) as exc:
        # fhir_core crashes on some bad input (an unknown contained resourceType, a url that is not
        # a string, a list `_x` standing in for a required primitive list); each is a refusal.
        return [Issue("error", "structure", f"The model failed: {exc!r}.", (root or rt,))]
    return []


def _model_issues(root: str, exc: ValidationError) -> list[Issue]:
    issues = []
    for err in exc.errors(include_url=False, include_input=False):
        kind = err["type"]
        path = loc_to_fhirpath(root, tuple(err["loc"]))
        if kind == "extra_forbidden":
            issues.append(Issue("error", "structure", f"Unknown element '{path}'.", (path,)))
        elif kind in ("missing", "model_field_validation.missing"):
            issues.append(Issue("error", "required", f"Missing required element '{path}'.", (path,)))
        else:
            issues.append(Issue("error", "value", f"Invalid value at '{path}': {err['msg']}.", (path,)))
    return issues


@cache
def _resource_shape(resource_type: str) -> Shape | None:
    return shape_of(model_class(resource_type)) if is_resource_type(resource_type) else None


def compile_shapes() -> None:
    """Compile every stored type's shape now instead of on its first write."""
    for rt in RESOURCE_TYPES:
        _resource_shape(rt)


def _has_extension(ext: Any) -> bool:
    """An `_x` sibling that carries extensions, which may stand in for a required primitive `x`."""
    return isinstance(ext, dict) and bool(ext.get("extension"))


class _Walk:
    """One pass over a resource's JSON beside its compiled shape, collecting issues and references."""

    __slots__ = ("in_bundle", "issues", "refs", "rewrite")

    def __init__(self, in_bundle: bool, rewrite: Mapping[str, str] | None = None) -> None:
        self.in_bundle = in_bundle
        self.rewrite = rewrite
        self.issues: list[Issue] = []
        self.refs: list[LocalRef] = []

    def fail(self, code: str, diagnostics: str, path: str) -> None:
        self.issues.append(Issue("error", code, diagnostics, (path,)))

    def resource(self, data: dict[str, Any], path: str) -> None:
        rt = data.get("resourceType")
        if not isinstance(rt, str):
            self.fail("structure", f"The resource at '{path}' has no resourceType.", path)
            return
        shape = _resource_shape(rt)
        if shape is None:
            self.fail("structure", f"'{rt}' at '{path}' is not a resource type this server knows.", path)
            return
        self.element(data, shape, path)

    def element(self, data: dict[str, Any], shape: Shape, path: str) -> None:
        if not data:
            self.fail("structure", f"Empty object at '{path}'.", path)
            return
        if self.rewrite is not None:
            ref = data.get("reference")
            if type(ref) is str and ref in self.rewrite:
                data["reference"] = self.rewrite[ref]
        fields = shape.fields
        chosen: dict[str, str] | None = None
        for key, value in data.items():
            f = fields.get(key)
            if f is None:
                if key != "resourceType" or not shape.is_resource:
                    self.fail("structure", f"Unknown element '{path}.{key}'.", f"{path}.{key}")
                continue
            if value is None:
                self.fail("structure", f"Null value at '{path}.{key}'.", f"{path}.{key}")
                continue
            if f.choice is not None:
                if chosen is None:
                    chosen = {}
                first = chosen.setdefault(f.choice, key)
                if first != key:
                    self.fail(
                        "structure",
                        f"Only one {f.choice}[x] is allowed at '{path}': found {first} and {key}.",
                        f"{path}.{key}",
                    )
            if type(value) is list:
                if f.many is False:
                    self.fail("structure", f"'{path}.{key}' must not be an array.", f"{path}.{key}")
                elif not value:
                    self.fail("structure", f"Empty array at '{path}.{key}'.", f"{path}.{key}")
                else:
                    self.items(data, value, f, f"{path}.{key}")
            elif f.many:
                self.fail("structure", f"'{path}.{key}' must be an array.", f"{path}.{key}")
            elif f.primitive is not None:
                self.primitive(value, f, f"{path}.{key}")
            else:
                self.complex(value, f, f"{path}.{key}")
        for f in shape.required:
            if f.key not in data and not (f.ext_key is not None and _has_extension(data.get(f.ext_key))):
                self.fail("required", f"Missing required element '{path}.{f.key}'.", f"{path}.{f.key}")
        for prefix, keys in shape.required_choices:
            if not any(k in data for k in keys):
                self.fail("required", f"Missing required element '{path}.{prefix}[x]'.", f"{path}.{prefix}")
        if shape.is_reference:
            self.reference(data, path)

    def items(self, data: dict[str, Any], values: list[Any], f: Field, path: str) -> None:
        # A null in a primitive array, or in its `_x` array, only holds a place for the other one.
        sibling_key = f.ext_key or f.ext_of
        sibling = data.get(sibling_key) if sibling_key is not None else None
        if type(sibling) is not list:
            sibling = None
        elif f.ext_of is not None and len(sibling) != len(values):
            self.fail("structure", f"'{path}' must have one entry per value of '{f.ext_of}'.", path)
        for i, item in enumerate(values):
            if item is None:
                if sibling is None or i >= len(sibling) or sibling[i] is None:
                    self.fail("structure", f"Null value at '{path}[{i}]'.", f"{path}[{i}]")
            elif f.primitive is not None:
                self.primitive(item, f, f"{path}[{i}]")
            else:
                self.complex(item, f, f"{path}[{i}]")

    def primitive(self, value: Any, f: Field, path: str) -> None:
        p = f.primitive
        assert p is not None
        if type(value) not in p.json_types:
            self.fail("value", f"'{path}' must be a JSON {p.json_name}.", path)
        elif type(value) is str and (not value or value.isspace()):
            self.fail("structure", f"Empty string at '{path}'.", path)
        elif not p.check(value):
            self.fail("value", f"Invalid value at '{path}': {p.explain(value)}.", path)
        elif f.enums is not None and value not in f.enums:
            allowed = ", ".join(sorted(f.enums))
            self.fail("code-invalid", f"'{path}' must be one of: {allowed}.", path)

    def complex(self, value: Any, f: Field, path: str) -> None:
        if type(value) is not dict:
            self.fail("value", f"'{path}' must be a JSON object.", path)
        elif f.resource:
            self.resource(value, path)
        else:
            assert f.shape is not None
            self.element(value, f.shape, path)
            if f.ref_types:
                self.target_type(value, f.ref_types, path)

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
        if m and m.group(1) not in allowed:
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


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str, tuple[str, ...]]] = set()
    out = []
    for i in issues:
        key = (i.diagnostics, i.expression)
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out
