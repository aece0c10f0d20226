"""A consumer across broker epochs (decision 0026): held while the broker is empty, started
again (reading from the beginning) in a new epoch, and always stopped with its service."""
import asyncio

import pytest
from aiokafka.errors import CommitFailedError
from aiokafka.structs import TopicPartition

from runtime.inbox import InboxConsumer, _ReadAgainFromTheInbox


def consumer_with(consume) -> InboxConsumer:
    consumer = InboxConsumer(service="t", group_id="g", bootstrap="127.0.0.1:1", sessions=None,  # type: ignore[arg-type]
                             handler=None)  # type: ignore[arg-type]
    consumer._consume = consume  # type: ignore[method-assign]
    return consumer


async def test_held_it_reads_nothing_and_in_a_new_epoch_its_client_starts_again_rewinding():
    clients: list[bool] = []

    async def consume() -> None:
        clients.append(consumer.rewinding)
        await asyncio.Event().wait()
    consumer = consumer_with(consume)
    consumer.hold()
    task = asyncio.create_task(consumer.run())
    await asyncio.sleep(0.05)
    assert clients == [], "no client while the broker is empty"
    consumer.go(rewind=False)
    await asyncio.sleep(0.05)
    consumer.go(rewind=True)
    await asyncio.sleep(0.05)
    assert clients == [False, True]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)


async def test_it_stops_with_its_service_even_after_a_restart_of_its_client_failed():
    calls = 0

    async def consume() -> None:
        nonlocal calls
        calls += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if calls == 1:  # the old client failed while it stopped (its broker gone)
                raise ConnectionError("broker away") from None
            raise
    consumer = consumer_with(consume)
    task = asyncio.create_task(consumer.run())
    await asyncio.sleep(0.05)
    consumer.go(rewind=True)
    with pytest.raises(ConnectionError):
        await task
    task = asyncio.create_task(consumer.run())  # the runtime's supervisor starts it again
    await asyncio.sleep(0.05)
    task.cancel()  # the service stops
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)


class Client:
    """What the rebalance listener and the rewind commit use of an aiokafka consumer."""

    def __init__(self, assignment: set[TopicPartition], fail: int = 0) -> None:
        self._assignment, self._fail = assignment, fail
        self.sought: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp] = offset

    def assignment(self) -> set[TopicPartition]:
        return self._assignment

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self._fail:
            self._fail -= 1
            raise CommitFailedError("rebalanced")
        self.committed.update(offsets)


BUSY, IDLE = TopicPartition("punte.cases", 0), TopicPartition("punte.cases", 1)


async def test_in_a_new_epoch_every_assigned_partition_has_its_beginning_committed_before_it_says_rewound():
    """A stale offset of the old log is overwritten at once, even on a partition that gets
    no message, so a crash leaves the group nothing to skip by (decision 0026)."""
    consumer = consumer_with(None)
    assert consumer.rewound, "nothing asked"
    consumer.go(rewind=True)
    assert not consumer.rewound
    client = Client({BUSY, IDLE}, fail=1)
    listener = _ReadAgainFromTheInbox(client, consumer)  # type: ignore[arg-type]
    await consumer._commit_rewound(client, listener)  # type: ignore[arg-type]
    assert not consumer.rewound, "not assigned anything yet"
    await listener.on_partitions_assigned({BUSY, IDLE})
    assert client.sought == {BUSY: 0, IDLE: 0}
    await consumer._commit_rewound(client, listener)  # type: ignore[arg-type]
    assert client.committed == {} and not consumer.rewound, "a failed commit (rebalance) is tried again"
    await consumer._commit_rewound(client, listener)  # type: ignore[arg-type]
    assert client.committed == {BUSY: 0, IDLE: 0}
    assert consumer.rewound
    consumer.go(rewind=True)  # another new epoch: a rewind of its own
    assert not consumer.rewound


async def test_a_partition_revoked_before_its_beginning_was_committed_is_read_from_the_beginning_again():
    consumer = consumer_with(None)
    consumer.go(rewind=True)
    client = Client({BUSY, IDLE}, fail=1)
    listener = _ReadAgainFromTheInbox(client, consumer)  # type: ignore[arg-type]
    await listener.on_partitions_assigned({BUSY, IDLE})
    await consumer._commit_rewound(client, listener)  # type: ignore[arg-type]
    await listener.on_partitions_revoked({BUSY, IDLE})
    client.sought.clear()
    await listener.on_partitions_assigned({BUSY})
    assert client.sought == {BUSY: 0}
