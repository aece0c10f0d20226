"""What a refusal says never repeats what was sent (issue #10): a mistyped CNP, a name or
an address in a report intake refuses does not come back in the outcome, in the reason of
the dead letter, in what intake keeps of the answer, nor in its logs. The refusal names
the field and the rule it broke; the sender has the values."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from runtime.cloudevents import CloudEvent
from runtime.inbox import DEAD_LETTER_TOPIC
from runtime.signing import SigningKey
from services.intake.adapters.tables import reports
from tests.integration.helpers import (
    delivered,
    emitted,
    intake_consumer,
    keyring_of,
    message,
    on_topic,
    positions,
)

KEY = SigningKey.generate("isj-bc-1")
KEYRING = keyring_of({"isj-bc": KEY})
WHERE = {"uat_siruta": 21891, "county": "BC"}


def report(child: dict, **more) -> dict:
    return {"reporter": {"institution": "isj-bc", "role": "school-counsellor"}, "channel": "school",
            "child": child, "risks": [{"category": "bullying"}], "description": "Date sintetice.", **more}


# (what is sent, the value that must not come back, the code it is refused with)
REFUSED = {
    "a CNP one digit short": (report({"cnp": "515041204123", **WHERE}), "515041204123", "SCHEMA_VIOLATION"),
    "a CNP with a wrong check digit": (report({"cnp": "5150412041231", **WHERE}), "5150412041231", "INVALID_CNP"),
    # JSON Schema's `$` lets a trailing newline through; the model does not.
    "a CNP with a line break": (report({"cnp": "5150412041230\n", **WHERE}), "5150412041230", "SCHEMA_VIOLATION"),
    "a sibling's mistyped CNP": (report({"cnp": "5150412041230", **WHERE},
                                        household={"siblings": [{"cnp": "6170903041235"}]}),
                                 "6170903041235", "INVALID_CNP"),
    "a name too long": (report({"given_name": "Zamfirescu" * 11, "family_name": "Testescu",
                                "birth_date": "2015-04-12", **WHERE}), "Zamfirescu", "SCHEMA_VIOLATION"),
    "an impossible birth date": (report({"given_name": "Ana", "family_name": "Testescu",
                                         "birth_date": "2015-02-30", **WHERE}), "2015-02-30", "SCHEMA_VIOLATION"),
    "an address too long": (report({"cnp": "5150412041230", "address": "Strada Exemplului " * 20, **WHERE}),
                            "Strada Exemplului", "SCHEMA_VIOLATION"),
    "an unknown UAT": (report({"cnp": "5150412041230", "uat_siruta": 987654, "county": "BC"}),
                       "987654", "UNKNOWN_UAT"),
    "an unknown category": (report({"cnp": "5150412041230", **WHERE}, risks=[{"category": "ana_testescu"}]),
                            "ana_testescu", "UNKNOWN_CATEGORY"),
}


@pytest.fixture(scope="module")
async def intake(infrastructure):
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    yield consumer, engine
    await engine.dispose()


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_a_refusal_does_not_repeat_what_was_sent(intake, case):
    consumer, engine = intake
    data, secret, code = REFUSED[case]
    event = KEY.sign(CloudEvent.new("ro.punte.report.submitted.v2", "/institutions/isj-bc", data))
    with capture_logs() as logs:
        await consumer.process([message("punte.ingress.isj-bc", event, offset=next(positions))])
    out = await emitted(engine)
    [answer] = [a for a in delivered(out, "isj-bc") if a["subject_id"] == event.id]
    assert answer["status"] == "rejected" and answer["reason"]["code"] == code
    dead = [d for d in on_topic(out, DEAD_LETTER_TOPIC) if d["headers"].get("ce_id") == event.id]
    async with engine.connect() as conn:
        kept = (await conn.execute(sa.select(reports.c.answer).where(reports.c.event_id == event.id))).scalar_one()
    said = json.dumps([answer, [d["reason"] for d in dead], kept, logs], ensure_ascii=False, default=str)
    assert secret not in said
