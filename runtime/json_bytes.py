"""JSON as this network writes it: compact (no spaces), UTF-8 (no \\u escapes but JSON's
own), and for the audit trail's leaves, keys sorted. orjson writes it in about a twentieth
of the json module's time (the contracts' example events: 4.4–6.6 µs each, 0.2–0.3 with
orjson; bench/README.md, step 30), and the same bytes for what events hold (text,
integers, booleans, null, lists, objects with text keys: tests/unit/test_json_bytes.py holds
it to the json module's bytes); an integer beyond 64 bits, which orjson does not write, is
written by the json module.

Reading stays with the json module: orjson reads an integer beyond 64 bits as a float,
silently, and it is hardly faster from text (decision 0044)."""
from __future__ import annotations

import json
from typing import Any

import orjson

# What the json module refuses, orjson refuses too: dates and dataclasses are not JSON here.
_AS_THE_JSON_MODULE = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def compact(value: Any) -> bytes:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()``."""
    try:
        return orjson.dumps(value, option=_AS_THE_JSON_MODULE)
    except orjson.JSONEncodeError:
        # What orjson does not write (an integer beyond 64 bits, which a schema without a
        # maximum lets in) the json module writes, as before; what neither writes raises
        # TypeError, as before.
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def canonical(value: Any) -> bytes:
    """``compact`` with every object's keys sorted (``sort_keys=True``)."""
    try:
        return orjson.dumps(value, option=_AS_THE_JSON_MODULE | orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
