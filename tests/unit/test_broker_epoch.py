"""What a service does about its broker's epoch (decision 0026): the pure decision."""
from datetime import datetime, timezone

from runtime.broker_epoch import Epoch, Recorded, decide

NOW = datetime(2026, 11, 29, tzinfo=timezone.utc)
A, B = Epoch("epoch-a", NOW), Epoch("epoch-b", NOW)


def rewound(*ids: str) -> list[Recorded]:
    return [Recorded(i) for i in ids]


def test_no_marker_is_a_broker_empty_or_not_provisioned_whatever_was_recorded():
    assert decide([], None) == "missing"
    assert decide(rewound("epoch-a"), None) == "missing"


def test_a_fresh_database_records_the_first_epoch_it_sees():
    assert decide([], A) == "first"


def test_the_latest_recorded_epoch_is_the_same_epoch():
    assert decide(rewound("epoch-a"), A) == "same"
    assert decide(rewound("epoch-b", "epoch-a"), A) == "same"


def test_another_epoch_is_new_even_one_seen_before_the_latest():
    assert decide(rewound("epoch-a"), B) == "new"
    assert decide(rewound("epoch-a", "epoch-b"), A) == "new", "a log the service has not read since"


def test_the_latest_epoch_whose_rewind_did_not_finish_is_unfinished_not_new():
    """The service stopped (or crashed) after recording the epoch, before its consumers
    committed every partition's beginning: rewind again, republish nothing."""
    assert decide([Recorded("epoch-a"), Recorded("epoch-b", rewound=False)], B) == "unfinished"
    assert decide([Recorded("epoch-a", rewound=False)], A) == "unfinished"


def test_an_unfinished_older_epoch_does_not_matter_and_another_one_is_new():
    assert decide([Recorded("epoch-a", rewound=False), Recorded("epoch-b")], B) == "same"
    assert decide([Recorded("epoch-a", rewound=False)], B) == "new"
    assert decide([Recorded("epoch-a", rewound=False)], None) == "missing"


def test_an_epoch_reads_back_as_it_was_written():
    assert Epoch.decoded(A.encoded()) == A
