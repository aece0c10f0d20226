"""The contracts' JSON Schemas (contracts/schemas/), each compiled once into a validator of
the jsonschema package, read as JSON Schema 2020-12 reads them: formats are asserted (a
``date-time`` needs its zone, checked by rfc3339-validator), and a ``pattern``'s final ``$``
takes no trailing line break, as in ECMA-262 (Python's ``$`` takes one).

jsonschema-rs, a compiled validator, checked a report in about 1 µs where this takes about
110, but its 15 MB library put intake over its 150 MB memory target under load
(bench/README.md, step 29; decision 0044): the package stays."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators

SCHEMAS = Path(__file__).resolve().parent.parent / "contracts" / "schemas"

# Rules whose schema value says what was expected (the sender's value is never repeated:
# the package's own messages quote it, and a mistyped CNP must not travel back or be logged).
_EXPECTED = frozenset({"type", "pattern", "format", "enum", "const", "minimum", "maximum",
                       "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
                       "minItems", "maxItems", "multipleOf", "uniqueItems"})


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _ecma_pattern(validator: Draft202012Validator, pattern: str, instance: Any,
                  schema: dict[str, Any]) -> Iterator[ValidationError]:
    """``pattern`` with ECMA-262's final ``$``: the match must reach the end of the text."""
    if not validator.is_type(instance, "string"):
        return
    match = _regex(pattern).search(instance)
    anchored = pattern.endswith("$") and not pattern.endswith("\\$")
    if match is None or (anchored and "\n" in instance[match.end():]):
        yield ValidationError(f"does not match {pattern!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


@dataclass(frozen=True)
class Schema:
    """One contract schema: ``problem`` says whether an instance satisfies it and, when it
    does not, where and which rule it broke."""

    name: str
    validator: Draft202012Validator = field(repr=False, compare=False)

    def problem(self, instance: Any) -> str | None:
        """Where the first error is and which rule it broke: never the value. None when
        ``instance`` is valid."""
        errors = sorted(self.validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if not errors:
            return None
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        return f"{where}: {broken_rule(first)}"[:300]


def broken_rule(error: ValidationError) -> str:
    """The schema rule an instance broke, in the schema's words only."""
    if error.validator == "required":
        return error.message  # "'x' is a required property": the name comes from the schema
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        return "a property the schema does not allow"
    if error.validator in _EXPECTED:
        return f"must satisfy {error.validator} {json.dumps(error.validator_value, ensure_ascii=False)}"[:200]
    return f"does not satisfy {error.validator}"


def with_local_refs_inlined(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with each ``{"$ref": "#/..."}`` (a reference alone, to a place in the
    same document) replaced by what it points at, so the validator does not resolve it
    again at every instance: a report v3's check took 325 µs, 248 inlined (the referencing
    library's lookups). A reference with other keywords beside it, one inside its own target
    (a recursion), and every reference of a document with an ``$id`` below its root (where
    ``#`` could mean another resource) are left as they are: the same instances pass and
    fail either way, and ``$defs`` stay for the references left."""

    def has_inner_id(node: Any, root: bool = True) -> bool:
        if isinstance(node, dict):
            return (not root and "$id" in node) or any(has_inner_id(v, False) for v in node.values())
        return isinstance(node, list) and any(has_inner_id(v, False) for v in node)

    def target(pointer: str) -> Any:
        node: Any = document
        for part in pointer[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def inline(node: Any, expanding: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [inline(v, expanding) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and len(node) == 1 and ref.startswith("#/") and ref not in expanding:
            try:
                found = target(ref)
            except (KeyError, IndexError, TypeError):
                return node  # not a plain pointer (percent-encoded, say): the validator resolves it
            return inline(found, expanding | {ref})
        return {k: inline(v, expanding) for k, v in node.items()}

    return document if has_inner_id(document) else inline(document, frozenset())


@cache
def schema(name: str) -> Schema | None:
    """contracts/schemas/<name>.json, compiled; None when the contract has no such schema."""
    path = SCHEMAS / f"{name}.json"
    if not path.is_file():
        return None
    document = with_local_refs_inlined(json.loads(path.read_text()))
    return Schema(name, _Validator(document, format_checker=FormatChecker()))
