"""What a service does about its broker's epoch (decision 0026): the pure decision."""
from datetime import datetime, timezone

from runtime.broker_epoch import Epoch, decide

NOW = datetime(2026, 11, 29, tzinfo=timezone.utc)
A, B = Epoch("epoch-a", NOW), Epoch("epoch-b", NOW)


def test_no_marker_is_a_broker_empty_or_not_provisioned_whatever_was_recorded():
    assert decide([], None) == "missing"
    assert decide(["epoch-a"], None) == "missing"


def test_a_fresh_database_records_the_first_epoch_it_sees():
    assert decide([], A) == "first"


def test_the_latest_recorded_epoch_is_the_same_epoch():
    assert decide(["epoch-a"], A) == "same"
    assert decide(["epoch-b", "epoch-a"], A) == "same"


def test_another_epoch_is_new_even_one_seen_before_the_latest():
    assert decide(["epoch-a"], B) == "new"
    assert decide(["epoch-a", "epoch-b"], A) == "new", "a log the service has not read since"


def test_an_epoch_reads_back_as_it_was_written():
    assert Epoch.decoded(A.encoded()) == A
