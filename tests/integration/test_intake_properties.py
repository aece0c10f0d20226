"""Properties of intake against the real database: whatever arrives, the sender gets an
outcome with a code from the catalogue, and nothing raises past the handler."""
from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.reference import rejection_codes
from runtime.cloudevents import CloudEvent
from runtime.ingress import key_by_sender
from runtime.signing import SigningKey
from services.intake.adapters import repository
from tests.integration.helpers import intake_consumer, keyring_of, message, positions

KEY = SigningKey.generate("isj-bc-1")
KEYRING = keyring_of({"isj-bc": KEY})
TOPIC = "punte.ingress.isj-bc"
CODES = set(rejection_codes())
FAST = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
async def intake(infrastructure):
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    yield consumer, engine
    await engine.dispose()


async def outcome_of(engine, msg) -> dict[str, Any] | None:
    async with AsyncSession(engine) as session:
        return await repository.answer_to(session, key_by_sender(msg))


def assert_answered(answer: dict[str, Any] | None, consumer, failures_before: int) -> None:
    assert answer is not None, "every message gets an outcome"
    assert answer["status"] in ("accepted", "rejected")
    if answer["status"] == "rejected":
        assert answer["reason"]["code"] in CODES
        assert answer["reason"]["message_ro"] and answer["reason"]["message_en"]
    assert consumer.dead_lettered == failures_before, "no handler failure: every case has its own code"


HEADER_NAMES = st.sampled_from(["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time",
                                "ce_subject", "ce_keyid", "ce_signature", "content-type", "x"])
HEADER_VALUES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"1.0", b"/institutions/isj-bc", b"ro.punte.report.submitted.v2", b"id\x00nul",
                     b"\x01\x02", "ș".encode(),
                     b"ro.punte.report.submitted.v1", b"2026-11-22T10:00:00Z", b"isj-bc-1"]),
)


@FAST
@given(body=st.binary(max_size=300), headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=10))
async def test_any_bytes_and_headers_get_a_coded_outcome(intake, body, headers):
    consumer, engine = intake
    msg = message(TOPIC, value=body, headers=headers, offset=next(positions))
    failures = consumer.dead_lettered
    await consumer.process([msg])
    assert_answered(await outcome_of(engine, msg), consumer, failures)


VALID = {
    "reporter": {"institution": "isj-bc", "role": "school-counsellor"},
    "channel": "school",
    "child": {"cnp": "5150412041230", "uat_siruta": 21891, "county": "BC"},
    "household": {"siblings": [{"given_name": "Ion", "family_name": "Exemplu", "birth_date": "2017-02-03"}]},
    "risks": [{"category": "neglect", "indicators": ["x"]}],
    "description": "Date sintetice.",
    "observation_sheet": {"sheet_number": "1", "observed_on": "2026-11-01", "social": {"single_parent": True}},
}
PATHS = [("reporter",), ("reporter", "institution"), ("channel",), ("child",), ("child", "cnp"),
         ("child", "uat_siruta"), ("child", "county"), ("household", "siblings"), ("risks",),
         ("description",), ("observation_sheet", "observed_on"), ("observation_sheet", "social")]
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=6)


def put(data: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {}) if isinstance(data.get(part, {}), dict) else {}
    data[path[-1]] = value


def drop(data: dict, path: tuple[str, ...]) -> None:
    for part in path[:-1]:
        data = data.get(part, {})
        if not isinstance(data, dict):
            return
    data.pop(path[-1], None)


MUTATIONS = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(PATHS), st.none()),
    st.tuples(st.just("set"), st.sampled_from(PATHS), JSON),
    st.tuples(st.just("set"), st.just(("child", "cnp")), st.text("0123456789", min_size=13, max_size=13)),
    st.tuples(st.just("set"), st.just(("child", "uat_siruta")), st.integers(-5, 10**7)),
    st.tuples(st.just("set"), st.just(("risks",)), st.lists(
        st.fixed_dictionaries({"category": st.text(max_size=20)}), max_size=3)),
    st.tuples(st.just("set"), st.just(("extra",)), JSON),
)


@FAST
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3))
async def test_a_schema_shaped_but_wrong_report_gets_a_coded_outcome(intake, mutations):
    consumer, engine = intake
    data = copy.deepcopy(VALID)
    for kind, path, value in mutations:
        drop(data, path) if kind == "drop" else put(data, path, value)
    event = KEY.sign(CloudEvent.new("ro.punte.report.submitted.v2", "/institutions/isj-bc", data))
    msg = message(TOPIC, event, offset=next(positions))
    failures = consumer.dead_lettered
    await consumer.process([msg])
    assert_answered(await outcome_of(engine, msg), consumer, failures)
