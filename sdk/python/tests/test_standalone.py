"""The SDK stands alone: it imports none of the network's own packages, only its declared
dependencies and the standard library."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import punte_sdk

PACKAGE = Path(punte_sdk.__file__).resolve().parent
ALLOWED = {"punte_sdk", "cryptography", "joserfc", "httpx", "confluent_kafka", "__future__"}


def test_the_sdk_imports_only_its_dependencies_and_the_standard_library():
    imported = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    assert imported - ALLOWED <= set(sys.stdlib_module_names), imported - ALLOWED - set(sys.stdlib_module_names)
    assert not imported & {"runtime", "services", "contracts", "punte"}
