"""The search-parameter registry: SearchParameter definitions from profiles/, compiled for indexing.

Each definition's FHIRPath expression is split per base type and compiled once. The common forms
(`A.b.c`, unions, `as`/`ofType` type filters, choice `[x]` elements, `where(resolve() is T)`,
`where(field='literal')`, `extension('url')`) compile to a typed path walker that knows the FHIR
type of each value it yields; anything else falls back to fhirpathpy, compiled lazily.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from fhirpathpy.models import models as _fhirpath_models

PARAM_TYPES = frozenset(
    {"token", "reference", "date", "string", "number", "quantity", "uri", "composite", "special"}
)
# Types whose values go into an index table.
INDEXED_TYPES = frozenset({"token", "reference", "date", "string", "number", "quantity", "uri"})
# Common parameters answered from the main resource table, not the index: code -> column.
MAIN_TABLE_COLUMNS = {"_id": "id", "_lastUpdated": "last_updated"}

CORE_BUNDLE = "search-parameters-r4-all.json"
CARIN_BUNDLE = "SearchParameter-carin-bb.json"

_MODEL: dict[str, Any] = _fhirpath_models["r4"]
_PATH2TYPE: dict[str, str] = _MODEL["path2Type"]
_CHOICES: dict[str, list[str]] = _MODEL["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = _MODEL["pathsDefinedElsewhere"]
_TYPE2PARENT: dict[str, str] = _MODEL["type2Parent"]


def _ancestors(t: str) -> list[str]:
    out = []
    while t in _TYPE2PARENT:
        t = _TYPE2PARENT[t]
        out.append(t)
    return out


RESOURCE_TYPES: frozenset[str] = frozenset(
    t for t in _TYPE2PARENT if "Resource" in _ancestors(t) and t != "DomainResource"
)
DOMAIN_RESOURCE_TYPES: frozenset[str] = frozenset(
    t for t in RESOURCE_TYPES if "DomainResource" in _ancestors(t)
)
# Paths of backbone elements (no entry of their own in path2Type, but children).
_BACKBONES: frozenset[str] = frozenset(
    p.rsplit(".", 1)[0] for p in list(_PATH2TYPE) + list(_CHOICES) if "." in p
)


class CompileError(ValueError):
    """The expression is outside the compiled subset (the caller falls back to fhirpathpy)."""


# ---------------------------------------------------------------------------------------------
# The compiled path walker.
#
# A branch compiles to one or more linear paths (choice elements expand into one path per type);
# each linear path is a tuple of steps and has a static FHIR type for what it yields.
# Step kinds: ("f", key) field access; ("p", predicate) filter on the current values.

Step = tuple[str, Any]


@dataclass(frozen=True, slots=True)
class LinearPath:
    """One typed path: steps from the resource root and the FHIR type of its results."""

    steps: tuple[Step, ...]
    fhir_type: str

    def evaluate(self, resource: dict[str, Any]) -> list[Any]:
        """The values this path reaches in the resource (lists flattened)."""
        vals: list[Any] = [resource]
        for kind, arg in self.steps:
            if kind == "f":
                out: list[Any] = []
                for v in vals:
                    if type(v) is dict:
                        x = v.get(arg)
                        if x is None:
                            continue
                        if type(x) is list:
                            out.extend(x)
                        else:
                            out.append(x)
                vals = out
            else:
                vals = [v for v in vals if arg(v)]
            if not vals:
                return vals
        return vals


@dataclass(frozen=True, slots=True)
class ExistsNotFalse:
    """`X.exists() and X != false` (Patient.deceased): one boolean, always present."""

    inner: tuple[LinearPath, ...]
    fhir_type: str = "boolean"

    def evaluate(self, resource: dict[str, Any]) -> list[Any]:
        """[True] when X has a value other than false, else [False]."""
        vals = [v for p in self.inner for v in p.evaluate(resource)]
        return [bool(vals) and not any(v is False for v in vals)]


TypedPath = LinearPath | ExistsNotFalse


def _norm_type(t: str) -> str:
    if t.startswith("System."):
        return t[7:].lower()
    return t


def _type_matches(actual: str, wanted: str) -> bool:
    if actual == wanted:
        return True
    if actual[:1].lower() + actual[1:] == wanted[:1].lower() + wanted[1:]:
        return True
    return wanted in _ancestors(actual)


_TYPE_RE = re.compile(r"[A-Z][A-Za-z]+")
_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def reference_type(ref: Any) -> str | None:
    """The resource type a Reference (JSON object) points at, from its reference or type."""
    if type(ref) is not dict:
        return None
    r = ref.get("reference")
    if isinstance(r, str):
        # [.../]Type/id[/_history/vid]: split from the right rather than search the whole string
        # with a regex (called for every Reference a `where(resolve() is T)` path meets).
        parts = r.rsplit("/", 4)
        if len(parts) >= 4 and parts[-2] == "_history" and parts[-1]:
            parts = parts[:-2]
        if len(parts) >= 2 and _TYPE_RE.fullmatch(parts[-2]) and _ID_RE.fullmatch(parts[-1]):
            return parts[-2]
    t = ref.get("type")
    return t if isinstance(t, str) else None


def _resolve_is(target: str) -> Callable[[Any], bool]:
    def pred(v: Any) -> bool:
        return reference_type(v) == target

    return pred


def _field_equals(name: str, literal: str) -> Callable[[Any], bool]:
    def pred(v: Any) -> bool:
        return type(v) is dict and v.get(name) == literal

    return pred


def _url_equals(url: str) -> Callable[[Any], bool]:
    def pred(v: Any) -> bool:
        return type(v) is dict and v.get("url") == url

    return pred


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_AS_PAREN_RE = re.compile(rf"^\((?P<inner>[^()]+?) as (?P<type>{_IDENT})\)(?P<rest>(?:\..+)?)$")
_WHERE_RESOLVE_RE = re.compile(rf"^where\(resolve\(\) is (?P<type>{_IDENT})\)$")
_WHERE_EQ_RE = re.compile(rf"^where\((?P<field>{_IDENT}) ?= ?'(?P<lit>[^'\\]*)'\)$")
_TYPE_FN_RE = re.compile(rf"^(?:as|ofType)\((?P<type>{_IDENT})\)$")
_EXT_RE = re.compile(r"^extension\('(?P<url>[^'\\]+)'\)$")
_EXISTS_NOT_FALSE_RE = re.compile(r"^(?P<p>[A-Za-z.]+)\.exists\(\) and (?P=p) != false$")


def _split_top(text: str, sep: str) -> list[str]:
    """Split on sep outside parentheses and string literals."""
    parts, depth, quote, start = [], 0, False, 0
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == "'":
                quote = False
        elif c == "'":
            quote = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def expression_root(part: str) -> str:
    """The type name a union branch starts from (`(Claim.x as T)` -> Claim)."""
    m = re.match(rf"^\(*\s*({_IDENT})", part)
    return m.group(1) if m else ""


# A state during compilation: steps so far, and the type key of the current values (a FHIR type
# name, or the element path for backbone elements).
_State = tuple[tuple[Step, ...], str]


def _child_states(state: _State, name: str) -> list[_State]:
    steps, key = state
    path = f"{key}.{name}"
    candidates = [path]
    if key in RESOURCE_TYPES or key in ("Resource", "DomainResource"):
        candidates += [f"DomainResource.{name}", f"Resource.{name}"]
    for p in candidates:
        p = _ELSEWHERE.get(p, p)
        if p in _CHOICES:
            out = []
            for t in _CHOICES[p]:
                json_key = name + t[:1].upper() + t[1:]
                ft = _PATH2TYPE.get(p + t[:1].upper() + t[1:], t)
                out.append((steps + (("f", json_key),), _norm_type(ft)))
            return out
        if p in _PATH2TYPE:
            return [(steps + (("f", name),), _norm_type(_PATH2TYPE[p]))]
        if p in _BACKBONES:
            return [(steps + (("f", name),), p)]
    raise CompileError(f"unknown element {path}")


def _compile_segments(states: list[_State], segments: list[str]) -> list[_State]:
    for seg in segments:
        new: list[_State] = []
        if re.fullmatch(_IDENT, seg):
            for st in states:
                new.extend(_child_states(st, seg))
        elif m := _WHERE_RESOLVE_RE.match(seg):
            pred = _resolve_is(m.group("type"))
            new = [(s + (("p", pred),), k) for s, k in states if k == "Reference"]
        elif m := _WHERE_EQ_RE.match(seg):
            pred = _field_equals(m.group("field"), m.group("lit"))
            new = [(s + (("p", pred),), k) for s, k in states]
        elif m := _TYPE_FN_RE.match(seg):
            new = [st for st in states if _type_matches(st[1], m.group("type"))]
        elif m := _EXT_RE.match(seg):
            pred = _url_equals(m.group("url"))
            for st in states:
                for s, k in _child_states(st, "extension"):
                    new.append((s + (("p", pred),), k))
        else:
            raise CompileError(f"unsupported segment {seg}")
        states = new
    return states


def compile_branch(part: str, base: str) -> list[TypedPath]:
    """Compile one union branch rooted at `base` (or Resource/DomainResource) to typed paths."""
    part = part.strip()
    e = _EXISTS_NOT_FALSE_RE.match(part)
    if e:
        inner = _compile_branch_states(e.group("p"), base)
        return [ExistsNotFalse(tuple(LinearPath(s, k) for s, k in inner))]
    m = _AS_PAREN_RE.match(part)
    if m:
        inner = _compile_branch_states(m.group("inner").strip(), base)
        states = [st for st in inner if _type_matches(st[1], m.group("type"))]
        rest = m.group("rest")
        if rest:
            states = _compile_segments(states, _split_top(rest[1:], "."))
    else:
        states = _compile_branch_states(part, base)
    return [LinearPath(s, k) for s, k in states]


def _compile_branch_states(part: str, base: str) -> list[_State]:
    segments = _split_top(part, ".")
    root = segments[0]
    if root not in (base, "Resource", "DomainResource"):
        raise CompileError(f"branch rooted at {root}, not {base}")
    key = base if base not in ("Resource", "DomainResource") else root
    return _compile_segments([((), key)], segments[1:])


@cache
def _fhirpathpy_compile(expression: str) -> Callable[..., list[Any]]:
    import fhirpathpy

    return fhirpathpy.compile(expression, _MODEL)


@dataclass(frozen=True, slots=True)
class Extractor:
    """A compiled expression: typed paths for the fast path, plus fhirpathpy branches."""

    paths: tuple[TypedPath, ...]
    fallback: str | None = None  # the union of branches fhirpathpy evaluates (types unknown)

    def values(self, resource: dict[str, Any]) -> Iterator[tuple[Any, str | None]]:
        """(value, FHIR type or None when fhirpathpy produced it) for every value reached."""
        for p in self.paths:
            t = p.fhir_type
            for v in p.evaluate(resource):
                yield v, t
        yield from self.fallback_values(resource)

    def fallback_values(self, resource: dict[str, Any]) -> Iterator[tuple[Any, None]]:
        """The values of the fhirpathpy branches (their FHIR types unknown)."""
        if self.fallback is not None:
            for v in _fhirpathpy_compile(self.fallback)(resource, {}):
                yield v, None


def compile_expression(expression: str, base: str, *, fast: bool = True) -> Extractor:
    """Compile an expression (already restricted to `base`'s branches) into an Extractor."""
    paths: list[TypedPath] = []
    rest: list[str] = []
    for part in _split_top(expression, "|"):
        if fast:
            try:
                paths.extend(compile_branch(part, base))
                continue
            except CompileError:
                pass
        rest.append(part)
    fallback = " | ".join(rest) if rest else None
    return Extractor(tuple(paths), fallback)


# ---------------------------------------------------------------------------------------------
# The registry.


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter as it applies to one base type."""

    code: str
    type: str  # token | reference | date | string | number | quantity | uri | composite | special
    base: tuple[str, ...]  # the definition's base types
    expression: str | None  # the FHIRPath branches for this base (None: nothing to evaluate)
    targets: tuple[str, ...] = ()  # reference targets
    url: str = ""
    description: str = field(default="", compare=False)
    column: str | None = None  # main-table column ("id", "last_updated"): not in the index
    components: tuple[tuple[str, str], ...] = ()  # composite: (definition url, expression)
    experimental: bool = field(default=False, compare=False)
    extractor: Extractor | None = field(default=None, compare=False, repr=False)
    # A union of other parameters of its type (see `_shared`): the codes whose rows answer it.
    indexed_as: tuple[str, ...] = ()

    @property
    def indexed(self) -> bool:
        """Whether writes put rows for this parameter into an index table."""
        return self.extractor is not None and self.column is None and not self.indexed_as

    @property
    def searchable(self) -> bool:
        """Whether a search clause on this parameter can be answered (index or main table)."""
        return self.column is not None or self.indexed or bool(self.indexed_as)

    @property
    def index_codes(self) -> tuple[str, ...]:
        """The codes of the index rows that hold this parameter's values."""
        return self.indexed_as or (self.code,)


def _iter_definitions(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, list):
        for item in data:
            yield from _iter_definitions(item)
    elif isinstance(data, dict):
        if data.get("resourceType") == "Bundle":
            for entry in data.get("entry") or []:
                yield from _iter_definitions(entry.get("resource"))
        elif data.get("resourceType") == "SearchParameter":
            yield data


def _expression_for(expression: str | None, base: str) -> str | None:
    if not expression:
        return None
    parts = [
        p for p in _split_top(expression, "|") if expression_root(p) in (base, "Resource", "DomainResource")
    ]
    return " | ".join(parts) if parts else None


def _definition_files(profile_dir: Path) -> list[Path]:
    files = []
    core = profile_dir / CORE_BUNDLE
    if core.exists():
        files.append(core)
    for pattern in ("search-parameters-*.json", "SearchParameter-*.json"):
        for f in sorted(profile_dir.glob(pattern)):
            if f not in files:
                files.append(f)
    return files


# Parameter types whose rows another parameter may share (never reference: the patient
# compartment and its confinement read reference rows by their own codes).
_SHAREABLE = frozenset({"token", "date", "string", "number", "quantity", "uri"})


def _branch(text: str) -> str:
    """A union branch without the parentheses around all of it: `(A.b as T)` -> `A.b as T`."""
    text = text.strip()
    while text.startswith("(") and _closing(text) == len(text) - 1:
        text = text[1:-1].strip()
    return text


def _closing(text: str) -> int:
    """Where the parenthesis opening `text` closes (string literals skipped), or -1."""
    depth, quote = 0, False
    for i, c in enumerate(text):
        if quote:
            quote = c != "'"
        elif c == "'":
            quote = True
        elif c in "()":
            depth += 1 if c == "(" else -1
            if depth == 0:
                return i
    return -1


def _shared(params: dict[str, SearchParam]) -> dict[str, SearchParam]:
    """The parameters of one type, with each one whose expression is exactly the union of other
    indexed parameters' expressions marked `indexed_as` those: it gets no index rows of its own and
    search reads theirs. Observation `combo-code` is `code | component-code`, and the four combo
    parameters were 12% of the index rows of the Synthea bundles. Rows depend only on the
    parameter's type and each branch, so both ways give the same matches, totals and sort values.
    """
    branches = {
        code: frozenset(_branch(b) for b in _split_top(p.expression or "", "|"))
        for code, p in params.items()
        if p.indexed and p.type in _SHAREABLE
    }
    out = dict(params)
    for code in sorted(branches, key=lambda c: len(branches[c])):  # parts before their unions
        mine, ptype = branches[code], params[code].type
        if len(params[code].base) > 1:  # a definition shared by several types keeps its rows
            continue
        parts = sorted(
            c for c, b in branches.items() if b < mine and params[c].type == ptype and not out[c].indexed_as
        )
        if parts and frozenset().union(*(branches[c] for c in parts)) == mine:
            out[code] = replace(params[code], indexed_as=tuple(parts))
    return out


class SearchParamRegistry:
    """Search parameters by resource type, built from SearchParameter definitions."""

    def __init__(self, params: Iterable[SearchParam] = ()) -> None:
        self._common: dict[str, SearchParam] = {}  # base Resource
        self._domain: dict[str, SearchParam] = {}  # base DomainResource
        self._by_type: dict[str, dict[str, SearchParam]] = {}
        self._cache: dict[str, dict[str, SearchParam]] = {}
        self._indexed_cache: dict[str, dict[str, SearchParam]] = {}
        self.skipped: list[str] = []  # definitions that could not be placed (no base)
        for p in params:
            self.add(p)

    @classmethod
    def load(cls, profile_dir: str | Path, *, fast: bool = True) -> SearchParamRegistry:
        """Load every SearchParameter JSON in profile_dir (core bundle first, later files win)."""
        reg = cls()
        for f in _definition_files(Path(profile_dir)):
            with f.open("rb") as fh:
                data = json.load(fh)
            for d in _iter_definitions(data):
                reg.add_definition(d, fast=fast)
        return reg

    def add_definition(self, d: dict[str, Any], *, fast: bool = True) -> list[SearchParam]:
        """Register one SearchParameter resource (one SearchParam per base type)."""
        bases = tuple(d.get("base") or ())
        code, ptype = d.get("code"), d.get("type")
        if not bases or not code or ptype not in PARAM_TYPES:
            self.skipped.append(str(d.get("url") or d.get("id")))
            return []
        components = tuple(
            (str(c.get("definition", "")), str(c.get("expression", ""))) for c in d.get("component") or ()
        )
        out = []
        for base in bases:
            expr = _expression_for(d.get("expression"), base)
            extractor = None
            if expr and ptype in INDEXED_TYPES:
                extractor = compile_expression(expr, base, fast=fast)
            column = MAIN_TABLE_COLUMNS.get(code) if base == "Resource" else None
            p = SearchParam(
                code=code,
                type=ptype,
                base=bases,
                expression=expr,
                targets=tuple(d.get("target") or ()),
                url=str(d.get("url") or ""),
                description=str(d.get("description") or ""),
                column=column,
                components=components,
                experimental=bool(d.get("experimental")),
                extractor=extractor,
            )
            self._add_for_base(base, p)
            out.append(p)
        return out

    def add(self, p: SearchParam) -> None:
        """Register a SearchParam under each of its base types."""
        for base in p.base:
            self._add_for_base(base, p)

    def _add_for_base(self, base: str, p: SearchParam) -> None:
        self._cache.clear()
        self._indexed_cache.clear()
        if base == "Resource":
            group = self._common
        elif base == "DomainResource":
            group = self._domain
        else:
            group = self._by_type.setdefault(base, {})
        old = group.get(p.code)
        # The core bundle carries example definitions (experimental) that reuse real codes.
        if old is not None and p.experimental and not old.experimental:
            return
        group[p.code] = p

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        """Every parameter of a resource type by code, the common Resource ones included."""
        got = self._cache.get(resource_type)
        if got is None:
            got = dict(self._common)
            if resource_type in DOMAIN_RESOURCE_TYPES or resource_type not in RESOURCE_TYPES:
                got.update(self._domain)
            got.update(self._by_type.get(resource_type, {}))
            got = self._cache[resource_type] = _shared(got)
        return got

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        """One parameter of a type, or None."""
        return self.for_type(resource_type).get(code)

    def indexed_for_type(self, resource_type: str) -> dict[str, SearchParam]:
        """The parameters whose values the indexer writes for a type (cached: called per write)."""
        got = self._indexed_cache.get(resource_type)
        if got is None:
            got = {c: p for c, p in self.for_type(resource_type).items() if p.indexed}
            self._indexed_cache[resource_type] = got
        return got

    def resource_types(self) -> list[str]:
        """Resource types with type-specific parameters, sorted."""
        return sorted(self._by_type)

    def __iter__(self) -> Iterator[SearchParam]:
        seen: set[int] = set()
        for group in [self._common, self._domain, *self._by_type.values()]:
            for p in group.values():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p
