"""SMART scope algebra: parse v1 and v2 resource scopes, decide access, narrow grants.

Pure functions of their inputs. A scope string that does not parse grants nothing: undefined or
out-of-order permission suffixes (`.dus`) are never guessed. Wildcard scopes (`*`) cover every
type except AuditEvent, which only a scope naming it explicitly reaches, and AuditEvents are
read-only through the API whatever the scope says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

CONTEXTS = ("patient", "user", "system")
LETTERS = "cruds"
PROTECTED_TYPES = frozenset({"AuditEvent"})
READ_ONLY_TYPES = frozenset({"AuditEvent"})
# Scopes that are not about resources; a registration grants them only by naming them.
NON_RESOURCE = frozenset(
    {
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    }
)
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE_RE = re.compile(
    r"^(?P<ctx>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})\.(?P<perm>[a-z*]+)"
    r"(?:\?(?P<query>.+))?$"
)
_V2_RE = re.compile(r"^c?r?u?d?s?$")


@dataclass(frozen=True, slots=True)
class Scope:
    """One parsed resource scope."""

    context: str  # patient | user | system
    resource: str  # a resource type or "*"
    perms: frozenset[str]  # letters of "cruds"
    params: tuple[tuple[str, str], ...]  # granular restriction, sorted; () = none
    version: int  # 1 or 2
    raw: str

    def names(self, resource_type: str) -> bool:
        """True if this scope reaches the type (wildcards do not reach protected types)."""
        if self.resource == "*":
            return resource_type not in PROTECTED_TYPES
        return self.resource == resource_type

    def v2(self) -> str:
        """The scope in v2 syntax."""
        perms = "".join(c for c in LETTERS if c in self.perms)
        s = f"{self.context}/{self.resource}.{perms}"
        if self.params:
            s += "?" + urlencode(self.params, safe="|:/")
        return s


def parse(raw: str) -> Scope | None:
    """Parse one resource scope; None for anything that is not a valid v1/v2 resource scope."""
    m = _SCOPE_RE.match(raw)
    if not m:
        return None
    perm = m["perm"]
    query = m["query"]
    if perm in _V1:
        if query:  # granular parameters exist only in v2
            return None
        letters, version = _V1[perm], 1
    elif perm and _V2_RE.match(perm):
        letters, version = perm, 2
    else:
        return None
    params: tuple[tuple[str, str], ...] = ()
    if query:
        try:
            pairs = parse_qsl(query, keep_blank_values=False, strict_parsing=True)
        except ValueError:
            return None
        if not pairs:
            return None
        params = tuple(sorted(pairs))
    return Scope(m["ctx"], m["type"], frozenset(letters), params, version, raw)


def split(scope_string: str | Iterable[str]) -> list[str]:
    """The scope tokens of a space-separated string (or an iterable of tokens), de-duplicated."""
    tokens = scope_string.split() if isinstance(scope_string, str) else list(scope_string)
    return list(dict.fromkeys(t for t in tokens if t))


def parse_all(scopes: str | Iterable[str]) -> list[Scope]:
    """The resource scopes among the tokens (others are ignored)."""
    out = []
    for t in split(scopes):
        s = parse(t)
        if s is not None:
            out.append(s)
    return out


def _as_scopes(scopes: str | Iterable[str | Scope]) -> list[Scope]:
    if isinstance(scopes, str):
        return parse_all(scopes)
    out: list[Scope] = []
    for s in scopes:
        if isinstance(s, Scope):
            out.append(s)
        else:
            p = parse(s)
            if p is not None:
                out.append(p)
    return out


def constraints(
    scopes: str | Iterable[str | Scope], context: str, resource_type: str, letter: str
) -> list[dict[str, str]] | None:
    """Granular restrictions on an allowed interaction.

    Returns [] when no scope allows it, [{}] when some scope allows it without restriction,
    otherwise the parameter sets of the granular scopes that allow it (a resource qualifies if it
    matches any one of them).
    """
    if letter not in LETTERS or len(letter) != 1:
        raise ValueError(f"unknown interaction letter {letter!r}")
    if resource_type in READ_ONLY_TYPES and letter not in "rs":
        return []
    found: list[dict[str, str]] = []
    for s in _as_scopes(scopes):
        if s.context == context and letter in s.perms and s.names(resource_type):
            if not s.params:
                return [{}]
            found.append(dict(s.params))
    return found


def allows(scopes: str | Iterable[str | Scope], context: str, resource_type: str, letter: str) -> bool:
    """True if some scope in this context allows the interaction (possibly with granular limits)."""
    return bool(constraints(scopes, context, resource_type, letter))


def covers(outer: Scope, inner: Scope) -> bool:
    """True if everything `inner` allows, `outer` allows too."""
    if outer.context != inner.context or not inner.perms <= outer.perms:
        return False
    if outer.resource == "*":
        if inner.resource in PROTECTED_TYPES:
            return False
    elif outer.resource != inner.resource:
        return False
    # A restriction narrows: outer's parameters must all appear in inner.
    return set(outer.params) <= set(inner.params)


def intersect(a: Scope, b: Scope) -> Scope | None:
    """The largest scope both allow (v2 syntax), or None."""
    if a.context != b.context:
        return None
    perms = a.perms & b.perms
    if not perms:
        return None
    if a.resource == "*":
        resource = b.resource
    elif b.resource == "*" or b.resource == a.resource:
        resource = a.resource
    else:
        return None
    if resource in PROTECTED_TYPES and (a.resource == "*" or b.resource == "*"):
        return None
    pa, pb = set(a.params), set(b.params)
    keys_a, keys_b = {k for k, _ in pa}, {k for k, _ in pb}
    # Combining different values of one parameter would need OR-within-AND: refuse rather than guess.
    if any(dict(a.params)[k] != dict(b.params)[k] for k in keys_a & keys_b):
        return None
    params = tuple(sorted(pa | pb))
    s = Scope(a.context, resource, frozenset(perms), params, 2, "")
    return Scope(s.context, s.resource, s.perms, s.params, 2, s.v2())


def narrow(requested: str | Iterable[str], registered: str | Iterable[str]) -> list[str]:
    """What a client may be granted of what it asked for.

    A requested scope the registration covers whole is granted as written (v1 stays v1);
    otherwise its intersections with the registered scopes are granted in v2 syntax. Other
    scopes (openid, launch/patient, offline_access, ...) need an exact registration. Tokens that
    are neither are dropped.
    """
    reg_tokens = split(registered)
    reg_scopes = parse_all(reg_tokens)
    out: list[str] = []
    for token in split(requested):
        if token in NON_RESOURCE:
            if token in reg_tokens:
                out.append(token)
            continue
        want = parse(token)
        if want is None:
            continue
        if any(covers(r, want) for r in reg_scopes):
            out.append(token)
            continue
        for r in reg_scopes:
            i = intersect(want, r)
            if i is not None and i.raw not in out:
                out.append(i.raw)
    return list(dict.fromkeys(out))


def covered_by(requested: str | Iterable[str], granted: str | Iterable[str]) -> bool:
    """True if every requested token is granted (resource scopes by coverage, others exactly)."""
    g_tokens = split(granted)
    g_scopes = parse_all(g_tokens)
    for token in split(requested):
        if token in g_tokens:
            continue
        want = parse(token)
        if want is None or not any(covers(g, want) for g in g_scopes):
            return False
    return True
