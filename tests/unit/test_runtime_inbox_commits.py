"""What a consumer commits while failures wait for their verdict (decision 0022): past
every message it handled, never past one still waiting."""
from __future__ import annotations

from aiokafka import TopicPartition

from runtime.inbox import Failure, Message, committable


def at(partition: int, offset: int) -> Message:
    return Message("in", partition, offset, None, b"{}", (), 0)


def test_the_commit_stops_before_the_first_failure_waiting_in_its_partition_only():
    handled = [at(0, 4), at(1, 7), at(0, 5), at(0, 6), at(1, 8)]
    waiting = [Failure(at(0, 5), "@in/0/5", "RuntimeError"), Failure(at(0, 6), "@in/0/6", "RuntimeError")]
    assert committable(handled, waiting) == {TopicPartition("in", 0): 5, TopicPartition("in", 1): 9}


def test_once_judged_the_commit_goes_past_them():
    assert committable([at(0, 5), at(0, 6), at(0, 7)], []) == {TopicPartition("in", 0): 8}
