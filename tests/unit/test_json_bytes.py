"""The network's JSON bytes (runtime.json_bytes) are the json module's, byte for byte, for
everything an event or an audit leaf holds: signatures and leaf hashes are over these bytes,
and an entry written before must hash the same when it is written again."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import json_bytes

# Any text, control characters, line separators and non-BMP characters included; no lone
# surrogates (they are not UTF-8, for either writer).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
# Integers beyond 64 bits too: orjson writes none, and the json module's bytes are kept.
SCALARS = st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70) | TEXT
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
                      max_leaves=30)


@settings(max_examples=400)
@given(VALUES)
def test_compact_is_the_json_modules_bytes(value):
    assert json_bytes.compact(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@settings(max_examples=400)
@given(VALUES)
def test_canonical_is_the_json_modules_sorted_bytes(value):
    expected = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    assert json_bytes.canonical(value) == expected


@dataclass
class _Row:
    id: int


@pytest.mark.parametrize("value", [datetime(2026, 11, 30, tzinfo=timezone.utc), _Row(1)])
def test_what_is_not_json_is_refused_as_the_json_module_does(value):
    with pytest.raises(TypeError):
        json.dumps({"x": value})
    with pytest.raises(TypeError):
        json_bytes.compact({"x": value})
