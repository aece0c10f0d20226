"""What `punte status` and `punte audit verify` say of the audit's /verify answer."""
from punte.cli import trail_state


def test_a_trail_behind_the_broker_says_how_many_messages_are_not_yet_audited():
    answer = {"state": "lagging", "entries": 9, "not_audited": 3, "problems": [],
              "lagging": [{"topic": "punte.cases", "partition": 1, "audited_to": 7, "end_offset": 10, "missing": 3}]}
    assert "lagging: 3 mesaje încă neauditate / messages not yet audited (punte.cases[1] 3)" in trail_state(answer)


def test_a_hole_fails_and_an_intact_trail_is_verified():
    assert "does NOT verify: 2 messages left the broker" in trail_state(
        {"state": "failed", "problems": ["2 messages left the broker before they were audited"]})
    assert trail_state({"state": "verified", "entries": 12}).startswith("verificat / verified (12")
