"""What the fhir.resources R4B models enforce, compiled once per model class for a walk over raw JSON.

The models stay the source of truth. Element names, cardinality, required elements, choice groups,
required bindings and reference targets come from each model's `model_fields` (aliases, annotations
and `json_schema_extra`); each primitive's rule comes from its annotation in fhir_core.types. Building
a model instance costs a Python object per element; reading the same facts once and checking the JSON
against them is what makes validation cheap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import cache
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fhir_core import types as fhir_types
from fhir_core.constraints import FHIR_PRIMITIVES_MAPS
from fhir_core.fhirabstractmodel import FHIR_COMMENTS_FIELD_NAME
from pydantic import TypeAdapter, ValidationError

# The JSON types FHIR requires for each kind of primitive (the models would also take "yes" or "1").
_JSON_TYPES: dict[Any, tuple[str, tuple[type, ...]]] = {
    bool: ("boolean", (bool,)),
    int: ("integer", (int,)),
    Decimal: ("number", (int, float)),
}
_STRING: tuple[str, tuple[type, ...]] = ("string", (str,))


@dataclass(frozen=True, slots=True, eq=False)
class Primitive:
    """A FHIR primitive type: the JSON type it needs and the model's rule for its values."""

    name: str  # the FHIR type: dateTime, code, positiveInt, ...
    json_name: str  # boolean | integer | number | string
    json_types: tuple[type, ...]
    check: Callable[[Any], bool]  # the model's rule, for a value already of the right JSON type
    adapter: TypeAdapter[Any]  # the model's own validator for this annotation, which explains refusals

    def explain(self, value: Any) -> str:
        """Why the model refuses this value, in pydantic's words."""
        try:
            self.adapter.validate_python(value)
        except ValidationError as exc:
            return str(exc.errors(include_url=False)[0]["msg"])
        return f"not a valid {self.name}"


@dataclass(slots=True, eq=False)
class Field:
    """One JSON property of an element, with everything the walk checks about it."""

    key: str
    many: bool | None  # a JSON array, a single value, or None where the model takes either
    primitive: Primitive | None = None
    shape: Shape | None = None  # complex elements
    resource: bool = False  # any resource; its own resourceType decides its shape
    enums: frozenset[str] | None = None  # a required binding
    ref_types: tuple[str, ...] = ()  # the types a Reference may point at, when restricted
    choice: str | None = None  # the value[x] group this member belongs to
    ext_key: str | None = None  # for a primitive `x`: its extension sibling `_x`
    ext_of: str | None = None  # for an extension sibling `_x`: the primitive `x`


@dataclass(slots=True, eq=False)
class Shape:
    """The compiled form of one model class."""

    name: str
    is_resource: bool
    is_reference: bool
    fields: dict[str, Field] = field(default_factory=dict)
    required: tuple[Field, ...] = ()
    required_choices: tuple[tuple[str, tuple[str, ...]], ...] = ()


_SHAPES: dict[type, Shape] = {}
_LOCK = threading.Lock()


def shape_of(cls: type) -> Shape:
    """The compiled shape of a model class, built once together with every class it reaches."""
    found = _SHAPES.get(cls)
    if found is not None:
        return found
    with _LOCK:
        # Publish a graph only once it is complete, so another thread never walks a half-built one.
        pending: dict[type, Shape] = {}
        shape = _build(cls, pending)
        _SHAPES.update(pending)
        return shape


def _build(cls: Any, pending: dict[type, Shape]) -> Shape:
    known = _SHAPES.get(cls) or pending.get(cls)
    if known is not None:
        return known
    shape = Shape(cls.__name__, cls.has_resource_base(), cls.get_resource_type() == "Reference")
    pending[cls] = shape  # before the fields: Extension contains Extension
    keys = {info.alias or name for name, info in cls.model_fields.items()}
    required: list[Field] = []
    choices: dict[str, tuple[str, ...]] = {}
    for name, info in cls.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        element, many = _element_type(info.annotation)
        f = Field(info.alias or name, many)
        if name == FHIR_COMMENTS_FIELD_NAME:
            f.many = None  # str or list of str
            f.primitive = _primitive(str)
        elif isinstance(element, type) and issubclass(element, fhir_types.FhirBase):
            child = element.get_model_klass()
            if issubclass(element, fhir_types.FhirElementOrResourceBase):
                if child.__name__ != "Resource":
                    raise TypeError(f"{cls.__name__}.{name}: unexpected polymorphic slot {child.__name__}")
                f.resource = True
            else:
                f.shape = _build(child, pending)
        else:
            f.primitive = _primitive(element)
        if name.endswith("__ext"):
            f.ext_of = f.key[1:]  # `_x` extends `x`
        elif f.primitive is not None and f"_{f.key}" in keys:
            f.ext_key = f"_{f.key}"
        if extra.get("enum_values"):
            f.enums = frozenset(extra["enum_values"])
        targets = tuple(extra.get("enum_reference_types") or ())
        if f.shape is not None and f.shape.is_reference and "Resource" not in targets:
            f.ref_types = targets
        if extra.get("one_of_many"):
            f.choice = extra["one_of_many"]
            if extra.get("one_of_many_required"):
                choices[f.choice] = (*choices.get(f.choice, ()), f.key)
        # Complex elements are required by `default=...`; primitives by `element_required`, because
        # an extension on `_x` may stand in for the value (checked after the model is built).
        if info.is_required() or extra.get("element_required"):
            required.append(f)
        shape.fields[f.key] = f
    shape.required = tuple(required)
    shape.required_choices = tuple(choices.items())
    return shape


def _element_type(annotation: Any) -> tuple[Any, bool]:
    """Strip Optional and List from a field annotation: (the element's type, whether it repeats)."""
    many = False
    while True:
        origin = get_origin(annotation)
        if origin is list:
            many = True
            annotation = get_args(annotation)[0]
        elif origin is Union or origin is UnionType:
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation, many
            annotation = args[0]
        else:
            return annotation, many


@cache
def _primitive(annotation: Any) -> Primitive:
    """Compile a primitive annotation from fhir_core.types into a check on JSON values."""
    base, *metadata = get_args(annotation) if get_origin(annotation) is Annotated else (annotation,)
    json_name, json_types = _JSON_TYPES.get(base, _STRING)
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    # Most primitives compile to a pydantic-core schema without Python callbacks (a regex, a range,
    # a UUID version); asking the model's own validator is then exact and costs well under a microsecond.
    check: Callable[[Any], bool] = adapter.validator.isinstance_python
    for meta in metadata:
        # Dates and decimals are checked by Python callbacks in the model; the same rules in plain
        # Python are several times faster (and the tests compare the two on many values).
        if isinstance(meta, fhir_types.Date | fhir_types.Time):
            check = _temporal(meta.pattern, dated=isinstance(meta, fhir_types.Date))
        elif isinstance(meta, fhir_types.Decimal):
            check = _decimal(meta.pattern)
    return Primitive(FHIR_PRIMITIVES_MAPS.get(annotation, "string"), json_name, json_types, check, adapter)


def _temporal(pattern: Any, *, dated: bool) -> Callable[[Any], bool]:
    """fhir_core's date/dateTime/instant/time rule: its regex, then a day the calendar has."""
    fullmatch = pattern.fullmatch
    fromisoformat = date.fromisoformat

    def check(value: str) -> bool:
        if fullmatch(value) is None:
            return False
        if dated and len(value) >= 10:  # the regex allows 2023-02-30; the model's date parsing does not
            try:
                fromisoformat(value[:10])
            except ValueError:
                return False
        return True

    return check


def _decimal(pattern: Any) -> Callable[[Any], bool]:
    """fhir_core's decimal rule: the number's text matches its regex (refuses inf and nan)."""
    fullmatch = pattern.fullmatch
    return lambda value: fullmatch(str(value)) is not None
