"""A consumer across broker epochs (decision 0026): held while the broker is empty, started
again (reading from the beginning) in a new epoch, and always stopped with its service."""
import asyncio

import pytest

from runtime.inbox import InboxConsumer


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
