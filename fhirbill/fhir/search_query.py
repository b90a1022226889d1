"""Search requests parsed into typed clauses (pure: no database, no web).

`parse_search` turns the raw query pairs of `GET [base]/Type?...` (or the form body of
`POST Type/_search`) into a ParsedSearch: one SearchClause per non-result parameter occurrence
(repeats are AND, comma-separated values inside one are OR), the result parameters, and the
names it did not understand. Malformed values raise FHIRError 400; the diagnostics name the
parameter but never echo the value (it may be patient data).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from fhirbill.fhir.dates import parse_fhir_date
from fhirbill.fhir.errors import FHIRError, Issue
from fhirbill.fhir.indexer import normalize
from fhirbill.fhir.searchparams import RESOURCE_TYPES, SearchParam, SearchParamRegistry

DEFAULT_COUNT = 20
MAX_COUNT = 1000
MAX_CHAIN_DEPTH = 3

PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap")
TOTAL_MODES = ("none", "estimate", "accurate")
SUMMARY_MODES = ("true", "false", "text", "data", "count")
# Result parameters this module interprets.
RESULT_PARAMS = frozenset({"_count", "_sort", "_total", "_summary", "_elements", "_include", "_revinclude"})
# Accepted and handed back untouched in ParsedSearch.extra (formatting is the caller's job).
FORMAT_PARAMS = frozenset({"_format", "_pretty"})

# Modifiers per parameter type: supported ones, and ones FHIR defines that we refuse.
SUPPORTED_MODIFIERS: dict[str, frozenset[str]] = {
    "token": frozenset({"missing", "not", "text", "of-type"}),
    "reference": frozenset({"missing"}),  # plus :[Type]
    "string": frozenset({"missing", "exact", "contains"}),
    "uri": frozenset({"missing", "below", "above"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
}
UNSUPPORTED_MODIFIERS: dict[str, frozenset[str]] = {
    "token": frozenset({"in", "not-in", "below", "above"}),
    "reference": frozenset({"identifier", "below", "above"}),
}

_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_LOCAL_REF_RE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]+)?")
_ELEMENT_RE = re.compile(r"(?:[A-Z][A-Za-z]+\.)?[a-z][A-Za-z0-9]*(?:\[x\])?")
_TZ_SPACE_RE = re.compile(r" (\d{2}:\d{2})$")


# ---------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class TokenValue:
    """`code`, `system|code`, `|code` or `system|`."""

    system: str | None  # None: any system (unless no_system)
    code: str | None  # None: any code (`system|`)
    no_system: bool = False  # `|code`: only values without a system


@dataclass(frozen=True, slots=True)
class TextValue:
    """A `:text` token search: normalised text, matched as a string starts-with."""

    norm: str


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """A local `Type/id` (or bare id, ref_type None when not implied) or an external URL."""

    ref_type: str | None
    ref_id: str | None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class DateValue:
    """A date with its prefix, as the [low, high) range its precision implies (naive UTC)."""

    prefix: str
    low: datetime
    high: datetime


@dataclass(frozen=True, slots=True)
class NumberValue:
    """A number with its prefix; [low, high) is the range its precision implies (for eq/ne)."""

    prefix: str
    value: Decimal
    low: Decimal
    high: Decimal


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """`[prefix]number|system|code`; system/code None when not given."""

    prefix: str
    value: Decimal
    low: Decimal
    high: Decimal
    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class StringValue:
    """A string search value and its normalised form (casefolded, accents removed)."""

    value: str
    norm: str


@dataclass(frozen=True, slots=True)
class UriValue:
    """A uri search value."""

    uri: str


SearchValue = (
    TokenValue | TextValue | ReferenceValue | DateValue | NumberValue | QuantityValue | StringValue | UriValue
)


# ---------------------------------------------------------------------------------------------
# Clauses and the parsed search


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One forward hop: follow `param` (a reference) to resources of `target_types`."""

    param: SearchParam
    target_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HasLink:
    """One reverse hop (`_has:source_type:param:...`): source_type resources whose `param`
    (a reference) points at the current resource."""

    source_type: str
    param: SearchParam


@dataclass(frozen=True, slots=True)
class SearchClause:
    """One query parameter occurrence: its values are OR'ed; clauses are AND'ed.

    Evaluate `has` hops first (from the searched type back to source types), then `chain`
    hops forward; `param` belongs to the type(s) reached last (`on_types`). `index_params` are
    the codes to look up in the index tables (`identifier:of-type` for `:of-type`; the parts of
    a parameter that is a union of others). With `missing` set, `values` is empty.
    """

    name: str  # as written in the query, modifier included
    param: SearchParam
    on_types: tuple[str, ...]
    modifier: str | None
    values: tuple[SearchValue, ...]
    index_params: tuple[str, ...]
    missing: bool | None = None
    chain: tuple[ChainLink, ...] = ()
    has: tuple[HasLink, ...] = ()

    @property
    def negated(self) -> bool:
        """`:not`: resources with no value matching any of the values (missing ones included)."""
        return self.modifier == "not"


@dataclass(frozen=True, slots=True)
class SortKey:
    """One `_sort` key; a Period sorts on its start."""

    param: SearchParam
    descending: bool = False


@dataclass(frozen=True, slots=True)
class IncludeSpec:
    """`_include` / `_revinclude`: follow `param` of `source_type` (None param: every reference
    parameter, `*`), optionally only to `target_type`; `source_type` None: any type
    (`_revinclude=*`)."""

    source_type: str | None
    param: SearchParam | None
    target_type: str | None = None
    iterate: bool = False
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class ParsedSearch:
    """A search request, typed."""

    resource_type: str
    clauses: tuple[SearchClause, ...] = ()
    count: int = DEFAULT_COUNT
    sort: tuple[SortKey, ...] = ()
    total: str | None = None
    summary: str | None = None
    elements: tuple[str, ...] = ()
    includes: tuple[IncludeSpec, ...] = ()
    revincludes: tuple[IncludeSpec, ...] = ()
    unknown: tuple[str, ...] = ()  # parameter names not defined for the type
    unsupported: tuple[str, ...] = ()  # defined, but not searchable here (composite, special)
    warnings: tuple[Issue, ...] = ()
    self_params: tuple[tuple[str, str], ...] = ()  # what was understood, for the `self` link
    extra: tuple[tuple[str, str], ...] = ()  # _format, _pretty and the caller's passthrough

    @property
    def ignored(self) -> tuple[str, ...]:
        """Unknown and unsupported names: ignored when lenient, a 400 under strict handling."""
        return self.unknown + self.unsupported


# ---------------------------------------------------------------------------------------------
# Escaping


def split_escaped(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split on `sep` where it is not escaped with a backslash; escapes are kept."""
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            buf.append(text[i : i + 2])
            i += 2
            continue
        if c == sep and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    parts.append("".join(buf))
    return parts


def unescape(text: str) -> str:
    """Remove FHIR search escapes: `\\,` `\\|` `\\$` `\\\\`."""
    if "\\" not in text:
        return text
    return re.sub(r"\\([,|$\\])", r"\1", text)


# ---------------------------------------------------------------------------------------------
# Parsing


def _bad(diagnostics: str, code: str = "invalid") -> FHIRError:
    return FHIRError.of(400, code, diagnostics)


def _split_prefix(raw: str) -> tuple[str, str]:
    if len(raw) > 2 and raw[:2] in PREFIXES and (raw[2].isdigit() or raw[2] in "-+."):
        return raw[:2], raw[2:]
    return "eq", raw


def _parse_decimal(text: str, name: str) -> tuple[Decimal, Decimal, Decimal]:
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise _bad(f"Search parameter '{name}': the value is not a number") from None
    if not d.is_finite():
        raise _bad(f"Search parameter '{name}': the value is not a finite number")
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    return d, d - half, d + half


def _date_value(raw: str, name: str) -> DateValue:
    prefix, text = _split_prefix(raw)
    text = _TZ_SPACE_RE.sub(r"+\1", text)  # an unencoded '+' in the zone arrives as a space
    try:
        low, high = parse_fhir_date(text)
    except ValueError:
        raise _bad(f"Search parameter '{name}': the value is not a valid date") from None
    return DateValue(prefix, low, high)


def _token_value(raw: str, name: str) -> TokenValue:
    parts = split_escaped(raw, "|", 1)
    if len(parts) == 1:
        return TokenValue(None, unescape(parts[0]))
    system, code = unescape(parts[0]), unescape(parts[1])
    if not system and not code:
        raise _bad(f"Search parameter '{name}': a token needs a system or a code")
    if not system:
        return TokenValue(None, code, no_system=True)
    return TokenValue(system, code or None)


def _of_type_value(raw: str, name: str) -> TokenValue:
    parts = split_escaped(raw, "|")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise _bad(f"Search parameter '{name}': :of-type needs system|type-code|value")
    system, code, value = (unescape(p) for p in parts)
    return TokenValue(system or None, f"{code}|{value}", no_system=not system)


def _reference_value(
    raw: str, name: str, param: SearchParam, type_modifier: str | None, base_url: str
) -> ReferenceValue:
    text = unescape(raw)
    if "://" in text or text.startswith("urn:"):
        base = base_url.rstrip("/")
        if base and text.startswith(base + "/"):
            m = _LOCAL_REF_RE.fullmatch(text, len(base) + 1)
            if m:
                return _typed_ref(m.group(1), m.group(2), name, param, type_modifier)
        return ReferenceValue(None, None, text)
    m = _LOCAL_REF_RE.fullmatch(text)
    if m:
        return _typed_ref(m.group(1), m.group(2), name, param, type_modifier)
    if not _ID_RE.fullmatch(text):
        raise _bad(f"Search parameter '{name}': the value is not a reference or id")
    ref_type = type_modifier
    if ref_type is None and len(param.targets) == 1:
        ref_type = param.targets[0]
    return ReferenceValue(ref_type, text)


def _typed_ref(
    ref_type: str, ref_id: str, name: str, param: SearchParam, type_modifier: str | None
) -> ReferenceValue:
    if type_modifier is not None and ref_type != type_modifier:
        raise _bad(f"Search parameter '{name}': the reference type contradicts the modifier")
    if param.targets and ref_type not in param.targets:
        raise _bad(f"Search parameter '{name}': the reference type is not a target of it")
    return ReferenceValue(ref_type, ref_id)


def _quantity_value(raw: str, name: str) -> QuantityValue:
    prefix, text = _split_prefix(raw)
    parts = split_escaped(text, "|")
    if len(parts) not in (1, 3):
        raise _bad(f"Search parameter '{name}': a quantity is number|system|code")
    value, low, high = _parse_decimal(unescape(parts[0]), name)
    system = code = None
    if len(parts) == 3:
        system = unescape(parts[1]) or None
        code = unescape(parts[2]) or None
    return QuantityValue(prefix, value, low, high, system, code)


def _values(
    raw: str, name: str, param: SearchParam, modifier: str | None, base_url: str
) -> tuple[SearchValue, ...]:
    out: list[SearchValue] = []
    for part in split_escaped(raw, ","):
        if part == "":
            continue
        t = param.type
        v: SearchValue
        if t == "token":
            if modifier == "text":
                v = TextValue(normalize(unescape(part)))
            elif modifier == "of-type":
                v = _of_type_value(part, name)
            else:
                v = _token_value(part, name)
        elif t == "reference":
            v = _reference_value(part, name, param, modifier, base_url)
        elif t == "date":
            v = _date_value(part, name)
        elif t == "number":
            prefix, text = _split_prefix(part)
            v = NumberValue(prefix, *_parse_decimal(unescape(text), name))
        elif t == "quantity":
            v = _quantity_value(part, name)
        elif t == "string":
            s = unescape(part)
            v = StringValue(s, normalize(s))
        elif t == "uri":
            v = UriValue(unescape(part))
        else:  # pragma: no cover - composite/special never reach here
            raise _bad(f"Search parameter '{name}' is not supported", "not-supported")
        out.append(v)
    return tuple(out)


def _check_modifier(param: SearchParam, modifier: str | None, name: str) -> str | None:
    """The type named by a reference `:[Type]` modifier, after checking the modifier."""
    if modifier is None:
        return None
    if modifier in SUPPORTED_MODIFIERS.get(param.type, ()):
        if modifier == "of-type" and param.code == "_id":
            raise _bad(f"Search parameter '{name}': unknown modifier", "not-supported")
        return None
    if param.type == "reference" and modifier in RESOURCE_TYPES:
        if param.targets and modifier not in param.targets:
            raise _bad(f"Search parameter '{name}': {modifier} is not a target of this parameter")
        return modifier
    if modifier in UNSUPPORTED_MODIFIERS.get(param.type, ()):
        raise _bad(f"Search parameter '{name}': modifier :{modifier} is not supported", "not-supported")
    raise _bad(f"Search parameter '{name}': unknown modifier :{modifier}")


class _Unknown(Exception):
    """The first parameter name is not defined for the type."""

    def __init__(self, unsupported: bool) -> None:
        super().__init__()
        self.unsupported = unsupported


def _require_searchable(p: SearchParam | None, name: str, first: bool) -> SearchParam:
    if p is None:
        if first:
            raise _Unknown(False)
        raise _bad(f"Search parameter '{name}': unknown parameter in the chain")
    if not p.searchable:
        if first:
            raise _Unknown(True)
        raise _bad(f"Search parameter '{name}': a chain ends at an unsupported parameter")
    return p


class _Parser:
    def __init__(self, registry: SearchParamRegistry, base_url: str) -> None:
        self.registry = registry
        self.base_url = base_url

    def clause(self, resource_type: str, name: str, raw: str) -> SearchClause | None:
        return self._clause(resource_type, name, name, raw, first=True)

    def _clause(self, rtype: str, name: str, full: str, raw: str, first: bool) -> SearchClause | None:
        if name.startswith("_has:"):
            return self._has(rtype, name, full, raw)
        hops = name.split(".")
        if len(hops) - 1 > MAX_CHAIN_DEPTH:
            raise _bad(f"Search parameter '{full}': chains are limited to {MAX_CHAIN_DEPTH}")
        types: tuple[str, ...] = (rtype,)
        chain: list[ChainLink] = []
        for i, hop in enumerate(hops[:-1]):
            code, _, hop_type = hop.partition(":")
            p = self._param_on(types, code, full, first and i == 0)
            if p.type != "reference":
                raise _bad(f"Search parameter '{full}': '{code}' is not a reference, cannot chain")
            targets = p.targets
            if hop_type:
                if hop_type not in RESOURCE_TYPES or (targets and hop_type not in targets):
                    raise _bad(f"Search parameter '{full}': {hop_type} is not a target of '{code}'")
                targets = (hop_type,)
            nxt = hops[i + 1].partition(":")[0]
            reach = tuple(t for t in targets if self.registry.get(t, nxt) is not None)
            if not reach:
                raise _bad(f"Search parameter '{full}': no target of '{code}' defines '{nxt}'")
            chain.append(ChainLink(p, reach))
            types = reach
        code, _, modifier = hops[-1].partition(":")
        p = self._param_on(types, code, full, first and not chain)
        mod = modifier or None
        type_mod = _check_modifier(p, mod, full)
        index_params = (p.code + ":of-type",) if mod == "of-type" else p.index_codes
        if mod == "missing":
            if raw not in ("true", "false"):
                raise _bad(f"Search parameter '{full}': :missing takes true or false")
            return SearchClause(
                full, p, types, mod, (), index_params, missing=raw == "true", chain=tuple(chain)
            )
        values = _values(raw, full, p, type_mod if p.type == "reference" else mod, self.base_url)
        if not values:
            return None
        return SearchClause(full, p, types, mod, values, index_params, chain=tuple(chain))

    def _param_on(self, types: tuple[str, ...], code: str, full: str, first: bool) -> SearchParam:
        found = [self.registry.get(t, code) for t in types]
        params = [p for p in found if p is not None]
        p = _require_searchable(params[0] if params else None, full, first)
        if any(q.type != p.type for q in params):
            raise _bad(f"Search parameter '{full}': '{code}' has different types on the targets")
        if any(q.index_codes != p.index_codes for q in params):  # only custom definitions can
            raise _bad(f"Search parameter '{full}': '{code}' is indexed differently on the targets")
        return p

    def _has(self, rtype: str, name: str, full: str, raw: str) -> SearchClause | None:
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise _bad(f"Search parameter '{full}': _has is _has:Type:reference:parameter")
        _, source, ref_code, rest = parts
        if source not in RESOURCE_TYPES:
            raise _bad(f"Search parameter '{full}': unknown resource type in _has")
        ref = self.registry.get(source, ref_code)
        if ref is None or ref.type != "reference":
            raise _bad(f"Search parameter '{full}': '{ref_code}' is not a reference of {source}")
        if ref.targets and rtype not in ref.targets:
            raise _bad(f"Search parameter '{full}': '{ref_code}' of {source} cannot point here")
        inner = self._clause(source, rest, full, raw, first=False)
        if inner is None:
            return None
        return SearchClause(
            full,
            inner.param,
            inner.on_types,
            inner.modifier,
            inner.values,
            inner.index_params,
            missing=inner.missing,
            chain=inner.chain,
            has=(HasLink(source, ref), *inner.has),
        )


def _only_once(seen: set[str], name: str) -> None:
    if name in seen:
        raise _bad(f"Search parameter '{name}' may appear only once")
    seen.add(name)


def _parse_include(
    raw: str, name: str, registry: SearchParamRegistry, rtype: str, reverse: bool, iterate: bool
) -> IncludeSpec:
    if raw == "*":
        return IncludeSpec(None if reverse else rtype, None, None, iterate, reverse)
    parts = raw.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise _bad(f"Search parameter '{name}': expected Type:parameter[:targetType]")
    source = parts[0]
    if source not in RESOURCE_TYPES:
        raise _bad(f"Search parameter '{name}': unknown resource type")
    target = parts[2] if len(parts) == 3 else None
    if parts[1] == "*":
        if target is not None and target not in RESOURCE_TYPES:
            raise _bad(f"Search parameter '{name}': unknown target type")
        return IncludeSpec(source, None, target, iterate, reverse)
    p = registry.get(source, parts[1])
    if p is None or p.type != "reference" or not p.indexed:
        raise _bad(f"Search parameter '{name}': not a reference parameter of {source}")
    if target is not None and (target not in RESOURCE_TYPES or (p.targets and target not in p.targets)):
        raise _bad(f"Search parameter '{name}': {target} is not a target of the parameter")
    return IncludeSpec(source, p, target, iterate, reverse)


def parse_search(
    resource_type: str,
    params: Iterable[tuple[str, str]],
    registry: SearchParamRegistry,
    *,
    base_url: str = "",
    strict: bool = False,
    default_count: int = DEFAULT_COUNT,
    max_count: int = MAX_COUNT,
    passthrough: Collection[str] = (),
) -> ParsedSearch:
    """Parse the query pairs of a search on resource_type; raise FHIRError 400 when malformed.

    `base_url` makes absolute references to this server local; `strict` turns unknown or
    unsupported parameters into a 400 (`Prefer: handling=strict`); names in `passthrough`
    (a paging cursor, say) are returned in `extra` untouched.
    """
    parser = _Parser(registry, base_url)
    clauses: list[SearchClause] = []
    unknown: list[str] = []
    unsupported: list[str] = []
    warnings: list[Issue] = []
    self_params: list[tuple[str, str]] = []
    extra: list[tuple[str, str]] = []
    seen: set[str] = set()
    count = default_count
    sort: list[SortKey] = []
    total: str | None = None
    summary: str | None = None
    elements: list[str] = []
    includes: list[IncludeSpec] = []
    revincludes: list[IncludeSpec] = []

    for name, raw in params:
        if name in passthrough or name in FORMAT_PARAMS:
            extra.append((name, raw))
            continue
        base_name, _, modifier = name.partition(":")
        if base_name in RESULT_PARAMS:
            if base_name in ("_include", "_revinclude"):
                if modifier not in ("", "iterate", "recurse"):
                    raise _bad(f"Search parameter '{name}': unknown modifier")
                if raw == "":
                    continue
                spec = _parse_include(
                    raw, name, registry, resource_type, base_name == "_revinclude", bool(modifier)
                )
                (revincludes if spec.reverse else includes).append(spec)
                if not spec.iterate and not spec.reverse and spec.source_type != resource_type:
                    warnings.append(
                        Issue(
                            "warning",
                            "informational",
                            f"'{name}' names another resource type and has no effect without :iterate",
                        )
                    )
                self_params.append((name, raw))
                continue
            if modifier:
                raise _bad(f"Search parameter '{base_name}' takes no modifier")
            if raw == "":
                continue
            _only_once(seen, name)
            if name == "_count":
                if not (raw.isascii() and raw.isdigit()):
                    raise _bad("Search parameter '_count' must be a non-negative integer")
                count = int(raw)
                if count > max_count:
                    warnings.append(
                        Issue(
                            "warning",
                            "processing",
                            f"_count was lowered to the maximum page size of {max_count}",
                        )
                    )
                    count = max_count
                self_params.append((name, str(count)))
                continue
            if name == "_sort":
                sort = _parse_sort(raw, resource_type, registry)
            elif name == "_total":
                if raw not in TOTAL_MODES:
                    raise _bad("Search parameter '_total' must be none, estimate or accurate")
                total = raw
            elif name == "_summary":
                if raw not in SUMMARY_MODES:
                    raise _bad("Search parameter '_summary' must be true, false, text, data, count")
                summary = raw
            elif name == "_elements":
                elements = [e.strip() for e in raw.split(",") if e.strip()]
                if not all(_ELEMENT_RE.fullmatch(e) for e in elements):
                    raise _bad("Search parameter '_elements' must list element names")
            self_params.append((name, raw))
            continue
        if raw == "":
            continue  # FHIR: a parameter without a value is ignored
        try:
            clause = parser.clause(resource_type, name, raw)
        except _Unknown as exc:
            (unsupported if exc.unsupported else unknown).append(name)
            continue
        if clause is not None:
            clauses.append(clause)
            self_params.append((name, raw))

    if strict and (unknown or unsupported):
        names = ", ".join(sorted(set(unknown + unsupported)))
        raise FHIRError.of(400, "not-supported", f"Unknown or unsupported search parameters: {names}")
    return ParsedSearch(
        resource_type=resource_type,
        clauses=tuple(clauses),
        count=count,
        sort=tuple(sort),
        total=total,
        summary=summary,
        elements=tuple(elements),
        includes=tuple(includes),
        revincludes=tuple(revincludes),
        unknown=tuple(unknown),
        unsupported=tuple(unsupported),
        warnings=tuple(warnings),
        self_params=tuple(self_params),
        extra=tuple(extra),
    )


def _parse_sort(raw: str, resource_type: str, registry: SearchParamRegistry) -> list[SortKey]:
    keys: list[SortKey] = []
    for item in raw.split(","):
        item = item.strip()
        desc = item.startswith("-")
        code = item[1:] if desc else item
        if not code:
            raise _bad("Search parameter '_sort': empty sort key")
        p = registry.get(resource_type, code)
        if p is None or not p.searchable:
            raise _bad(f"Search parameter '_sort': '{code}' is not a sortable parameter")
        if any(k.param.code == code for k in keys):
            raise _bad(f"Search parameter '_sort': '{code}' appears twice")
        keys.append(SortKey(p, desc))
    return keys
