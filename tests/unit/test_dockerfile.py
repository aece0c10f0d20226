"""deploy/Dockerfile (decision 0030), read as text since no Docker engine runs here: a
multi-stage build whose final stage only copies the installed environment (no pip, compiler
or build tool runs there); dependencies from deploy/requirements.lock with their hashes, the
project itself without dependencies, nothing of the embedded extra; a numeric non-root user
owning the one writable state volume the services' state folder points at. Each check is
shown to refuse a Dockerfile that breaks it."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
STATE = "/var/lib/punte"


@dataclass
class Instruction:
    name: str
    arguments: str


def parse(text: str) -> list[list[Instruction]]:
    """The stages of a Dockerfile, each a list of its instructions (continuation lines
    joined, comments dropped); ARGs before the first FROM are left out."""
    stages: list[list[Instruction]] = []
    logical = re.sub(r"\\\n(\s*#.*\n)*", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    for line in logical.splitlines():
        if not line.strip():
            continue
        name, _, arguments = line.strip().partition(" ")
        if name.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(Instruction(name.upper(), arguments.strip()))
    return stages


def env_of(stage: list[Instruction]) -> dict[str, str]:
    values = {}
    for instruction in stage:
        if instruction.name == "ENV":
            for word in shlex.split(instruction.arguments):
                key, _, value = word.partition("=")
                values[key] = value
    return values


def problems(text: str) -> list[str]:
    stages = parse(text)
    found = []
    if len(stages) < 2:
        return ["not a multi-stage build"]
    *builds, final = stages
    runs = [i.arguments for stage in stages for i in stage if i.name == "RUN"]
    installs = [r for r in runs if re.search(r"\bpip\b.*\binstall\b", r)]
    if "embedded" in " ".join(installs):
        found.append("the embedded extra is installed")
    locked = [r for r in installs if "--require-hashes" in r and re.search(r"-r \S*requirements\.lock", r)]
    if not locked:
        found.append("dependencies are not installed from the lock with --require-hashes")
    for run in installs:
        if run not in locked and "uninstall" not in run and "--no-deps" not in run:
            found.append(f"an install that neither uses the lock nor --no-deps: {run}")
    if not any(i.name == "COPY" and "deploy/requirements.lock" in i.arguments for stage in builds for i in stage):
        found.append("the lock is not copied into the build")
    final_runs = [i.arguments for i in final if i.name == "RUN"]
    if any(re.search(r"\bpip\b.*\binstall\b|apt-get|\bapk\b|\bgcc\b|\bmake\b", r) for r in final_runs):
        found.append("the final stage installs or builds something")
    if not any(i.name == "COPY" and i.arguments.startswith("--from=") for i in final):
        found.append("the final stage does not copy the built environment")
    users = [i.arguments for i in final if i.name == "USER"]
    user = users[-1] if users else "0"
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or int(uid) == 0 or (gid and (not gid.isdigit() or int(gid) == 0)):
        found.append(f"the user is not a numeric non-root uid[:gid]: {user}")
    volumes = " ".join(i.arguments for i in final if i.name == "VOLUME")
    if STATE not in volumes:
        found.append(f"{STATE} is not a volume")
    if not any(re.search(rf"chown\s+{re.escape(user)}\s+{STATE}\b", r) for r in final_runs):
        found.append(f"{STATE} is not owned by the user {user}")
    env = env_of(final)
    if env.get("PUNTE_STATE_DIR") != STATE:
        found.append(f"PUNTE_STATE_DIR is not {STATE}: state would be written elsewhere")
    if env.get("PYTHONDONTWRITEBYTECODE") != "1":
        found.append("Python would write bytecode next to the code (read-only root filesystem)")
    if env.get("PYTHONSAFEPATH") != "1":
        # The working directory is the writable volume: nothing may be imported from it.
        found.append("Python would import code from the working directory")
    return found


def test_the_dockerfile_has_every_property():
    assert problems(DOCKERFILE.read_text()) == []


def _swap(old: str, new: str):
    def swap(text: str) -> str:
        assert old in text, old
        return text.replace(old, new)
    return swap


@pytest.mark.parametrize("break_it", [
    _swap("USER 10001:10001", "USER nobody"),
    _swap("USER 10001:10001", "USER 0"),
    _swap("--require-hashes ", ""),
    _swap("--no-deps", "--no-deps '.[embedded]'"),
    _swap("PYTHONDONTWRITEBYTECODE=1", "PYTHONDONTWRITEBYTECODE=0"),
    _swap("PYTHONSAFEPATH=1 ", ""),
    _swap(f"VOLUME [\"{STATE}\"]", ""),
    lambda text: text + "RUN apt-get update && apt-get install -y gcc\n",
    lambda text: re.sub(r"\nFROM [^\n]* AS build\n", "\n", text),
], ids=["named-user", "root", "no-hashes", "embedded-extra", "bytecode", "code-from-cwd", "no-volume", "compiler",
        "single-stage"])
def test_a_dockerfile_that_breaks_a_property_is_refused(break_it):
    assert problems(break_it(DOCKERFILE.read_text())) != []
