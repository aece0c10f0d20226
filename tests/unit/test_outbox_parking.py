"""Which publishing failures park an outbox row (the row can never be published as it is)
and which retry the batch (decision 0021), and how `punte status` shows a degraded service."""
from __future__ import annotations

import httpx
import pytest
from aiokafka import errors

from punte.status import _check
from runtime.outbox import parking_reason, refused_topic, unpublishable


@pytest.mark.parametrize("error", [
    errors.MessageSizeTooLargeError("The message is 1600000 bytes when serialized"),
    errors.UnknownTopicOrPartitionError(), errors.TopicAuthorizationFailedError("punte.x"),
    errors.InvalidTopicError(), errors.CorruptRecordException(), errors.RecordListTooLargeError(),
])
def test_what_the_broker_will_never_take_is_parked(error):
    assert unpublishable(error)
    assert type(error).__name__ in parking_reason(error)


@pytest.mark.parametrize("error", [
    errors.KafkaConnectionError("away"), errors.KafkaTimeoutError(), errors.RequestTimedOutError(),
    errors.NotLeaderForPartitionError(), errors.LeaderNotAvailableError(), errors.NotEnoughReplicasError(),
    errors.NodeNotReadyError(), ConnectionResetError(), OSError("database away"),
])
def test_what_may_pass_later_retries_the_batch(error):
    assert not unpublishable(error)


async def test_a_service_with_parked_rows_shows_degraded_with_its_reason_in_status():
    problem = "1 outbox row parked (the broker will not take it), 0 more waiting behind on the same keys"

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health/ready":
            return httpx.Response(200, json={"status": "degraded", "problems": [problem],
                                             "checks": {"database": True, "outbox_unblocked": False}})
        return httpx.Response(200, json={"outbox": {"pending": 0, "parked": 1}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        component, stats = await _check(client, "intake", "http://intake.test", {})
    assert component["status"] == "degraded" and component["problems"] == [problem]
    assert stats == {"outbox": {"pending": 0, "parked": 1}}


@pytest.mark.parametrize("topic", ["punte nowhere!", "", ".", "..", "punte.ș", "p" * 250, "punte/x"])
def test_a_topic_name_no_broker_accepts_is_refused_before_sending(topic):
    refusal = refused_topic(topic)
    assert refusal is not None and unpublishable(refusal)
    assert "InvalidTopic" in parking_reason(refusal)


@pytest.mark.parametrize("topic", ["punte.cases", "punte.delivery.dgaspc-bc", "punte.ingress.isj_bc", "p" * 249])
def test_a_legal_topic_name_goes_to_the_broker(topic):
    assert refused_topic(topic) is None
