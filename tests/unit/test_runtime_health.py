"""What the probes Kubernetes asks (deploy/kubernetes/, decision 0029) answer. Readiness
stays green through a consumer-group rebalance and on a replica the group gives no
partition (there are more replicas than partitions); liveness goes red when a background
task (a consumer, the relay) has ended, which nothing else would notice."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
from aiokafka import TopicPartition
from fastapi import FastAPI

from runtime.inbox import InboxConsumer, Stopped, _ReadAgainFromTheInbox
from runtime.service import ServiceSpec, create_app
from runtime.settings import Settings

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)


class _Connection:
    async def scalar(self, statement) -> int:
        return 1 if str(statement) == "SELECT 1" else 0  # the database answers; nothing parked

    async def __aenter__(self) -> "_Connection":
        return self

    async def __aexit__(self, *exc) -> None:
        return None


class _Engine:
    def connect(self) -> _Connection:
        return _Connection()


def consumer(group: str) -> InboxConsumer:
    async def handler(uow, message) -> None:
        return None
    return InboxConsumer(service="referral", group_id=group, bootstrap="broker.test:9093", sessions=None,
                         handler=handler, topics=["punte.cases"])


def served(consumers: list[InboxConsumer], tasks: dict[str, asyncio.Task] | None = None) -> FastAPI:
    async def stats(session) -> dict:
        return {}
    app = create_app(ServiceSpec(name="referral", migrations=Path("nowhere"), consumers=lambda rt: [],
                                 routers=[], stats=stats), Settings())
    app.state.runtime = SimpleNamespace(started=True, engine=_Engine(), consumers=consumers, epochs=None,
                                        tasks=tasks or {})
    return app


async def probe(app: FastAPI, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://referral.test") as client:
        return await client.get(path)


async def test_readiness_stays_green_while_the_group_rebalances():
    """A second replica joins: the group takes every member's partitions back and hands them
    out again. In between the client holds none (what the poll loop records as ``assigned``)."""
    cases = TopicPartition("punte.cases", 0)
    first = consumer("referral.cases")
    listener = _ReadAgainFromTheInbox(SimpleNamespace(), first)
    await listener.on_partitions_assigned(set())  # joined; its share comes with the next join
    first.assigned = True
    app = served([first])
    assert (await probe(app, "/health/ready")).status_code == 200

    await listener.on_partitions_revoked({cases})  # the rebalance starts
    first.assigned = False
    during = await probe(app, "/health/ready")
    assert during.status_code == 200, during.json()
    assert during.json()["status"] == "ready"


async def test_a_replica_the_group_gives_no_partition_is_ready():
    """More replicas than partitions (the HorizontalPodAutoscaler added some): the extra
    replica's consumers hold nothing, yet its HTTP side serves like the others."""
    extra = consumer("referral.cases")
    await _ReadAgainFromTheInbox(SimpleNamespace(), extra).on_partitions_assigned(set())
    extra.assigned = False
    assert (await probe(served([extra]), "/health/ready")).status_code == 200


async def test_readiness_waits_for_the_first_join_and_a_stopped_consumer():
    never_joined = consumer("referral.cases")
    answer = await probe(served([never_joined]), "/health/ready")
    assert answer.status_code == 503 and answer.json()["checks"]["consumers_joined"] is False

    stopped = consumer("referral.commands")
    await _ReadAgainFromTheInbox(SimpleNamespace(), stopped).on_partitions_assigned(set())
    stopped.stopped = Stopped("consecutive-failures", "HANDLER_FAILED", "punte.cases/0/7", "synthetic", NOW)
    answer = await probe(served([stopped]), "/health/ready")
    assert answer.status_code == 503 and answer.json()["checks"]["consumers_running"] is False


async def test_liveness_fails_when_a_consumer_or_the_relay_task_has_ended():
    async def forever() -> None:
        await asyncio.Event().wait()

    async def ended() -> None:
        return None

    running, gone = asyncio.create_task(forever()), asyncio.create_task(ended())
    await asyncio.sleep(0)  # let the ended one end
    try:
        live = await probe(served([], {"relay": running, "consumer referral.cases": running}), "/health/live")
        assert live.status_code == 200 and live.json()["status"] == "ok"
        dead = await probe(served([], {"relay": running, "consumer referral.cases": gone}), "/health/live")
        assert dead.status_code == 503
        assert dead.json() == {"status": "not-live", "ended": ["consumer referral.cases"]}
    finally:
        running.cancel()


async def test_a_consumer_stopped_by_a_failure_limit_stays_live():
    """Stopped on purpose (decision 0022), waiting for an operator: a restart would only
    run into the same message again. Not ready, but live."""
    async def waiting_for_resume() -> None:
        await asyncio.Event().wait()

    stopped = consumer("referral.cases")
    stopped.stopped = Stopped("consecutive-failures", "HANDLER_FAILED", "punte.cases/0/7", "synthetic", NOW)
    task = asyncio.create_task(waiting_for_resume())
    try:
        assert (await probe(served([stopped], {"consumer referral.cases": task}), "/health/live")).status_code == 200
    finally:
        task.cancel()
