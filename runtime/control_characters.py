"""Control characters in text from outside (ids, search terms, headers, free text): no id,
code or name of this network holds one, PostgreSQL refuses NUL in text, and a line break
could shift fields of a v1 signing input. One rule for every service: Unicode category Cc
(C0, DEL, C1)."""
from __future__ import annotations

import unicodedata


def has_control_characters(text: str | None) -> bool:
    """Whether ``text`` holds a control character (None holds none)."""
    return text is not None and any(unicodedata.category(c) == "Cc" for c in text)


def without_control_characters(text: str) -> str:
    """``text`` with each run of control characters and spaces made one space, trimmed."""
    return " ".join("".join(" " if unicodedata.category(c) == "Cc" else c for c in text).split())
