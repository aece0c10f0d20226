"""Report v3 without a broker or a database: intake opens the test vector that the npm `jose`
package sealed (docs/contracts.md, "Sealing a report"), an institution's v2-shaped report
splits into what travels in clear and what is sealed and joins back unchanged, and intake's
key file must hold private P-256 keys."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from contracts.events import ReportSubmittedV2, ReportSubmittedV3
from punte.institution import sealed_report
from punte.synthetic import reporters, synthetic_report
from runtime.ingress import validate_data
from services.intake.adapters.report_keys import ReportKeys, new_key, write_key_file
from services.intake.domain.errors import ReportRejected
from services.intake.domain.sealed import join, read_sealed

ROOT = Path(__file__).resolve().parents[2]
SEALING = ROOT / "contracts" / "test-vectors" / "sealing"
KEYS = ReportKeys.load(SEALING / "intake-test-key.jwks")


def test_intake_opens_the_vector_sealed_by_the_npm_jose_package():
    """contracts/test-vectors/sealing/vector.jwe was produced once by contracts/tools/seal-report.mjs
    (the `jose` npm package), not by Punte's code."""
    plaintext = KEYS.open((SEALING / "vector.jwe").read_text().strip())
    assert json.loads(plaintext) == json.loads((SEALING / "vector.plaintext.json").read_text())
    sealed = read_sealed(plaintext)
    assert sealed.child.cnp == "6160514041231" and sealed.report.institution == "spas-colonesti"


def test_docs_show_the_vector_the_suite_checks():
    docs = (ROOT / "docs" / "contracts.md").read_text()
    assert (SEALING / "vector.jwe").read_text().strip() in docs
    assert json.loads((SEALING / "intake-test-key.jwks").read_text())["keys"][0]["d"] in docs


@pytest.mark.parametrize("seed", range(20))
def test_a_report_split_by_the_sender_joins_back_whole_in_intake(seed):
    rng = random.Random(seed)
    written = synthetic_report(rng, rng.choice(reporters()))
    written["risks"][0]["indicators"] = ["semn observat (sintetic)"]
    data = sealed_report(written, f"e-{seed}", KEYS.public_jwks())
    validate_data("ro.punte.report.submitted.v3", data)
    clear = ReportSubmittedV3.model_validate(data)
    # The clear part (the JWE is random base64url, which may spell anything).
    clear_part = json.dumps({k: v for k, v in data.items() if k != "sealed"})
    assert "cnp" not in clear_part and written["description"] not in json.dumps(data)
    whole = join(clear, read_sealed(KEYS.open(clear.sealed)), f"e-{seed}", written["reporter"]["institution"])
    assert whole == ReportSubmittedV2.model_validate(written)


def test_a_plaintext_that_is_not_json_is_unreadable_and_one_breaking_the_schema_invalid():
    with pytest.raises(ReportRejected) as unreadable:
        read_sealed(b"\xff not json")
    with pytest.raises(ReportRejected) as invalid:
        read_sealed(json.dumps({"report": {"id": "e", "institution": "x"}, "child": {},
                                "description": "d", "ethnicity": "x"}).encode())
    assert (unreadable.value.code, invalid.value.code) == ("SEALED_UNREADABLE", "SEALED_INVALID")


def test_the_key_file_must_hold_private_p256_keys_with_kids(tmp_path):
    public_only = tmp_path / "public.jwks"
    public_only.write_text(json.dumps(KEYS.public_jwks()))
    twice = tmp_path / "twice.jwks"
    write_key_file(twice, [new_key("k-1"), new_key("k-1")])
    for path in (tmp_path / "missing.jwks", public_only, twice):
        with pytest.raises(ValueError):
            ReportKeys.load(path)
    write_key_file(tmp_path / "good.jwks", [new_key("k-2"), new_key("k-1")])
    assert ReportKeys.load(tmp_path / "good.jwks").current == "k-2"


def test_the_embedded_state_folder_holds_intakes_encryption_key_and_keeps_it(tmp_path):
    from punte.state import State
    from runtime.settings import Settings
    from services.intake.bootstrap import build_report_keys

    state = State(tmp_path / "state").prepare()
    first = build_report_keys(Settings(state_dir=state.root)).public_jwks()
    assert state.intake_encryption_keys_file.stat().st_mode & 0o077 == 0, "only its owner reads it"
    assert build_report_keys(Settings(state_dir=State(state.root).prepare().root)).public_jwks() == first
