"""The order of the receiver's checks, as docs/contracts.md states it ("The receiver's
checks, in order"): a message failing two checks gets the code of the one listed first.
The docs once said the signature came before ce_source; the code checks ce_source first."""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runtime.cloudevents import CloudEvent
from runtime.inbox import Message
from runtime.ingress import Window, authenticate
from runtime.signing import Keyring, PublicKey, SigningKey

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
SCHOOL, DOCTOR = "isj-bc", "dsp-bc"
KEYS = {i: SigningKey.generate(f"{i}-1") for i in (SCHOOL, DOCTOR)}
KEYRING = Keyring([PublicKey(k.key_id, i, k.public_raw(), NOW - timedelta(days=300), None) for i, k in KEYS.items()])
TOPIC = f"punte.ingress.{SCHOOL}"


def report(source: str = f"/institutions/{SCHOOL}", data: dict | None = None, time: datetime = NOW) -> CloudEvent:
    return CloudEvent.new("ro.punte.report.submitted.v2", source, data if data is not None else {
        "reporter": {"institution": SCHOOL, "role": "school-counsellor"}, "channel": "school",
        "child": {"cnp": "5150412041230", "uat_siruta": 21891, "county": "BC"},
        "risks": [{"category": "school_absenteeism"}], "description": "Date sintetice."}, time=time)


def on_topic(event: CloudEvent, value: bytes | None = None, extra: tuple = ()) -> Message:
    return Message(TOPIC, 0, 7, None, event.body() if value is None else value, (*event.headers(), *extra), 0)


def tampered(event: CloudEvent) -> CloudEvent:
    return replace(event, data={**event.data, "description": "Altceva (date sintetice)."})


# (what the message breaks, the code that wins, the code that loses)
TWO_FAULTS = {
    "unsigned, and another institution's ce_source": (
        lambda: on_topic(report(f"/institutions/{DOCTOR}")), "SOURCE_MISMATCH", "MISSING_SIGNATURE"),
    "unsigned, and a ce_source of no institution": (
        lambda: on_topic(report("/institutions/nu-exista")), "UNKNOWN_INSTITUTION", "MISSING_SIGNATURE"),
    "too large, and no headers at all": (
        lambda: Message(TOPIC, 0, 7, None, b"x" * (300 * 1024), (), 0), "TOO_LARGE", "MALFORMED_ENVELOPE"),
    "ce_id twice, and unsigned": (
        lambda: on_topic(report(), extra=(("ce_id", b"other"),)), "MALFORMED_ENVELOPE", "MISSING_SIGNATURE"),
    "a forged body, and stale": (
        lambda: on_topic(tampered(KEYS[SCHOOL].sign(report(time=NOW - timedelta(days=30))))),
        "BAD_SIGNATURE", "STALE_EVENT"),
    "another institution's key, and a body the schema refuses": (
        lambda: on_topic(KEYS[DOCTOR].sign(report(data={"reporter": {}}))), "UNKNOWN_KEY", "SCHEMA_VIOLATION"),
    "stale, and a body the schema refuses": (
        lambda: on_topic(KEYS[SCHOOL].sign(report(data={"reporter": {}}, time=NOW - timedelta(days=30)))),
        "STALE_EVENT", "SCHEMA_VIOLATION"),
}


def documented_order() -> list[str]:
    text = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    section = text[text.index("### The receiver's checks, in order"):]
    section = section[:section.index("Over HTTP")]
    return list(dict.fromkeys(re.findall(r"`([A-Z][A-Z_]+)`", section)))


@pytest.mark.parametrize("faults", sorted(TWO_FAULTS))
def test_the_first_documented_check_wins(faults):
    build, wins, loses = TWO_FAULTS[faults]
    with pytest.raises(Exception) as refused:
        authenticate(build(), KEYRING, Window(), now=NOW)
    assert getattr(refused.value, "code", None) == wins, refused.value
    order = documented_order()
    assert order.index(wins) < order.index(loses), f"docs/contracts.md lists {loses} before {wins}"
