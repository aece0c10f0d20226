"""Intake fails closed on its secrets (issue #10): without a pseudonym key or identity-vault
keys of full strength it does not start, and says which PUNTE_* variable to set; there is
no key built into the source to fall back on (with one, the ~10^9 CNPs could be hashed
by anyone holding the code to reverse every pseudonym)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.settings import Settings
from services.intake.bootstrap import MissingSecret, build_rules, build_vault

ROOT = Path(__file__).resolve().parents[2]
GOOD_PSEUDONYM = "3c" * 32
GOOD_IDENTITY = f"id-1:{'9d' * 32}"


@pytest.mark.parametrize("value", ["", "   ", "abcd", "3c" * 16, "zz" * 32, "3c" * 31 + "3"])
def test_a_missing_short_or_malformed_pseudonym_key_is_refused(value):
    with pytest.raises(MissingSecret) as refused:
        build_rules(value)
    assert "PUNTE_PSEUDONYM_KEY" in str(refused.value)
    assert not value.strip() or value not in str(refused.value), "the error never echoes the key"


@pytest.mark.parametrize("value", ["", "id-1", "id-1:", f"id-1:{'9d' * 16}", f"id-1:{'zz' * 32}",
                                   f":{'9d' * 32}", f"{GOOD_IDENTITY},id-2:{'9d' * 31}"])
def test_missing_short_or_malformed_identity_keys_are_refused(value):
    with pytest.raises(MissingSecret) as refused:
        build_vault(Settings(identity_keys=value))
    assert "PUNTE_IDENTITY_KEYS" in str(refused.value)
    assert "9d" * 16 not in str(refused.value), "the error never echoes a key"


def test_full_strength_keys_are_taken():
    assert build_rules(GOOD_PSEUDONYM).pseudonym_key == bytes.fromhex(GOOD_PSEUDONYM)
    assert build_vault(Settings(identity_keys=GOOD_IDENTITY)).current == "id-1"


def start_intake(**secrets: str) -> subprocess.CompletedProcess:
    """``python -m services.intake`` with nothing it could connect to: a service that did
    not refuse at once would hang on its database and fail the timeout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNTE_")}
    env |= {"PYTHONPATH": str(ROOT), "PUNTE_DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:9/postgres",
            "PUNTE_KAFKA_BOOTSTRAP": "127.0.0.1:9", **secrets}
    return subprocess.run([sys.executable, "-m", "services.intake"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("secrets, missing", [
    ({}, "PUNTE_PSEUDONYM_KEY"),
    ({"PUNTE_PSEUDONYM_KEY": GOOD_PSEUDONYM}, "PUNTE_IDENTITY_KEYS"),
    ({"PUNTE_IDENTITY_KEYS": GOOD_IDENTITY, "PUNTE_PSEUDONYM_KEY": "0123"}, "PUNTE_PSEUDONYM_KEY"),
    # Without its encryption keys no sealed report (v3) could open (issue #11).
    ({"PUNTE_IDENTITY_KEYS": GOOD_IDENTITY, "PUNTE_PSEUDONYM_KEY": GOOD_PSEUDONYM,
      "PUNTE_STATE_DIR": "/nonexistent/punte-state"}, "PUNTE_INTAKE_ENCRYPTION_KEYS_FILE"),
])
def test_intake_refuses_to_start_without_its_secrets(secrets, missing):
    started = start_intake(**secrets)
    assert started.returncode != 0
    assert missing in started.stderr
    assert "Traceback" not in started.stderr, "a clear message, not a stack trace"
