"""What an inbound message is told when its data breaks the schema: where and which rule,
never the value it sent (a mistyped CNP would otherwise travel back in the outcome, into
the dead letter and the audit trail's readable fields)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.ingress import Rejected, validate_data

EXAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "examples" / "ro.punte.report.submitted.v1"
MISTYPED_CNP = "50101010400l7"  # synthetic, with a letter l for a digit 1


def report() -> dict:
    return json.loads(sorted(EXAMPLES.glob("*.json"))[0].read_text())


@pytest.mark.parametrize("change, where", [
    (lambda r: r["child"].update(cnp=MISTYPED_CNP), "child/cnp"),
    (lambda r: r["child"].update(uat_siruta=MISTYPED_CNP), "child/uat_siruta"),
    (lambda r: r.update(categories=[MISTYPED_CNP]), "categories/0"),
    (lambda r: r["child"].update(**{MISTYPED_CNP: "x"}), "child"),
])
def test_a_schema_violation_names_the_field_and_rule_without_the_value(change, where: str):
    data = report()
    change(data)
    with pytest.raises(Rejected) as refused:
        validate_data("ro.punte.report.submitted.v1", data)
    assert refused.value.code == "SCHEMA_VIOLATION"
    assert refused.value.detail.startswith(where)
    assert MISTYPED_CNP not in refused.value.detail


@pytest.mark.parametrize("change, where, rule", [
    # Python's `$` matches before a final line break; the schema's (ECMA-262) does not.
    (lambda r: r["child"].update(cnp=r["child"]["cnp"] + "\n"), "child/cnp", "pattern"),
    # A time without its zone is not RFC 3339: which moment it names is a guess.
    (lambda r: r.update(occurred_at="2025-03-10T09:30:00"), "occurred_at", "format"),
    (lambda r: r.update(occurred_at="20250310"), "occurred_at", "format"),
])
def test_the_schema_is_read_as_json_schema_reads_it(change, where: str, rule: str):
    data = report()
    change(data)
    with pytest.raises(Rejected) as refused:
        validate_data("ro.punte.report.submitted.v1", data)
    assert refused.value.code == "SCHEMA_VIOLATION"
    assert refused.value.detail.startswith(f"{where}: must satisfy {rule}")

