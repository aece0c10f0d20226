"""Who is told, on which channel and when (services/notification/domain/dispatch.py), and
the recipients configuration it reads."""
from __future__ import annotations

from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.notification.domain.dispatch import alert_targets, escalation_step, plan
from services.notification.domain.notices import Notice
from services.notification.domain.recipients import (
    Preference,
    PreferenceRefused,
    QuietHours,
    Recipients,
    next_digest,
    next_quiet_end,
)

BUCHAREST = ZoneInfo("Europe/Bucharest")
# 11:00 in Bucharest (UTC+2 in winter): working hours.
DAY = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
# 23:30 in Bucharest: quiet hours (22:00-07:00).
NIGHT = datetime(2026, 11, 23, 21, 30, tzinfo=timezone.utc)


def config(**changes) -> Recipients:
    raw = {
        "timezone": "Europe/Bucharest",
        "institutions": {
            "das-x": {
                "channels": ["email", "sms"], "team_email": "echipa@das-x.example.invalid",
                "quiet_hours": {"start": "22:00", "end": "07:00"}, "digest_minutes": 60,
                "ack_minutes": 10, "resends": 1, "supervisors": ["sup"],
                "on_call": [{"person": "ana", "from": "2026-11-23T08:00:00+02:00", "to": "2026-11-23T20:00:00+02:00"},
                            {"person": "dan", "from": "2026-11-23T20:00:00+02:00", "to": "2026-11-24T08:00:00+02:00"}],
            },
            "dgaspc-x": {"channels": ["email", "sms"], "coordinators": ["coord"]},
        },
        "people": {
            "ana": {"institution": "das-x", "email": "ana@das-x.example.invalid", "phone": "+40700000001"},
            "dan": {"institution": "das-x", "email": "dan@das-x.example.invalid", "phone": "+40700000002",
                    "channels": ["email", "sms"]},
            "ion": {"institution": "das-x", "email": "ion@das-x.example.invalid", "uats": [20297]},
            "sup": {"institution": "das-x", "role": "supervisor", "email": "sup@das-x.example.invalid",
                    "phone": "+40700000003", "channels": ["email", "sms"]},
            "coord": {"institution": "dgaspc-x", "role": "coordinator", "email": "c@dgaspc-x.example.invalid",
                      "phone": "+40700000004"},
        },
    }
    for key, value in changes.items():
        raw[key] = value
    return Recipients.model_validate(raw)


def notice(kind: str = "referral-requested", urgency: str = "P1", recipient: str = "das-x",
           uat: int | None = None) -> Notice:
    return Notice(recipient, kind, "case-1", "ref-1", urgency, ("neglect",), uat=uat)


def sent(p) -> set[tuple[str, str, str]]:
    return {(m.person, m.channel, m.purpose) for m in p.messages}


def test_p0_alerts_whoever_is_on_call_on_every_channel_and_tells_the_team_at_once():
    p = plan(notice(urgency="P0"), config(), DAY)
    assert p.alert
    # ana chose only e-mail, but an alert goes on every channel she has.
    # The other case managers hear of it as urgent, on the channels they chose.
    assert sent(p) == {("ana", "email", "alert"), ("ana", "sms", "alert"),
                       ("dan", "email", "notice"), ("dan", "sms", "notice"),
                       ("ion", "email", "notice"), ("team:das-x", "email", "notice")}
    assert {m.due_at for m in p.messages} == {DAY}
    # At night the rota names dan.
    assert {m.person for m in plan(notice(urgency="P0"), config(), NIGHT).messages if m.purpose == "alert"} == {"dan"}


def test_a_hole_in_the_rota_alerts_the_supervisors():
    gap = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
    assert {(m.person, m.channel) for m in plan(notice(urgency="P0"), config(), gap).messages
            if m.purpose == "alert"} == {("sup", "email"), ("sup", "sms")}


def test_urgent_notices_ignore_quiet_hours_and_non_urgent_ones_wait_for_the_digest_after_them():
    p1 = plan(notice(urgency="P1"), config(), NIGHT)
    assert not p1.alert and {m.due_at for m in p1.messages} == {NIGHT}
    assert ("dan", "sms", "notice") in sent(p1)
    p3 = plan(notice(urgency="P3"), config(), NIGHT)
    # No SMS for P2/P3, even for dan who chose it; due at 07:00 local, the end of quiet hours.
    assert sent(p3) == {("ana", "email", "digest"), ("dan", "email", "digest"), ("ion", "email", "digest"),
                        ("team:das-x", "email", "digest")}
    assert {m.due_at for m in p3.messages} == {datetime(2026, 11, 24, 7, 0, tzinfo=BUCHAREST)}
    by_day = plan(notice(urgency="P2"), config(), DAY)
    assert {m.due_at for m in by_day.messages} == {datetime(2026, 11, 23, 12, 0, tzinfo=BUCHAREST)}


def test_preferences_choose_channels_and_digest_within_what_the_institution_allows():
    prefs = {"ana": Preference(channels=["email"], digest=False), "dan": Preference(channels=["sms"])}
    p = plan(notice(urgency="P2"), config(), DAY, preferences=prefs)
    assert ("ana", "email", "notice") in sent(p)  # digest off: one by one, at once
    assert not any(m.person == "dan" for m in p.messages)  # SMS only, and P2 never goes by SMS
    cfg = config()
    with pytest.raises(PreferenceRefused) as refused:
        cfg.check_preference("ion", Preference(channels=["sms"]))
    assert refused.value.code == "NO_ADDRESS"
    with pytest.raises(PreferenceRefused) as refused:
        cfg.check_preference("nobody", Preference(channels=["email"]))
    assert refused.value.code == "NOT_A_RECIPIENT"
    with pytest.raises(PreferenceRefused) as refused:
        cfg.check_preference("ana", Preference(channels=[]))
    assert refused.value.code == "NO_CHANNEL"


def test_updates_of_a_referral_go_to_the_person_holding_it_and_missed_deadlines_to_supervisors():
    updated = plan(notice("referral-updated"), config(), DAY, owner="ion")
    assert sent(updated) == {("ion", "email", "notice")}
    # An owner from another institution (the referrer's side) does not narrow anything.
    other = plan(notice("referral-updated"), config(), DAY, owner="coord")
    assert {m.person for m in other.messages} == {"ana", "dan", "ion"}
    overdue = plan(notice("referral-overdue"), config(), DAY)
    assert sent(overdue) == {("sup", "email", "notice"), ("sup", "sms", "notice"), ("team:das-x", "email", "notice")}
    assert {m.person for m in plan(notice("referral-overdue", recipient="dgaspc-x"), config(), DAY).messages} == {"coord"}


def test_uat_narrows_to_the_case_managers_covering_it():
    assert {m.person for m in plan(notice("case-informed", uat=20297), config(), DAY).messages} == {
        "ana", "dan", "ion", "team:das-x"}
    assert {m.person for m in plan(notice("case-informed", uat=1), config(), DAY).messages} == {
        "ana", "dan", "team:das-x"}


def test_institutions_without_configuration_and_missing_channels():
    assert plan(notice(recipient="ipj-x"), config(), DAY).messages == ()
    only_email = plan(notice(urgency="P0"), config(), DAY, available=("email",))
    assert {m.channel for m in only_email.messages} == {"email"}


def test_escalation_resends_then_climbs_to_the_supervisor_then_the_coordinator():
    steps, state = [], (0, 1)
    while state is not None:
        steps.append(state)
        state = escalation_step(*state, resends=1)
    assert steps == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]
    assert escalation_step(0, 1, resends=0) == (1, 1)
    cfg = config()
    dgaspc = {"das-x": "dgaspc-x"}
    assert alert_targets(0, "das-x", cfg, dgaspc, DAY) == ["ana"]
    assert alert_targets(1, "das-x", cfg, dgaspc, DAY) == ["sup"]
    assert alert_targets(2, "das-x", cfg, dgaspc, DAY) == ["coord"]
    assert alert_targets(2, "das-x", cfg, {}, DAY) == []


@pytest.mark.parametrize("change, message", [
    ({"people": {}}, "not among the people"),
    ({"timezone": "Europe/Nowhere"}, "Nowhere"),
])
def test_a_broken_configuration_is_refused_with_the_reason(change, message):
    with pytest.raises((ValidationError, ValueError)) as error:
        config(**change)
    assert message in str(error.value)


@pytest.mark.parametrize("person, message", [
    ({"institution": "das-x", "email": "not-an-address"}, "not one plain e-mail"),
    ({"institution": "das-x", "phone": "12345"}, "not a phone number"),
    ({"institution": "das-x", "email": "a@b.example.invalid", "channels": ["sms"]}, "no phone"),
    ({"institution": "dgaspc-y", "email": "a@b.example.invalid"}, "has no configuration"),
    ({"institution": "das-x", "email": "a@b.example.invalid", "mobile": "x"}, "Extra inputs"),
])
def test_people_are_checked(person, message):
    raw = config().model_dump(by_alias=True, mode="json")
    raw["people"]["new"] = person
    with pytest.raises(ValidationError) as error:
        Recipients.model_validate(raw)
    assert message in str(error.value)


def test_quiet_hours_and_digest_times():
    quiet = QuietHours(start=time(22), end=time(7))
    assert quiet.contains(time(23)) and quiet.contains(time(6, 59)) and not quiet.contains(time(7))
    assert next_quiet_end(quiet, BUCHAREST, DAY) == DAY
    early = datetime(2026, 11, 24, 1, 0, tzinfo=BUCHAREST)
    assert next_quiet_end(quiet, BUCHAREST, early) == datetime(2026, 11, 24, 7, 0, tzinfo=BUCHAREST)
    day_quiet = QuietHours(start=time(12), end=time(13))
    assert next_quiet_end(day_quiet, BUCHAREST, datetime(2026, 11, 24, 12, 30, tzinfo=BUCHAREST)) == \
        datetime(2026, 11, 24, 13, 0, tzinfo=BUCHAREST)
    assert next_digest(60, BUCHAREST, datetime(2026, 11, 24, 10, 0, tzinfo=BUCHAREST)) == \
        datetime(2026, 11, 24, 11, 0, tzinfo=BUCHAREST)
    assert next_digest(15, BUCHAREST, datetime(2026, 11, 24, 23, 50, tzinfo=BUCHAREST)) == \
        datetime(2026, 11, 25, 0, 0, tzinfo=BUCHAREST)


def test_an_alert_passes_over_a_level_with_nobody_to_tell():
    from services.notification.domain.dispatch import AlertStep, next_alert_step

    nobody_supervises = {0: ["ana"], 1: [], 2: ["coord"]}
    # After the on-call person's last re-send, the empty supervisor level is passed over.
    assert next_alert_step(0, 2, 1, nobody_supervises.__getitem__) == AlertStep(2, 1, ["coord"])
    assert next_alert_step(0, 1, 1, nobody_supervises.__getitem__) == AlertStep(0, 2, ["ana"])
    assert next_alert_step(2, 2, 1, nobody_supervises.__getitem__) is None
    assert next_alert_step(0, 2, 1, {0: ["ana"], 1: [], 2: []}.__getitem__) is None
