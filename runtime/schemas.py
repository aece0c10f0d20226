"""The contracts' JSON Schemas (contracts/schemas/), compiled once: whether a message's data
satisfies its schema is asked of jsonschema-rs, a compiled validator (about 1 µs a report,
where the jsonschema package took about 110 µs: bench/README.md, step 29). Only a refusal
is described, in the schema's words and never the value, by the jsonschema package, whose
errors name the rule a value broke; that validator is built the first time one is needed.

Where the two read a rule differently, the compiled validator decides: it is the stricter
(a pattern's ``$`` matches no trailing line break; formats are checked by RFC 3339), and a
refusal it alone finds is described from its own error."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, ValidationError

SCHEMAS = Path(__file__).resolve().parent.parent / "contracts" / "schemas"

# Rules whose schema value says what was expected (the sender's value is never repeated:
# both validators' own messages quote it, and a mistyped CNP must not travel back or be logged).
_EXPECTED = frozenset({"type", "pattern", "format", "enum", "const", "minimum", "maximum",
                       "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
                       "minItems", "maxItems", "multipleOf", "uniqueItems"})


@dataclass(frozen=True)
class Schema:
    """One contract schema: ``problem`` says whether an instance satisfies it and, when it
    does not, where and which rule it broke."""

    name: str
    document: dict[str, Any] = field(repr=False)
    compiled: jsonschema_rs.Validator = field(repr=False, compare=False)

    @staticmethod
    def of(name: str, document: dict[str, Any]) -> "Schema":
        return Schema(name, document, jsonschema_rs.validator_for(document, validate_formats=True))

    @cached_property
    def _describer(self) -> "Draft202012Validator":
        # Imported on the first refusal: a service that refuses nothing never holds the
        # jsonschema package (about 10 MB of each service's memory).
        from jsonschema import Draft202012Validator, FormatChecker
        return Draft202012Validator(self.document, format_checker=FormatChecker())

    def problem(self, instance: Any) -> str | None:
        """Where the first error is and which rule it broke: never the value. None when
        ``instance`` is valid."""
        if self.compiled.is_valid(instance):
            return None
        errors = sorted(self._describer.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.absolute_path) or "(root)"
            return f"{where}: {broken_rule(first)}"[:300]
        error = next(iter(self.compiled.iter_errors(instance)))
        where = "/".join(str(p) for p in error.instance_path) or "(root)"
        rule = str(error.schema_path[-1]) if error.schema_path else "the schema"
        try:
            value = _at(self.document, error.schema_path)
        except (KeyError, IndexError, TypeError):  # a path through a $ref
            return f"{where}: does not satisfy {rule}"[:300]
        return f"{where}: {_rule_in_schema_words(rule, value)}"[:300]


def _at(document: Any, path: Any) -> Any:
    for step in path:
        document = document[step]
    return document


def _rule_in_schema_words(rule: str, value: Any) -> str:
    if rule in _EXPECTED:
        return f"must satisfy {rule} {json.dumps(value, ensure_ascii=False)}"[:200]
    if rule in ("additionalProperties", "unevaluatedProperties"):
        return "a property the schema does not allow"
    return f"does not satisfy {rule}"


def broken_rule(error: "ValidationError") -> str:
    """The schema rule an instance broke, in the schema's words only."""
    if error.validator == "required":
        return error.message  # "'x' is a required property": the name comes from the schema
    return _rule_in_schema_words(str(error.validator), error.validator_value)


@cache
def schema(name: str) -> Schema | None:
    """contracts/schemas/<name>.json, compiled; None when the contract has no such schema."""
    path = SCHEMAS / f"{name}.json"
    if not path.is_file():
        return None
    return Schema.of(name, json.loads(path.read_text()))
