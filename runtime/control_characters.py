"""Control characters in text from outside (ids, search terms, headers, free text): no id,
code or name of this network holds one, PostgreSQL refuses NUL in text, and a line break
could shift fields of a v1 signing input. One rule for every service: Unicode category Cc
(C0, DEL, C1)."""
from __future__ import annotations

import re

# Category Cc is U+0000-U+001F and U+007F-U+009F, and Unicode's stability policy fixes that
# set for good. One regex search of a 36-character id costs 0.3 µs where asking unicodedata
# for each character's category cost 2.6, and every consumer checks every attribute of every
# message (bench/README.md, the eighth session of issue #14).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]+")


def has_control_characters(text: str | None) -> bool:
    """Whether ``text`` holds a control character (None holds none)."""
    return text is not None and CONTROL.search(text) is not None


def without_control_characters(text: str) -> str:
    """``text`` with each run of control characters and spaces made one space, trimmed."""
    return " ".join(CONTROL.sub(" ", text).split())
