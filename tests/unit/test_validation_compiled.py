"""The compiled validation walk against the pydantic model it replaced on the write path.

The model (`model_check`) is the oracle: whatever it refuses, the walk must refuse; whatever the
walk refuses beyond it must be one of the checks validation.py documents as its own.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhirbill.fhir.errors import FHIRError, Issue
from fhirbill.fhir.registry import RESOURCE_TYPES, model_class
from fhirbill.fhir.schema import Field, Shape, shape_of
from fhirbill.fhir.validation import model_check, validate_resource

DATA = Path(__file__).resolve().parents[1] / "data"
Node = tuple[dict[str, Any], Shape, str]  # an element's JSON, its compiled shape, its FHIRPath


@cache
def corpus() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(label, resource): every official example, every Synthea entry resource."""
    out = []
    for f in sorted((DATA / "fhir-r4-examples").glob("*.json")):
        out.append((f.name, orjson.loads(f.read_bytes())))
    for f in sorted((DATA / "synthea").glob("*.json")):
        for i, entry in enumerate(orjson.loads(f.read_bytes())["entry"]):
            out.append((f"{f.name}#entry[{i}]", entry["resource"]))
    return tuple(out)


def compiled(data: dict[str, Any]) -> list[Issue]:
    """The issues validate_resource raises (none when it passes)."""
    try:
        validate_resource(data, in_bundle=True)
    except FHIRError as exc:
        return exc.issues
    return []


# --- 1. agreement on valid data -------------------------------------------------------------------


def test_every_example_and_synthea_resource_agrees_with_the_model() -> None:
    disagreements = []
    for label, resource in corpus():
        oracle, ours = model_check(resource), compiled(resource)
        if bool(oracle) != bool(ours):
            disagreements.append((label, oracle, ours))
    assert len(corpus()) > 250
    assert not disagreements, disagreements


def test_whole_synthea_bundles_validate() -> None:
    for f in sorted((DATA / "synthea").glob("*.json")):
        bundle = orjson.loads(f.read_bytes())
        assert not model_check(bundle)
        checked = validate_resource(bundle, in_bundle=True)
        assert checked.data is bundle


def test_every_stored_type_compiles_from_its_model() -> None:
    seen: set[int] = set()

    def check(shape: Shape) -> None:
        if id(shape) in seen:
            return
        seen.add(id(shape))
        for f in shape.fields.values():
            assert f.ext_of is None or shape.fields[f.ext_of].ext_key == f.key, (shape.name, f.key)
            assert (f.primitive is not None) + (f.shape is not None) + f.resource == 1, (shape.name, f.key)
            if f.shape is not None:
                check(f.shape)

    for rt in RESOURCE_TYPES:
        cls = model_class(rt)
        shape = shape_of(cls)
        assert shape.is_resource
        assert set(shape.fields) == {info.alias or name for name, info in cls.model_fields.items()}
        check(shape)
    assert len(seen) > 500


# --- 2. no false accepts ----------------------------------------------------------------------------

# What the walk refuses beyond the model, by the words of its diagnostics (see validation.py).
DOCUMENTED_EXTRAS = {
    "JSON type": re.compile(r"must be a JSON (boolean|integer|number|string|object)\.$"),
    "empty or null": re.compile(r"^(Empty (string|array|object)|Null value) at "),
    "required binding": re.compile(r"must be one of: "),
    "reference": re.compile(r"^Invalid reference at |may only refer to "),
    "resource id": re.compile(r"^Resource id must be "),
    "extension alignment": re.compile(r"must have one entry per value of "),
    "nested resource type": re.compile(r"has no resourceType\.$|is not a resource type this server knows"),
    "FHIR JSON names": re.compile(
        r"^Unknown element '.*\.([a-z]\w*__ext|\w+_fhir|resourceType|resource_type)'\.$"
    ),
}


def documented_extra(issue: Issue) -> bool:
    return any(rule.search(issue.diagnostics) for rule in DOCUMENTED_EXTRAS.values())


def nodes(data: dict[str, Any], shape: Shape, path: str) -> Iterator[Node]:
    """Every element of a resource (contained ones included) with its shape and path."""
    yield data, shape, path
    for key, value in data.items():
        f = shape.fields.get(key)
        if f is None or f.primitive is not None:
            continue
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            sub = f"{path}.{key}[{i}]" if isinstance(value, list) else f"{path}.{key}"
            if f.resource:
                yield from nodes(item, shape_of(model_class(item["resourceType"])), sub)
            elif f.shape is not None:
                yield from nodes(item, f.shape, sub)


BAD_VALUES: dict[str, list[Any]] = {
    "date": ["2023-02-30", "2023-13", "2023-02-28T10:00:00Z", "23-01-01", "2023-2-1", "2021-02-29"],
    "dateTime": ["2023-02-29T10:00:00Z", "2023-02-28T10:00:00", "2023-02-28T24:00:00Z", "2023-02-28T10:00Z"],
    "instant": ["2023-02-28", "2023-02-28T10:00:00", "2021-02-29T00:00:00Z"],
    "time": ["24:00:00", "10:00", "10:00:00Z"],
    "id": ["a_b", "a b", "x" * 256, "é"],
    "code": [" a", "a  b", "a\n", "a\tb", "a "],
    "uri": ["a b", "urn:x y"],
    "url": ["not a url"],
    "canonical": ["a b"],
    "oid": ["1.2.3", "urn:oid:1.02"],
    "uuid": ["not-a-uuid", "urn:uuid:c757873d-ec9a-1326-a141-556f43239520"],
    "string": ["\x0c", "\u3000", "a\x1cb"],
    "markdown": ["\u3000"],
    "integer": [2**31, -(2**31) - 1, 1.5],
    "positiveInt": [0, -1, 2**31],
    "unsignedInt": [-1, 2**31],
    "decimal": [float("inf"), float("nan"), "1.0"],
    "boolean": ["true", 1, "yes"],
    "base64Binary": ["abc", "QQ", "Q==="],
    "xhtml": ["plain text"],
}
WRONG_TYPES: list[Any] = [5, 1.5, True, "5", "true", {"a": 1}, {"text": "x"}, "{}"]
# A valid value of each type, for adding a second member to a choice group.
SAMPLES: dict[str, Any] = {
    "boolean": True,
    "integer": 1,
    "positiveInt": 1,
    "unsignedInt": 1,
    "decimal": 1.5,
    "string": "x",
    "code": "x",
    "uri": "http://example.org",
    "url": "http://example.org",
    "canonical": "http://example.org",
    "markdown": "x",
    "date": "2020-01-01",
    "dateTime": "2020-01-01T00:00:00Z",
    "instant": "2020-01-01T00:00:00Z",
    "time": "10:00:00",
    "id": "x",
    "CodeableConcept": {"text": "x"},
    "Reference": {"display": "x"},
    "Period": {"start": "2020"},
    "Quantity": {"value": 1},
    "Age": {"value": 1},
    "Duration": {"value": 1},
    "Range": {"low": {"value": 1}},
    "Identifier": {"value": "x"},
    "Coding": {"code": "x"},
    "Attachment": {"title": "x"},
}


def sample(f: Field) -> Any:
    return SAMPLES.get(f.primitive.name if f.primitive else f.shape.name if f.shape else "")


Mutation = Callable[[random.Random, dict[str, Any], Shape, str, list[dict[str, Any]]], str | None]


def _keys(
    rng: random.Random, node: dict[str, Any], shape: Shape, want: Callable[[Field], bool]
) -> str | None:
    keys = [k for k in node if k in shape.fields and want(shape.fields[k])]
    return rng.choice(keys) if keys else None


def drop_required(rng: random.Random, node: dict[str, Any], shape: Shape, path: str, _: Any) -> str | None:
    present = [f.key for f in shape.required if f.key in node]
    if not present:
        return None
    key = rng.choice(present)
    del node[key]
    return f"drop required {path}.{key}"


def add_unknown(rng: random.Random, node: dict[str, Any], shape: Shape, path: str, _: Any) -> str | None:
    key = rng.choice(["bogus", "_bogus", "valueFoo", "Name", "extensions", "_extension"])
    node[key] = rng.choice(["x", 1, {"id": "x"}, ["x"]])
    return f"unknown {path}.{key}"


def swap_cardinality(rng: random.Random, node: dict[str, Any], shape: Shape, path: str, _: Any) -> str | None:
    key = _keys(rng, node, shape, lambda f: f.many is not None)
    if key is None:
        return None
    node[key] = node[key][0] if isinstance(node[key], list) else [node[key]]
    return f"cardinality {path}.{key}"


def wrong_type(rng: random.Random, node: dict[str, Any], shape: Shape, path: str, _: Any) -> str | None:
    key = _keys(rng, node, shape, lambda f: True)
    if key is None:
        return None
    value = rng.choice(WRONG_TYPES)
    if isinstance(node[key], list) and rng.random() < 0.7:
        node[key][rng.randrange(len(node[key]))] = value
    else:
        node[key] = value
    return f"wrong type {path}.{key} = {value!r}"


def bad_format(rng: random.Random, node: dict[str, Any], shape: Shape, path: str, _: Any) -> str | None:
    key = _keys(rng, node, shape, lambda f: f.primitive is not None and f.primitive.name in BAD_VALUES)
    if key is None:
        return None
    primitive = shape.fields[key].primitive
    assert primitive is not None
    value = rng.choice(BAD_VALUES[primitive.name])
    if isinstance(node[key], list):
        node[key][rng.randrange(len(node[key]))] = value
    else:
        node[key] = value
    return f"bad {primitive.name} {path}.{key} = {value!r}"


def two_choices(rng: random.Random, node: dict[str, Any], shape: Shape, path: str, _: Any) -> str | None:
    key = _keys(rng, node, shape, lambda f: f.choice is not None)
    if key is None:
        return None
    group = shape.fields[key].choice
    others = [
        f for f in shape.fields.values() if f.choice == group and f.key != key and sample(f) is not None
    ]
    if not others:
        return None
    other = rng.choice(others)
    node[other.key] = sample(other)
    return f"two choices {path}.{key} + {other.key}"


def null_or_empty(rng: random.Random, node: dict[str, Any], shape: Shape, path: str, _: Any) -> str | None:
    key = _keys(rng, node, shape, lambda f: True)
    if key is None:
        return None
    value = rng.choice([None, "", " ", [], {}, [None], [{}]])
    if isinstance(node[key], list) and node[key] and rng.random() < 0.5:
        node[key][rng.randrange(len(node[key]))] = rng.choice([None, "", {}])
    else:
        node[key] = value
    return f"null/empty {path}.{key}"


def bad_extension(rng: random.Random, node: dict[str, Any], shape: Shape, path: str, _: Any) -> str | None:
    key = _keys(rng, node, shape, lambda f: f.ext_key is not None)
    if key is None:
        return None
    f = shape.fields[key]
    assert f.ext_key is not None
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    choices: list[Any] = [{}, {"id": "a"}, ext, "x", [ext], {"bogus": 1}, {"extension": []}, {"id": None}]
    if isinstance(node[key], list):
        n = len(node[key])
        choices += [[ext] * n, [ext] * (n + 1), [None] * n, [ext, *[None] * (n - 1)], ext]
        if rng.random() < 0.3:  # a null value held in place by its extension, or not
            i = rng.randrange(n)
            node[key][i] = None
            if rng.random() < 0.5:
                node[f.ext_key] = [ext if j == i else None for j in range(n)]
            return f"null placeholder {path}.{key}[{i}]"
    if rng.random() < 0.2:
        del node[key]  # a required primitive may be an extension alone
    node[f.ext_key] = rng.choice(choices)
    return f"extension {path}.{f.ext_key} = {node[f.ext_key]!r}"


def python_names(rng: random.Random, node: dict[str, Any], shape: Shape, path: str, _: Any) -> str | None:
    if rng.random() < 0.5:
        node["resourceType"] = shape.name
        return f"resourceType on {path}"
    key = _keys(rng, node, shape, lambda f: f.ext_of is not None)
    if key is None:
        return None
    node[f"{key[1:]}__ext"] = node.pop(key)
    return f"python name {path}.{key}"


def bad_contained(
    rng: random.Random, node: dict[str, Any], shape: Shape, path: str, pool: list[dict[str, Any]]
) -> str | None:
    if "contained" not in shape.fields:
        return None
    inner = orjson.loads(orjson.dumps(rng.choice(pool)))
    inner.pop("contained", None)
    inner["id"] = "c1"
    what = rng.choice(["clean", "mutated", "no type", "bogus type", "element type"])
    if what == "mutated":
        what = mutate(rng, inner, pool) or "clean"
    elif what == "no type":
        del inner["resourceType"]
    elif what == "bogus type":
        inner["resourceType"] = "Bogus"
    elif what == "element type":
        inner["resourceType"] = "HumanName"
    node.setdefault("contained", []).append(inner)
    return f"contained in {path}: {what}"


def bad_root_id(rng: random.Random, node: dict[str, Any], shape: Shape, path: str, _: Any) -> str | None:
    if not shape.is_resource:
        return None
    node["id"] = rng.choice(["a_b", "x" * 65, "x" * 300, "", 7, "a/b"])
    return f"id {path}.id = {node['id']!r}"


MUTATIONS: list[Mutation] = [
    drop_required,
    add_unknown,
    swap_cardinality,
    wrong_type,
    bad_format,
    bad_format,
    two_choices,
    null_or_empty,
    bad_extension,
    bad_extension,
    python_names,
    bad_contained,
    bad_root_id,
]


def mutate(rng: random.Random, resource: dict[str, Any], pool: list[dict[str, Any]]) -> str | None:
    """Apply one random mutation somewhere in the resource; describe it (None when none applied)."""
    rt = resource["resourceType"]
    everywhere = list(nodes(resource, shape_of(model_class(rt)), rt))
    for _ in range(20):
        data, shape, path = rng.choice(everywhere)
        done = rng.choice(MUTATIONS)(rng, data, shape, path, pool)
        if done:
            return done
    return None


def near(a: str, b: str) -> bool:
    """Two expressions name the same element, or one lies inside the other."""
    return a.startswith(b) or b.startswith(a)


def test_mutations_never_pass_where_the_model_refuses() -> None:
    rng = random.Random(20240611)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for _label, resource in corpus():
        by_type.setdefault(resource["resourceType"], []).append(resource)
    pool = [r for rs in by_type.values() for r in rs[:6]]
    synthea = orjson.loads(sorted((DATA / "synthea").glob("*.json"))[0].read_bytes())
    pool.append({"resourceType": "Bundle", "type": "collection", "entry": synthea["entry"][:4]})
    counts = {"refused by both": 0, "refused by the walk only": 0, "accepted by both": 0}
    for n in range(3000):
        mutant = orjson.loads(orjson.dumps(rng.choice(pool)))
        what = mutate(rng, mutant, pool)
        oracle, ours = model_check(mutant), compiled(mutant)
        where = f"mutation #{n}: {what}\n  model: {oracle}\n  walk: {ours}"
        if oracle:
            assert ours, f"false accept, {where}"
            for o in oracle:
                path = o.expression[0].removesuffix(".root")
                assert any(near(path, e) for i in ours for e in i.expression), f"elsewhere, {where}"
            counts["refused by both"] += 1
        elif ours:
            extra = [i for i in ours if not documented_extra(i)]
            assert not extra, f"refused for an undocumented reason, {where}"
            counts["refused by the walk only"] += 1
        else:
            counts["accepted by both"] += 1
    assert min(counts.values()) > 100, counts


# --- primitives: the Python rules against the model's own validators -------------------------------


def _primitives() -> dict[str, Any]:
    out = {}
    for shape in (shape_of(model_class("Extension")), shape_of(model_class("Patient"))):
        for f in shape.fields.values():
            if f.primitive is not None:
                out[f.primitive.name] = f.primitive
    return out


@pytest.mark.parametrize("name", ["date", "dateTime", "instant", "time", "decimal"])
def test_python_rules_match_the_model_validators(name: str) -> None:
    primitive = _primitives()[name]
    rng = random.Random(name)
    seeds = {
        "date": ["2024-02-29", "2023-12", "1999", "0001-01-01"],
        "dateTime": ["2024-02-29T23:59:60.123Z", "2023-12-31T00:00:00+14:00", "2023-01-31", "2023-06"],
        "instant": ["2024-02-29T23:59:59.999999999-05:00", "2023-04-30T12:00:00Z"],
        "time": ["23:59:60", "00:00:00.5", "12:30:15"],
        "decimal": [],
    }[name]
    values: list[Any] = []
    alphabet = "0123456789-:T+Z.x "
    for seed in seeds:
        values.append(seed)
        for _ in range(400):
            chars = list(seed)
            for _ in range(rng.randint(1, 2)):
                i = rng.randrange(len(chars) + 1)
                op = rng.random()
                if op < 0.6 and i < len(chars):
                    chars[i] = rng.choice(alphabet)
                elif op < 0.8:
                    chars.insert(i, rng.choice(alphabet))
                elif i < len(chars):
                    del chars[i]
            values.append("".join(chars))
    if name == "decimal":
        values += [0, -0.0, 1e-7, 1e16, 10**30, 1.5, -2, float("inf"), float("-inf"), float("nan"), 5e-324]
    disagreements = [
        v for v in values if primitive.check(v) != primitive.adapter.validator.isinstance_python(v)
    ]
    assert not disagreements, disagreements[:20]


# --- 3. one rule at a time, with its exact expression ----------------------------------------------

COV = {
    "resourceType": "Coverage",
    "status": "active",
    "beneficiary": {"reference": "Patient/p1"},
    "payor": [{"reference": "Organization/o1"}],
}
EXT = {"url": "http://example.org/x", "valueString": "y"}

RULES: list[tuple[str, dict[str, Any], str, str]] = [
    # (name, resource, issue code, expression)
    ("unknown element", {"resourceType": "Patient", "nickname": "x"}, "structure", "Patient.nickname"),
    ("unknown nested", {"resourceType": "Patient", "name": [{"nick": "x"}]}, "structure", "Patient.name[0].nick"),
    ("python name", {"resourceType": "Patient", "birthDate__ext": {"id": "x"}}, "structure", "Patient.birthDate__ext"),
    ("resourceType on an element", {"resourceType": "Patient", "name": [{"resourceType": "HumanName"}]}, "structure", "Patient.name[0].resourceType"),
    ("unknown in contained", {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "x": 1}]}, "structure", "Patient.contained[0].x"),
    ("contained without type", {"resourceType": "Patient", "contained": [{"id": "o"}]}, "structure", "Patient.contained[0]"),
    ("contained of unknown type", {"resourceType": "Patient", "contained": [{"resourceType": "Bogus"}]}, "structure", "Patient.contained[0]"),
    ("contained element type", {"resourceType": "Patient", "contained": [{"resourceType": "Address"}]}, "structure", "Patient.contained[0]"),
    ("null for a required complex", {**COV, "beneficiary": None}, "structure", "Coverage.beneficiary"),
    ("missing required complex", {k: v for k, v in COV.items() if k != "beneficiary"}, "required", "Coverage.beneficiary"),
    ("missing required primitive", {k: v for k, v in COV.items() if k != "status"}, "required", "Coverage.status"),
    ("required primitive extension without extension", {**{k: v for k, v in COV.items() if k != "status"}, "_status": {"id": "s"}}, "required", "Coverage.status"),
    ("missing required nested", {"resourceType": "Patient", "extension": [{"valueString": "x"}]}, "required", "Patient.extension[0].url"),
    ("missing required choice", {**COV, "costToBeneficiary": [{"type": {"text": "copay"}}]}, "required", "Coverage.costToBeneficiary[0].value"),
    ("two choices", {"resourceType": "Patient", "deceasedBoolean": True, "deceasedDateTime": "2020"}, "structure", "Patient.deceasedDateTime"),
    ("two choices in an extension", {"resourceType": "Patient", "extension": [{**EXT, "valueBoolean": True}]}, "structure", "Patient.extension[0].valueBoolean"),
    ("array for a single value", {"resourceType": "Patient", "gender": ["male"]}, "structure", "Patient.gender"),
    ("single value for an array", {"resourceType": "Patient", "name": {"family": "x"}}, "structure", "Patient.name"),
    ("single for a primitive array", {"resourceType": "Patient", "name": [{"given": "x"}]}, "structure", "Patient.name[0].given"),
    ("string for a boolean", {"resourceType": "Patient", "active": "true"}, "value", "Patient.active"),
    ("number for a string", {"resourceType": "Patient", "name": [{"family": 5}]}, "value", "Patient.name[0].family"),
    ("float for an integer", {"resourceType": "Patient", "multipleBirthInteger": 1.0}, "value", "Patient.multipleBirthInteger"),
    ("string for a decimal", {"resourceType": "Patient", "extension": [{"url": "http://x", "valueDecimal": "1"}]}, "value", "Patient.extension[0].valueDecimal"),
    ("string for an object", {"resourceType": "Patient", "maritalStatus": "M"}, "value", "Patient.maritalStatus"),
    ("impossible date", {"resourceType": "Patient", "birthDate": "2023-02-30"}, "value", "Patient.birthDate"),
    ("impossible dateTime", {"resourceType": "Patient", "deceasedDateTime": "2023-02-29T10:00:00Z"}, "value", "Patient.deceasedDateTime"),
    ("dateTime without zone", {"resourceType": "Patient", "deceasedDateTime": "2023-02-28T10:00:00"}, "value", "Patient.deceasedDateTime"),
    ("date with a time", {"resourceType": "Patient", "birthDate": "2023-02-28T10:00:00Z"}, "value", "Patient.birthDate"),
    ("instant without time", {"resourceType": "Patient", "meta": {"lastUpdated": "2023-02-28"}}, "value", "Patient.meta.lastUpdated"),
    ("time of 24:00", {"resourceType": "Patient", "extension": [{"url": "http://x", "valueTime": "24:00:00"}]}, "value", "Patient.extension[0].valueTime"),
    ("bad code", {"resourceType": "Patient", "language": "en  US"}, "value", "Patient.language"),
    ("bad nested id", {"resourceType": "Patient", "extension": [{"url": "http://x", "valueId": "a_b"}]}, "value", "Patient.extension[0].valueId"),
    ("bad resource id", {"resourceType": "Patient", "id": "x" * 65}, "value", "Patient.id"),
    ("bad oid", {"resourceType": "Patient", "extension": [{"url": "http://x", "valueOid": "1.2.3"}]}, "value", "Patient.extension[0].valueOid"),
    ("bad uuid", {"resourceType": "Patient", "extension": [{"url": "http://x", "valueUuid": "urn:uuid:nope"}]}, "value", "Patient.extension[0].valueUuid"),
    ("positiveInt of 0", {"resourceType": "Claim", "item": [{"sequence": 0}]}, "value", "Claim.item[0].sequence"),
    ("integer out of range", {"resourceType": "Patient", "multipleBirthInteger": 2**31}, "value", "Patient.multipleBirthInteger"),
    ("bad base64", {"resourceType": "Patient", "photo": [{"data": "QQ"}]}, "value", "Patient.photo[0].data"),
    ("infinite decimal", {"resourceType": "Patient", "extension": [{"url": "http://x", "valueDecimal": float("inf")}]}, "value", "Patient.extension[0].valueDecimal"),
    ("string of a form feed", {"resourceType": "Patient", "name": [{"family": "\x0c"}]}, "structure", "Patient.name[0].family"),
    ("empty string", {"resourceType": "Patient", "name": [{"family": ""}]}, "structure", "Patient.name[0].family"),
    ("blank string", {"resourceType": "Patient", "name": [{"family": "  "}]}, "structure", "Patient.name[0].family"),
    ("empty array", {"resourceType": "Patient", "name": []}, "structure", "Patient.name"),
    ("empty object", {"resourceType": "Patient", "name": [{}]}, "structure", "Patient.name[0]"),
    ("null element", {"resourceType": "Patient", "birthDate": None}, "structure", "Patient.birthDate"),
    ("null in a complex array", {"resourceType": "Patient", "name": [None]}, "structure", "Patient.name[0]"),
    ("null in a primitive array", {"resourceType": "Patient", "name": [{"given": ["a", None]}]}, "structure", "Patient.name[0].given[1]"),
    ("null held by nothing", {"resourceType": "Patient", "name": [{"given": ["a", None], "_given": [None, None]}]}, "structure", "Patient.name[0].given[1]"),
    ("null extension for nothing", {"resourceType": "Patient", "name": [{"_given": [None]}]}, "structure", "Patient.name[0]._given[0]"),
    ("extensions misaligned", {"resourceType": "Patient", "name": [{"given": ["a"], "_given": [{"id": "1"}, {"id": "2"}]}]}, "structure", "Patient.name[0]._given"),
    ("empty primitive extension", {"resourceType": "Patient", "_birthDate": {}}, "structure", "Patient._birthDate"),
    ("array primitive extension for a single value", {"resourceType": "Patient", "_birthDate": [{"id": "x"}]}, "structure", "Patient._birthDate"),
    ("unknown in a primitive extension", {"resourceType": "Patient", "_birthDate": {"url": "x"}}, "structure", "Patient._birthDate.url"),
    ("code outside its required binding", {"resourceType": "Patient", "gender": "bogus"}, "code-invalid", "Patient.gender"),
    ("bad reference", {**COV, "beneficiary": {"reference": "not a ref"}}, "value", "Coverage.beneficiary.reference"),
    ("reference to the wrong type", {**COV, "beneficiary": {"reference": "Organization/o1"}}, "value", "Coverage.beneficiary.reference"),
    ("empty resource in an entry", {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {}}]}, "structure", "Bundle.entry[0].resource"),
    ("error inside an entry", {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient", "active": 1}}]}, "value", "Bundle.entry[0].resource.active"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "resource", "code", "expression"), RULES, ids=[r[0] for r in RULES])
def test_each_rule_reports_its_element(
    name: str, resource: dict[str, Any], code: str, expression: str
) -> None:
    issues = compiled(resource)
    assert any(i.code == code and i.expression == (expression,) for i in issues), issues


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Patient", "name": [{"given": ["a", None], "_given": [None, {"id": "g"}]}]},
        {"resourceType": "Patient", "name": [{"_given": [{"extension": [EXT]}]}]},
        {**{k: v for k, v in COV.items() if k != "status"}, "_status": {"extension": [EXT]}},
        {"resourceType": "Patient", "fhir_comments": ["kept, as the model keeps it"]},
        {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "name": "x"}]},
        {"resourceType": "Patient", "deceasedDateTime": "2016-12-31T23:59:60Z"},
        {"resourceType": "Patient", "extension": [{"url": "http://x", "valueUrl": "any string is a url"}]},
    ],
)
def test_valid_edge_cases_pass(resource: dict[str, Any]) -> None:
    assert compiled(resource) == []
    assert model_check(resource) == []


def test_references_are_collected_with_their_paths() -> None:
    checked = validate_resource(
        {
            **COV,
            "contained": [
                {"resourceType": "Organization", "id": "c", "partOf": {"reference": "Organization/o2"}}
            ],
        }
    )
    assert [(r.path, r.resource_type, r.id) for r in checked.references] == [
        ("Coverage.beneficiary.reference", "Patient", "p1"),
        ("Coverage.payor[0].reference", "Organization", "o1"),
        ("Coverage.contained[0].partOf.reference", "Organization", "o2"),
    ]


def test_every_problem_is_listed_once() -> None:
    with pytest.raises(FHIRError) as caught:
        validate_resource({"resourceType": "Patient", "active": "yes", "gender": "x", "name": [], "bogus": 1})
    assert caught.value.status == 400
    assert [i.expression for i in caught.value.issues] == [
        ("Patient.active",),
        ("Patient.gender",),
        ("Patient.name",),
        ("Patient.bogus",),
    ]
