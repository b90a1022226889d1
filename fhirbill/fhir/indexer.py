"""Search index rows for a resource: each parameter's expression evaluated into typed tuples.

Row shapes (the store's index tables mirror them):
  token      (param, system, code, text)      text: normalised CodeableConcept.text / display
  reference  (param, ref_type, ref_id, url)   local refs: type+id; external/canonical: url only
  date       (param, low, high)               naive UTC, low inclusive, high exclusive
  string     (param, norm, value)             norm: casefolded, accents removed
  number     (param, value)
  quantity   (param, system, code, value)
  uri        (param, uri)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fhirbill.fhir.dates import parse_fhir_date, parse_period
from fhirbill.fhir.searchparams import Extractor, LinearPath, SearchParam, TypedPath

ISO_4217 = "urn:iso:std:iso:4217"

TokenRow = tuple[str, str | None, str | None, str | None]
ReferenceRow = tuple[str, str | None, str | None, str | None]
DateRow = tuple[str, datetime, datetime]
StringRow = tuple[str, str, str]
NumberRow = tuple[str, Decimal]
QuantityRow = tuple[str, str | None, str | None, Decimal]
UriRow = tuple[str, str]


@dataclass(slots=True)
class IndexRows:
    """Every index row for one resource, one de-duplicated list per parameter type."""

    token: list[TokenRow] = field(default_factory=list)
    reference: list[ReferenceRow] = field(default_factory=list)
    date: list[DateRow] = field(default_factory=list)
    string: list[StringRow] = field(default_factory=list)
    number: list[NumberRow] = field(default_factory=list)
    quantity: list[QuantityRow] = field(default_factory=list)
    uri: list[UriRow] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.token)
            + len(self.reference)
            + len(self.date)
            + len(self.string)
            + len(self.number)
            + len(self.quantity)
            + len(self.uri)
        )

    def params(self) -> set[str]:
        """The parameter names that got at least one row (for `:missing`)."""
        out: set[str] = set()
        for rows in (
            self.token,
            self.reference,
            self.date,
            self.string,
            self.number,
            self.quantity,
            self.uri,
        ):
            out.update(r[0] for r in rows)
        return out


def normalize(text: str) -> str:
    """Text as string search compares it: accents removed (NFKD), case folded."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


# ---------------------------------------------------------------------------------------------
# Type inference for values fhirpathpy produced (the compiled paths know their types).

_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})


def _infer_type(v: Any) -> str | None:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float | Decimal):
        return "decimal"
    if isinstance(v, str):
        return "string"
    if not isinstance(v, dict):
        return None
    if "resourceType" in v:
        return "Resource"
    if "url" in v and any(k.startswith("value") for k in v):
        return "Extension"
    if "coding" in v or set(v) <= {"text", "id", "extension"}:
        return "CodeableConcept"
    if "reference" in v:
        return "Reference"
    if "start" in v or "end" in v:
        return "Period"
    if "currency" in v:
        return "Money"
    if "value" in v and ("unit" in v or "comparator" in v or ("code" in v and "system" in v)):
        return "Quantity"
    if "family" in v or "given" in v:
        return "HumanName"
    if "line" in v or "city" in v or "postalCode" in v:
        return "Address"
    if "value" in v and v.get("system") in _CONTACT_SYSTEMS:
        return "ContactPoint"
    if "value" in v:
        return "Identifier"
    if "code" in v or "system" in v:
        return "Coding"
    if "low" in v or "high" in v:
        return "Range"
    return None


def _extension_value(ext: Any) -> tuple[Any, str | None]:
    if type(ext) is dict:
        for k, v in ext.items():
            if k.startswith("value") and len(k) > 5:
                t = k[5:]
                if t in _PRIMITIVE_SUFFIXES:
                    t = t[:1].lower() + t[1:]
                return v, t
    return None, None


_PRIMITIVE_SUFFIXES = frozenset(
    {
        "Base64Binary",
        "Boolean",
        "Canonical",
        "Code",
        "Date",
        "DateTime",
        "Decimal",
        "Id",
        "Instant",
        "Integer",
        "Markdown",
        "Oid",
        "PositiveInt",
        "String",
        "Time",
        "UnsignedInt",
        "Uri",
        "Url",
        "Uuid",
    }
)

# ---------------------------------------------------------------------------------------------
# Row builders: (param code, value, base_url, out list) per parameter type and FHIR type.

Builder = Callable[[str, Any, str, list[Any]], None]

_STRINGISH = ("code", "string", "id", "uri", "url", "canonical", "oid", "uuid", "markdown")


def _token_str(code: str, v: Any, base: str, out: list[Any]) -> None:
    if isinstance(v, str) and v:
        out.append((code, None, v, None))


def _token_bool(code: str, v: Any, base: str, out: list[Any]) -> None:
    if isinstance(v, bool):
        out.append((code, None, "true" if v else "false", None))


def _token_coding(code: str, v: Any, base: str, out: list[Any]) -> None:
    if type(v) is not dict:
        return
    system, c, display = v.get("system"), v.get("code"), v.get("display")
    text = normalize(display) if isinstance(display, str) and display else None
    if system or c or text:
        out.append((code, system, c, text))


def _token_cc(code: str, v: Any, base: str, out: list[Any]) -> None:
    if type(v) is not dict:
        return
    start = len(out)
    for coding in v.get("coding") or ():
        _token_coding(code, coding, base, out)
    text = v.get("text")
    if isinstance(text, str) and text:
        norm = normalize(text)
        # Only `:text` reads a row's text, so a text that a coding's display already carries
        # needs no row of its own (7% of a Synthea load's index rows were such copies).
        if not any(row[3] == norm for row in out[start:]):
            out.append((code, None, None, norm))


def _token_identifier(code: str, v: Any, base: str, out: list[Any]) -> None:
    if type(v) is not dict:
        return
    system, value = v.get("system"), v.get("value")
    itype = v.get("type")
    text = None
    if type(itype) is dict:
        t = itype.get("text")
        text = normalize(t) if isinstance(t, str) and t else None
    if system or value:
        out.append((code, system, value, text))
    if value and type(itype) is dict:
        of_type = code + ":of-type"
        for coding in itype.get("coding") or ():
            if type(coding) is dict and coding.get("code"):
                out.append((of_type, coding.get("system"), f"{coding['code']}|{value}", None))


def _token_contact(code: str, v: Any, base: str, out: list[Any]) -> None:
    if type(v) is dict and v.get("value"):
        out.append((code, None, v["value"], None))


def _token_number(code: str, v: Any, base: str, out: list[Any]) -> None:
    if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
        out.append((code, None, str(v), None))


_LOCAL_REF = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")


def reference_row(code: str, ref: str, base_url: str) -> ReferenceRow | None:
    """The reference row for a literal reference or canonical, or None when not indexed."""
    if not ref or ref[0] == "#" or ref.startswith("urn:uuid:"):
        return None
    if "://" in ref or ref.startswith("urn:"):
        if base_url and ref.startswith(base_url) and ref[len(base_url) : len(base_url) + 1] == "/":
            m = _LOCAL_REF.fullmatch(ref, len(base_url) + 1)
            if m:
                return (code, m.group(1), m.group(2), None)
        return (code, None, None, ref)
    m = _LOCAL_REF.fullmatch(ref)
    if m:
        return (code, m.group(1), m.group(2), None)
    return None


def _ref_reference(code: str, v: Any, base: str, out: list[Any]) -> None:
    # A Reference with only an identifier (or display) is not indexed.
    if type(v) is dict:
        r = v.get("reference")
        if isinstance(r, str):
            row = reference_row(code, r, base)
            if row is not None:
                out.append(row)


def _ref_canonical(code: str, v: Any, base: str, out: list[Any]) -> None:
    if isinstance(v, str):
        row = reference_row(code, v, base)
        if row is not None:
            out.append(row)


def _date_value(code: str, v: Any, base: str, out: list[Any]) -> None:
    if isinstance(v, str):
        try:
            low, high = parse_fhir_date(v)
        except ValueError:
            return  # validation refuses bad dates; nothing to index here
        out.append((code, low, high))


def _date_period(code: str, v: Any, base: str, out: list[Any]) -> None:
    if type(v) is dict and (v.get("start") or v.get("end")):
        try:
            low, high = parse_period(v.get("start"), v.get("end"))
        except ValueError:
            return
        out.append((code, low, high))


def _date_timing(code: str, v: Any, base: str, out: list[Any]) -> None:
    if type(v) is not dict:
        return
    for e in v.get("event") or ():
        _date_value(code, e, base, out)
    repeat = v.get("repeat")
    if type(repeat) is dict and "boundsPeriod" in repeat:
        _date_period(code, repeat["boundsPeriod"], base, out)


def _string_value(code: str, v: Any, base: str, out: list[Any]) -> None:
    if isinstance(v, str) and v:
        out.append((code, normalize(v), v))


def _string_parts(*names: str) -> Builder:
    def build(code: str, v: Any, base: str, out: list[Any]) -> None:
        if type(v) is not dict:
            return
        for n in names:
            x = v.get(n)
            if isinstance(x, list):
                for s in x:
                    _string_value(code, s, base, out)
            else:
                _string_value(code, x, base, out)

    return build


def _to_decimal(v: Any) -> Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, Decimal):
        return v
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, str):
        try:
            return Decimal(v)
        except InvalidOperation:
            return None
    return None


def _number_value(code: str, v: Any, base: str, out: list[Any]) -> None:
    d = _to_decimal(v)
    if d is not None and d.is_finite():
        out.append((code, d))


def _quantity_value(code: str, v: Any, base: str, out: list[Any]) -> None:
    if type(v) is not dict:
        return
    d = _to_decimal(v.get("value"))
    if d is None or not d.is_finite():
        return
    system, c, unit = v.get("system"), v.get("code"), v.get("unit")
    if c or not unit:
        out.append((code, system, c, d))
    if unit and unit != c:
        out.append((code, None, unit, d))


def _quantity_money(code: str, v: Any, base: str, out: list[Any]) -> None:
    if type(v) is not dict:
        return
    d = _to_decimal(v.get("value"))
    if d is not None and d.is_finite():
        cur = v.get("currency")
        out.append((code, ISO_4217 if cur else None, cur, d))


def _quantity_range(code: str, v: Any, base: str, out: list[Any]) -> None:
    if type(v) is dict:
        _quantity_value(code, v.get("low"), base, out)
        _quantity_value(code, v.get("high"), base, out)


def _quantity_decimal(code: str, v: Any, base: str, out: list[Any]) -> None:
    d = _to_decimal(v)
    if d is not None and d.is_finite():
        out.append((code, None, None, d))


def _uri_value(code: str, v: Any, base: str, out: list[Any]) -> None:
    if isinstance(v, str) and v:
        out.append((code, v))


_QUANTITY_TYPES = ("Quantity", "Age", "Duration", "Count", "Distance", "SimpleQuantity")
_NUMBER_TYPES = ("decimal", "integer", "positiveInt", "unsignedInt")

_BUILDERS: dict[str, dict[str, Builder]] = {
    "token": {
        **dict.fromkeys(_STRINGISH, _token_str),
        **dict.fromkeys(_NUMBER_TYPES, _token_number),
        "boolean": _token_bool,
        "Coding": _token_coding,
        "CodeableConcept": _token_cc,
        "Identifier": _token_identifier,
        "ContactPoint": _token_contact,
    },
    "reference": {
        "Reference": _ref_reference,
        "canonical": _ref_canonical,
        "uri": _ref_canonical,
        "url": _ref_canonical,
    },
    "date": {
        "date": _date_value,
        "dateTime": _date_value,
        "instant": _date_value,
        "string": _date_value,  # only from fhirpathpy, whose results carry no type
        "Period": _date_period,
        "Timing": _date_timing,
    },
    "string": {
        **dict.fromkeys(_STRINGISH, _string_value),
        "HumanName": _string_parts("family", "given", "text", "prefix", "suffix"),
        "Address": _string_parts("line", "city", "district", "state", "postalCode", "country", "text"),
    },
    "number": dict.fromkeys(_NUMBER_TYPES, _number_value),
    "quantity": {
        **dict.fromkeys(_QUANTITY_TYPES, _quantity_value),
        "Money": _quantity_money,
        "Range": _quantity_range,
        **dict.fromkeys(_NUMBER_TYPES, _quantity_decimal),
    },
    "uri": dict.fromkeys(("uri", "url", "canonical", "oid", "uuid", "string"), _uri_value),
}


def _add_untyped(
    builders: dict[str, Builder], code: str, v: Any, t: str | None, base: str, out: list[Any]
) -> None:
    if t is None:
        t = _infer_type(v)
    if t == "Extension":
        v, t = _extension_value(v)
    b = builders.get(t) if t is not None else None
    if b is not None:
        b(code, v, base, out)


def _untyped(builders: dict[str, Builder], t: str | None) -> Builder:
    def build(code: str, v: Any, base: str, out: list[Any]) -> None:
        _add_untyped(builders, code, v, t, base, out)

    return build


# One step of a plan: (first field of the path, or None; row type; parameter code; what yields the
# values; what turns each value into rows).
_Step = tuple[str | None, str, str, Callable[[dict[str, Any]], Iterable[Any]], Builder]


class IndexPlan:
    """Parameters flattened into the steps `extract` takes, each path's row builder chosen once.

    Build one per set of parameters and reuse it (building costs a third of an extraction). A
    step whose path starts at a field the resource lacks, as most do, is skipped with one lookup.
    """

    __slots__ = ("params", "steps")

    def __init__(self, params: Mapping[str, SearchParam]) -> None:
        self.params = params
        steps: list[_Step] = []
        for code, p in params.items():
            ext = p.extractor
            builders = _BUILDERS.get(p.type)
            if ext is None or p.column is not None or builders is None:
                continue
            for path in ext.paths:
                t = path.fhir_type
                b = builders.get(t) or (_untyped(builders, t) if t == "Extension" else None)
                if b is not None:
                    steps.append((_first_field(path), p.type, code, path.evaluate, b))
            if ext.fallback is not None:
                steps.append((None, p.type, code, _fallback(ext), _untyped(builders, None)))
        self.steps = tuple(steps)

    def extract(self, resource: Mapping[str, Any], base_url: str = "") -> IndexRows:
        """Index rows for a resource."""
        base_url = base_url.rstrip("/")
        lists: dict[str, list[Any]] = {
            "token": [],
            "reference": [],
            "date": [],
            "string": [],
            "number": [],
            "quantity": [],
            "uri": [],
        }
        res = resource if type(resource) is dict else dict(resource)
        for first, kind, code, values, build in self.steps:
            if first is not None and first not in res:
                continue
            out = lists[kind]
            for v in values(res):
                build(code, v, base_url, out)
        return IndexRows(
            token=list(dict.fromkeys(lists["token"])),
            reference=list(dict.fromkeys(lists["reference"])),
            date=list(dict.fromkeys(lists["date"])),
            string=list(dict.fromkeys(lists["string"])),
            number=list(dict.fromkeys(lists["number"])),
            quantity=list(dict.fromkeys(lists["quantity"])),
            uri=list(dict.fromkeys(lists["uri"])),
        )


def _fallback(ext: Extractor) -> Callable[[dict[str, Any]], Iterable[Any]]:
    def values(resource: dict[str, Any]) -> Iterable[Any]:
        return (v for v, _ in ext.fallback_values(resource))

    return values


def _first_field(path: TypedPath) -> str | None:
    """The field a path starts with, when an absent field means no values."""
    if isinstance(path, LinearPath) and path.steps and path.steps[0][0] == "f":
        return str(path.steps[0][1])
    return None  # ExistsNotFalse yields false for an absent field


def extract(resource: Mapping[str, Any], params: Mapping[str, SearchParam], base_url: str = "") -> IndexRows:
    """Index rows for a resource from the given parameters (main-table and unindexed skipped)."""
    return IndexPlan(params).extract(resource, base_url)
