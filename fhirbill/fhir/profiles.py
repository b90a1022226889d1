"""A small, generic StructureDefinition checker driven by the differential of a profile.

What it enforces, element by element of `differential.element`:

- cardinality (`min`, `max`) counted per instance of the parent element, so `Claim.item.sequence`
  min 1 means "every item has a sequence"; choice elements (`value[x]`) count every
  `valueXxx` key, and a differential `type` list restricts which `Xxx` are allowed;
- `fixed[x]` (exact equality) and `pattern[x]` (the instance contains the pattern);
- `maxLength` of string values;
- `constraint` invariants, evaluated with fhirpathpy on every instance of the element
  (`%resource` is the resource being checked), compiled once and cached. An invariant holds
  when its result is non-empty and holds no `false` (so write invariants that yield a boolean);
  the extension `LOCATION_EXT` on a constraint names the element to fix, relative to the
  constrained one.

Not supported (ignored, documented here so nobody relies on it): slicing (elements with a
`sliceName`), bindings, `type.profile`/`targetProfile`, snapshots. A profile may attach stable
rule codes to its element rules with the complex extension `RULE_CODE_EXT` (sub-extensions
`min`, `max`, `type`, `value`, each a `valueCode`); a constraint's `key` is its rule code.
Issues carry the code in `Issue.details_code` and the FHIRPath of the offending element, with
indexes for repeating elements (`Claim.item[2].sequence`); choice elements are named by their
JSON name (`Claim.diagnosis[0].diagnosisCodeableConcept`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import orjson
from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models as fhirpath_models
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhirbill.fhir.errors import Issue

RULE_CODE_EXT = "http://fhirbill.dev/fhir/StructureDefinition/rule-code"
# On a constraint: the element to fix, relative to the constrained element (valueString,
# e.g. "identifier"), so that an invariant on `Claim` can still point at `Claim.identifier`.
LOCATION_EXT = "http://fhirbill.dev/fhir/StructureDefinition/constraint-location"
PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"

_MODEL = fhirpath_models["r4"]
Evaluator = Callable[..., list[Any]]


class _RaisingListener(ErrorListener):  # type: ignore[misc]
    def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any) -> None:  # noqa: N802, E501
        raise ValueError(f"FHIRPath syntax error at column {column}: {msg}")


def _syntax_check(expression: str) -> None:
    """Reject malformed FHIRPath (fhirpathpy's own parser silently recovers from syntax errors)."""
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_RaisingListener())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_RaisingListener())
    parser.expression()
    if parser.getCurrentToken().type != Token.EOF:
        raise ValueError(f"FHIRPath syntax error: unexpected text after the expression: {expression!r}")


@lru_cache(maxsize=1024)
def compile_fhirpath(expression: str) -> Evaluator:
    """The compiled FHIRPath expression (R4 model), cached; ValueError when it does not parse."""
    _syntax_check(expression)
    return fhirpath_compile(expression, _MODEL)


@dataclass(frozen=True, slots=True)
class Constraint:
    """One ElementDefinition.constraint with its compiled expression."""

    key: str
    severity: str  # error | warning
    human: str
    expression: str
    evaluate: Evaluator
    location: str | None = None


@dataclass(frozen=True, slots=True)
class ElementRule:
    """What the differential says about one element path."""

    path: str  # as written in the profile, e.g. "Claim.diagnosis.diagnosis[x]"
    steps: tuple[str, ...]  # the path below the root: ("diagnosis", "diagnosis[x]")
    min: int | None
    max: int | None  # None: unbounded or not constrained
    types: tuple[str, ...]
    fixed: Any
    pattern: Any
    max_length: int | None
    codes: dict[str, str]  # rule codes by aspect: min, max, type, value
    constraints: tuple[Constraint, ...]


@dataclass(frozen=True, slots=True)
class Profile:
    """A parsed StructureDefinition, ready to check resources against."""

    url: str
    version: str | None
    name: str
    type: str
    elements: tuple[ElementRule, ...]
    definition: dict[str, Any]

    @classmethod
    def from_json(cls, sd: dict[str, Any]) -> Profile:
        """Parse a StructureDefinition; raises ValueError when it cannot be used."""
        if sd.get("resourceType") != "StructureDefinition":
            raise ValueError("not a StructureDefinition")
        url, rtype = sd.get("url"), sd.get("type")
        if not url or not rtype:
            raise ValueError("StructureDefinition needs url and type")
        rules = []
        for el in (sd.get("differential") or {}).get("element", []):
            if el.get("sliceName"):
                continue  # slicing is not supported
            rules.append(_element_rule(rtype, el))
        return cls(url, sd.get("version"), sd.get("name", ""), rtype, tuple(rules), sd)


def _choice_value(el: dict[str, Any], prefix: str) -> Any:
    for key, value in el.items():
        if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1].isupper():
            return value
    return None


def _element_rule(rtype: str, el: dict[str, Any]) -> ElementRule:
    path: str = el["path"]
    head, _, rest = path.partition(".")
    if head != rtype:
        raise ValueError(f"element path {path!r} is not under {rtype}")
    max_raw = el.get("max")
    codes: dict[str, str] = {}
    for ext in el.get("extension", []):
        if ext.get("url") == RULE_CODE_EXT:
            for sub in ext.get("extension", []):
                codes[sub["url"]] = sub["valueCode"]
    constraints = tuple(
        Constraint(
            c["key"],
            c.get("severity", "error"),
            c.get("human", ""),
            c["expression"],
            compile_fhirpath(c["expression"]),
            next(
                (e["valueString"] for e in c.get("extension", []) if e.get("url") == LOCATION_EXT),
                None,
            ),
        )
        for c in el.get("constraint", [])
        if c.get("expression")
    )
    return ElementRule(
        path=path,
        steps=tuple(rest.split(".")) if rest else (),
        min=el.get("min"),
        max=None if max_raw in (None, "*") else int(max_raw),
        types=tuple(t["code"] for t in el.get("type", [])),
        fixed=_choice_value(el, "fixed"),
        pattern=_choice_value(el, "pattern"),
        max_length=el.get("maxLength"),
        codes=codes,
        constraints=constraints,
    )


class ProfileRegistry:
    """The StructureDefinitions the server knows, by canonical URL."""

    def __init__(self, profiles: Iterable[Profile] = ()) -> None:
        self._by_url: dict[str, Profile] = {}
        for p in profiles:
            self._by_url[p.url] = p

    @classmethod
    def load(cls, directory: str | Path = PROFILES_DIR) -> ProfileRegistry:
        """Load every StructureDefinition-*.json file of a directory."""
        reg = cls()
        for path in sorted(Path(directory).glob("StructureDefinition-*.json")):
            reg.add(json.loads(path.read_text(encoding="utf-8")))
        return reg

    def add(self, sd: dict[str, Any]) -> Profile:
        """Register one StructureDefinition (JSON) and return it parsed."""
        profile = Profile.from_json(sd)
        self._by_url[profile.url] = profile
        return profile

    def get(self, url: str) -> Profile | None:
        """The profile for a canonical URL (a `|version` suffix is ignored), or None."""
        return self._by_url.get(url.split("|", 1)[0])

    def urls(self, resource_type: str | None = None) -> list[str]:
        """Canonical URLs known, optionally only those constraining one resource type."""
        return sorted(u for u, p in self._by_url.items() if resource_type in (None, p.type))

    def by_type(self) -> dict[str, list[str]]:
        """Canonical URLs by constrained resource type (CapabilityStatement supportedProfile)."""
        out: dict[str, list[str]] = {}
        for url, p in sorted(self._by_url.items()):
            out.setdefault(p.type, []).append(url)
        return out

    def check(self, resource: dict[str, Any], sd: Profile | dict[str, Any] | str) -> list[Issue]:
        """Check a resource against a profile given parsed, as JSON or by canonical URL."""
        if isinstance(sd, str):
            profile = self.get(sd)
            if profile is None:
                return [Issue("warning", "not-supported", f"Profile {sd} is not known; not checked.")]
            sd = profile
        return check(resource, sd)

    def __iter__(self) -> Iterator[Profile]:
        return iter(self._by_url.values())

    def __len__(self) -> int:
        return len(self._by_url)


@lru_cache(maxsize=1)
def default_registry() -> ProfileRegistry:
    """The registry of the checkout's `profiles/` directory, loaded once."""
    return ProfileRegistry.load(PROFILES_DIR)


# -- navigation ------------------------------------------------------------------------------


def _children(node: Any, step: str, path: str) -> list[tuple[str, Any, str]]:
    """(path, value, json name) of each child of a node for one path step."""
    if not isinstance(node, dict):
        return []
    if step.endswith("[x]"):
        prefix = step[:-3]
        names = [k for k in node if k.startswith(prefix) and k[len(prefix) : len(prefix) + 1].isupper()]
        names += [
            k[1:]
            for k in node
            if k.startswith("_" + prefix)
            and k[len(prefix) + 1 : len(prefix) + 2].isupper()
            and k[1:] not in node
        ]
    else:
        names = [step] if (step in node or "_" + step in node) else []
    out: list[tuple[str, Any, str]] = []
    for name in names:
        value = node.get(name)
        if value is None:
            value = node.get("_" + name)
        if isinstance(value, list):
            shadow = node.get("_" + name)
            for i, v in enumerate(value):
                if v is None and isinstance(shadow, list) and i < len(shadow):
                    v = shadow[i]
                if v is not None:
                    out.append((f"{path}.{name}[{i}]", v, name))
        elif value is not None:
            out.append((f"{path}.{name}", value, name))
    return out


def _instances(resource: dict[str, Any], root: str, steps: tuple[str, ...]) -> list[tuple[str, Any]]:
    nodes: list[tuple[str, Any]] = [(root, resource)]
    for step in steps:
        nodes = [(p, v) for path, node in nodes for p, v, _ in _children(node, step, path)]
    return nodes


def _contains(value: Any, pattern: Any) -> bool:
    """FHIR pattern matching: every property of the pattern is present in the value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(_contains(value.get(k), v) for k, v in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(value, list):
            return False
        return all(any(_contains(v, p) for v in value) for p in pattern)
    return value == pattern


def _type_path(rtype: str, steps: tuple[str, ...]) -> str | None:
    if any(s.endswith("[x]") for s in steps):
        return None
    return ".".join((rtype, *steps))


# -- checking --------------------------------------------------------------------------------


def check(resource: dict[str, Any], sd: Profile | dict[str, Any]) -> list[Issue]:
    """Check a resource (FHIR JSON) against a profile; the issues found, in differential order."""
    profile = sd if isinstance(sd, Profile) else Profile.from_json(sd)
    rtype = resource.get("resourceType")
    if rtype != profile.type:
        return [
            Issue(
                "error",
                "invalid",
                f"profile {profile.url} constrains {profile.type}, not {rtype}",
                (str(rtype),),
                "PROFILE-TYPE-MISMATCH",
            )
        ]
    issues: list[Issue] = []
    root_node = ResourceNode.create_node(resource, profile.type)
    for rule in profile.elements:
        issues.extend(_check_cardinality(resource, profile, rule))
        instances = _instances(resource, profile.type, rule.steps)
        issues.extend(_check_values(profile, rule, instances))
        issues.extend(_check_constraints(profile, rule, instances, root_node, resource))
    return issues


def _check_cardinality(resource: dict[str, Any], profile: Profile, rule: ElementRule) -> list[Issue]:
    if not rule.steps or (rule.min in (None, 0) and rule.max is None and not rule.types):
        return []
    issues: list[Issue] = []
    last = rule.steps[-1]
    shown = last[:-3] if last.endswith("[x]") else last
    for parent_path, parent in _instances(resource, profile.type, rule.steps[:-1]):
        if not isinstance(parent, dict):
            continue
        children = _children(parent, last, parent_path)
        count = len(children)
        if rule.min and count < rule.min:
            issues.append(
                Issue(
                    "error",
                    "required",
                    f"{rule.path}: minimum required = {rule.min}, found {count} (profile {profile.url})",
                    (f"{parent_path}.{shown}",),
                    rule.codes.get("min", "PROFILE-MIN"),
                )
            )
        if rule.max is not None and count > rule.max:
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"{rule.path}: maximum allowed = {rule.max}, found {count} (profile {profile.url})",
                    (children[rule.max][0],) if children else (f"{parent_path}.{shown}",),
                    rule.codes.get("max", "PROFILE-MAX"),
                )
            )
        if last.endswith("[x]") and rule.types:
            allowed = {t[:1].upper() + t[1:] for t in rule.types}
            for path, _, name in children:
                if name[len(shown) :] not in allowed:
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            f"{rule.path}: type {name[len(shown) :]} is not allowed here"
                            f" (allowed: {', '.join(sorted(allowed))}; profile {profile.url})",
                            (path,),
                            rule.codes.get("type", "PROFILE-TYPE"),
                        )
                    )
    return issues


def _check_values(profile: Profile, rule: ElementRule, instances: list[tuple[str, Any]]) -> list[Issue]:
    issues: list[Issue] = []
    code = rule.codes.get("value", "PROFILE-VALUE")
    for path, value in instances:
        if rule.fixed is not None and value != rule.fixed:
            issues.append(
                Issue(
                    "error",
                    "value",
                    f"{rule.path}: value must be exactly {json.dumps(rule.fixed)} (profile {profile.url})",
                    (path,),
                    code,
                )
            )
        if rule.pattern is not None and not _contains(value, rule.pattern):
            issues.append(
                Issue(
                    "error",
                    "value",
                    f"{rule.path}: value must match the pattern {json.dumps(rule.pattern)}"
                    f" (profile {profile.url})",
                    (path,),
                    code,
                )
            )
        if rule.max_length is not None and isinstance(value, str) and len(value) > rule.max_length:
            issues.append(
                Issue(
                    "error",
                    "value",
                    f"{rule.path}: {len(value)} characters, at most {rule.max_length} allowed"
                    f" (profile {profile.url})",
                    (path,),
                    rule.codes.get("value", "PROFILE-MAXLENGTH"),
                )
            )
    return issues


def _check_constraints(
    profile: Profile,
    rule: ElementRule,
    instances: list[tuple[str, Any]],
    root_node: Any,
    resource: dict[str, Any],
) -> list[Issue]:
    if not rule.constraints:
        return []
    issues: list[Issue] = []
    type_path = _type_path(profile.type, rule.steps)
    env = {"resource": root_node, "rootResource": root_node}
    for path, value in instances:
        if not rule.steps:
            node: Any = root_node
        elif type_path is not None and isinstance(value, dict):
            node = ResourceNode.create_node(value, type_path)
        else:
            node = value
        for c in rule.constraints:
            # fhirpathpy takes ~0.2 ms an evaluation, and codings, modifiers and whole header
            # elements recur across thousands of claims: remember verdicts by what they read.
            memo_key = _memo_key(profile, rule, c, value, resource)
            if memo_key is not None:
                verdict = _VERDICTS.get(memo_key)
                if verdict is not None:
                    if not verdict:
                        issues.append(_violation(profile, c, path))
                    continue
            try:
                result = c.evaluate(node, env)
            except Exception as exc:  # noqa: BLE001 - a broken invariant must not crash a write
                issues.append(
                    Issue(
                        "error",
                        "exception",
                        f"invariant {c.key} could not be evaluated: {type(exc).__name__}",
                        (path,),
                        c.key,
                    )
                )
                continue
            ok = bool(result) and not any(r is False for r in result)
            if memo_key is not None:
                if len(_VERDICTS) >= _MAX_VERDICTS:
                    _VERDICTS.clear()
                _VERDICTS[memo_key] = ok
            if not ok:
                issues.append(_violation(profile, c, path))
    return issues


_VERDICTS: dict[tuple[Any, ...], bool] = {}
_MAX_VERDICTS = 100_000
# Expressions that may read anything of the resource: never memoised.
_OPEN_ENDED = ("descendants", "children", "repeat", "resolve", "rootResource", "trace", "now()", "today()")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@cache
def _reads(resource_type: str, expression: str, at_root: bool) -> frozenset[str] | None:
    """The top-level elements of the resource an invariant can read (None: it may read anything)."""
    if any(word in expression for word in _OPEN_ENDED) or (at_root and "$this" in expression):
        return None
    if not at_root and "%resource" not in expression:
        return frozenset()
    fields = _top_level(resource_type)
    return frozenset(n for n in _NAME.findall(expression) if n in fields)


@cache
def _top_level(resource_type: str) -> frozenset[str]:
    from fhir.resources.R4B import get_fhir_model_class

    cls = get_fhir_model_class(resource_type)
    return frozenset(f.alias or n for n, f in cls.model_fields.items())


def _memo_key(
    profile: Profile, rule: ElementRule, c: Constraint, value: Any, resource: dict[str, Any]
) -> tuple[Any, ...] | None:
    reads = _reads(profile.type, c.expression, not rule.steps)
    if reads is None:
        return None
    dump = orjson.dumps
    sort = orjson.OPT_SORT_KEYS
    parts = tuple(dump(resource.get(n), option=sort) for n in sorted(reads))
    node = dump(value, option=sort) if rule.steps else b""
    return (profile.url, c.key, node, parts)


def _violation(profile: Profile, c: Constraint, path: str) -> Issue:
    return Issue(
        "warning" if c.severity == "warning" else "error",
        "invariant",
        f"{c.key}: {c.human} (profile {profile.url})",
        (f"{path}.{c.location}" if c.location else path,),
        c.key,
    )
