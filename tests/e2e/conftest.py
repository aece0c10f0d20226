"""The whole network as processes, started once for the end-to-end tests."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from contracts.events import EventType
from punte.stack import Stack
from runtime.cloudevents import CloudEvent, decode


@pytest.fixture(scope="session")
def network(infrastructure, tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("e2e") / "state",
                  kafka_bootstrap=infrastructure.kafka_bootstrap,
                  database_url=infrastructure.database_url)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


async def sign_in(network: Stack, username: str) -> str:
    """A token from the embedded issuer, the way a person (password) or an institution's
    system (client credentials, `sys.<institution>`) signs in."""
    secret = json.loads(network.state.passwords_file.read_text())[username]
    form = ({"grant_type": "client_credentials", "client_id": username, "client_secret": secret}
            if username.startswith("sys.") else
            {"grant_type": "password", "username": username, "password": secret})
    async with httpx.AsyncClient(base_url=network.url("identity")) as client:
        answer = await client.post("/token", data=form)
    answer.raise_for_status()
    return answer.json()["access_token"]


async def wait_until(check: Callable[[], object], timeout: float = 60, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met after {timeout}s: {check.__doc__}")
        await asyncio.sleep(every)




async def dead_letters(network: Stack, token: str | None = None) -> list[dict]:
    """The dead letters in the audit trail, as an auditor finds them."""
    token = token or await sign_in(network, "auditor")
    async with httpx.AsyncClient(base_url=network.url("audit")) as client:
        found = await client.get("/entries", params={"event_type": EventType.DEAD_LETTER.value, "limit": 500},
                                 headers={"Authorization": f"Bearer {token}"})
    return found.json()["entries"]


class Deliveries:
    """What institutions receive on their delivery topics, as their systems would read it."""

    def __init__(self, bootstrap: str) -> None:
        self.events: list[tuple[str, CloudEvent]] = []
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                          auto_offset_reset="earliest", metadata_max_age_ms=1000)
        self._consumer.subscribe(pattern=r"^punte\.delivery\..+")
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._consumer.start()

        async def run() -> None:
            async for record in self._consumer:
                self.events.append((record.topic.removeprefix("punte.delivery."),
                                    decode(record.headers, record.value)))
        self._task = asyncio.create_task(run())

    async def stop(self) -> None:
        assert self._task
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    def outcome_of(self, event_id: str) -> list[tuple[str, dict]]:
        return [(who, e.data) for who, e in self.events
                if e.type == EventType.OUTCOME.value and e.data["subject_id"] == event_id]

    def notifications(self, kind: str | None = None) -> list[tuple[str, dict]]:
        return [(who, e.data) for who, e in self.events if e.type == EventType.CASE_NOTIFICATION.value
                and (kind is None or e.data["kind"] == kind)]
