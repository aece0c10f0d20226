"""The whole network as processes, started once for the end-to-end tests."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest

from punte.stack import Stack


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


