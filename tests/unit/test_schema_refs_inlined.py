"""The contract schemas are compiled with their local references inlined (runtime.schemas):
every instance passes or fails as with the references resolved at each check, and where an
instance fails, the same place and rule are named."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jsonschema import FormatChecker

from runtime.schemas import SCHEMAS, Schema, _Validator, schema, with_local_refs_inlined

EXAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "examples"


def _as_written(name: str) -> Schema:
    return Schema(name, _Validator(json.loads((SCHEMAS / f"{name}.json").read_text()), format_checker=FormatChecker()))


def _variants(instance: object):
    """The instance, and for each of its properties (one level down too) that property
    left out and given values of other types."""
    yield instance
    if not isinstance(instance, dict):
        return
    for key, value in instance.items():
        without = {k: v for k, v in instance.items() if k != key}
        yield without
        for odd in (12345, "x\n", None, [], {"a": 1}, True, "2026-11-22T12:00:00"):
            yield {**instance, key: odd}
        if isinstance(value, dict):
            for inner in _variants(value):
                yield {**instance, key: inner}
        if isinstance(value, list) and value:
            for inner in _variants(value[0]):
                yield {**instance, key: [inner, *value[1:]]}


@pytest.mark.parametrize("name", sorted(p.stem for p in SCHEMAS.glob("ro.punte.*.json")))
def test_inlined_references_judge_every_example_and_its_variants_alike(name):
    compiled, written = schema(name), _as_written(name)
    assert compiled is not None
    examples = [json.loads(p.read_text()) for p in sorted((EXAMPLES / name).glob("*.json"))]
    checked = 0
    for example in examples:
        data = example.get("data", example) if isinstance(example, dict) else example
        for variant in _variants(copy.deepcopy(data)):
            assert compiled.problem(variant) == written.problem(variant), variant
            checked += 1
    assert checked or not examples


def test_what_is_not_a_plain_local_reference_alone_is_left_to_the_validator():
    document = {
        "$defs": {
            "Tree": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}}}},
            "Id": {"type": "string", "pattern": "^case-"},
        },
        "properties": {
            "tree": {"$ref": "#/$defs/Tree"},
            "id": {"$ref": "#/$defs/Id"},
            "described": {"$ref": "#/$defs/Id", "maxLength": 9},
            "elsewhere": {"$ref": "other.json#/$defs/Id"},
            "encoded": {"$ref": "#/$defs/a%20b"},
        },
    }
    inlined = with_local_refs_inlined(document)["properties"]
    assert inlined["id"] == {"type": "string", "pattern": "^case-"}
    assert inlined["tree"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Tree"}, "a recursion stays"
    assert inlined["described"] == {"$ref": "#/$defs/Id", "maxLength": 9}
    assert inlined["elsewhere"] == {"$ref": "other.json#/$defs/Id"}
    assert inlined["encoded"] == {"$ref": "#/$defs/a%20b"}
    with_id = {**document, "properties": {"x": {"$id": "https://example.org/x", "$ref": "#/$defs/Id"}}}
    assert with_local_refs_inlined(with_id) is with_id, "an inner $id: nothing is inlined"
