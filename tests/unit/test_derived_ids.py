"""runtime.cloudevents.derived_id (ADR 0023): a pure function of the cause and the step."""
from __future__ import annotations

import uuid

from runtime.cloudevents import DERIVED, derived_id


def test_the_same_cause_and_step_always_give_the_same_uuid5():
    one = derived_id("/institutions/isj-bc|r-1", "ro.punte.case.opened.v1")
    assert one == derived_id("/institutions/isj-bc|r-1", "ro.punte.case.opened.v1")
    assert uuid.UUID(one).version == 5
    # Fixed for ever: ids already sent must match the ids a replay derives.
    assert DERIVED == uuid.uuid5(uuid.NAMESPACE_URL, "https://punte.ro/derived")
    assert one == str(uuid.uuid5(DERIVED, '["/institutions/isj-bc|r-1","ro.punte.case.opened.v1"]'))


def test_another_cause_step_or_recipient_gives_another_id():
    ids = {derived_id("/institutions/isj-bc|r-1", "outcome"), derived_id("/institutions/isj-bc|r-2", "outcome"),
           derived_id("/institutions/dsp-bc|r-1", "outcome"), derived_id("/institutions/isj-bc|r-1", "case"),
           derived_id("n-1", "message", "cm.a", "email"), derived_id("n-1", "message", "cm.b", "email")}
    assert len(ids) == 6


def test_no_choice_of_event_ids_makes_two_causes_meet():
    # Joined with a separator, a sender could pick an id that ends like another step.
    assert derived_id("/institutions/isj-bc|r|outcome", "case") != derived_id("/institutions/isj-bc|r", "outcome|case")
    assert derived_id("a", "b", "c") != derived_id("a", "b|c") != derived_id("a|b", "c")
