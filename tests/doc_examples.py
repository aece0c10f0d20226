"""The examples of a Markdown page: fenced blocks whose info string names them
(```json example=key-file```), so tests check what the page shows rather than a copy."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONNECTING = ROOT / "docs" / "connecting.md"
FENCE = re.compile(r"^```(\w+)[ \t]+example=([\w-]+)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    language: str
    name: str
    text: str


def examples(path: Path = CONNECTING) -> dict[str, Example]:
    found: dict[str, Example] = {}
    for language, name, text in FENCE.findall(path.read_text(encoding="utf-8")):
        if name in found:
            raise ValueError(f"{path.name}: two examples named {name}")
        found[name] = Example(language, name, text)
    return found


def python_namespace(*names: str, path: Path = CONNECTING) -> dict[str, Any]:
    """The page's Python examples ``names`` run in order in one namespace, as a reader
    would paste them one after the other."""
    namespace: dict[str, Any] = {"__name__": "connecting_examples"}
    found = examples(path)
    for name in names:
        exec(compile(found[name].text, f"{path.name}:{name}", "exec"), namespace)  # noqa: S102 (our own page)
    return namespace


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: str


def http_request(example: Example) -> HttpRequest:
    """An ```http example``` as method, target, headers (in order) and body."""
    head, _, body = example.text.partition("\n\n")
    request_line, *lines = head.splitlines()
    method, target, _version = request_line.split(" ")
    headers = [(name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]
    return HttpRequest(method, target, headers, body.rstrip("\n"))


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def table_after(heading: str, path: Path = CONNECTING) -> list[list[str]]:
    """The rows (cells stripped) of the first table under ``heading``, header row left out."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
        elif rows:
            break
    return [row for row in rows[1:] if not set("".join(row)) <= set("-:| ")]
