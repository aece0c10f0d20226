"""Where a child's identity must not rest or travel: the leak scan run when the end-to-end
network stops. It reads every database of the network except intake's identity vault,
every record of every topic (ingress and dead letters included), the services' logs, an
audit export, and everything sent to people and institutions' systems, and looks for the
synthetic children's CNPs, names, addresses and description texts, also inside base64 and
bytea values (a body kept "encoded" is kept in clear)."""
from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.engine import make_url

from punte.synthetic import FAMILY, GIVEN
from runtime.kafka import broker_partitions, client_options
from services.intake.domain.cnp import is_valid

# Thirteen digits standing alone (not inside a hex digest or a trace id), with a birth date
# and a check digit that hold: a CNP (services.intake.domain.cnp).
CNP_SHAPED = re.compile(r"(?<![0-9A-Fa-f])[1-9]\d{12}(?![0-9A-Fa-f])")
# Every name the synthetic generator and the tests use, and the address the tests write.
NAMES = re.compile(r"\b(" + "|".join(GIVEN + FAMILY) + r")\b")
ADDRESS = "Strada Exemplului"
# Every description the tests and the generator write says the data is synthetic.
DESCRIPTION = re.compile(r"(?i)date sintetice")
# Case, referral and child ids (pseudonyms) are random hex, which can hold 13 digits in a row; timestamps in
# milliseconds are 13 digits too, and are not CNPs when they sit in a JSON number field.
NOT_A_CNP = re.compile(r"(?:case|ref)-[0-9a-f]{16}|ch-[0-9a-f]{32}|\"(?:timestamp_ms|ts|time_ms|at_ms)\":\s*\d{13}")
BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}")
# Intake's identity vault (encrypted identity versions) is the one place the identity rests.
VAULT = {("intake", "identities")}
SERVICES = ("intake", "referral", "notification", "audit")


def expanded(text: str) -> Iterator[str]:
    """The text, and what each base64 run in it decodes to (one level, then again)."""
    yield text
    for _ in range(2):
        found = []
        for run in BASE64_RUN.findall(text):
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    decoded = decode(run + "=" * (-len(run) % 4)).decode("utf-8")
                except (binascii.Error, ValueError):
                    continue  # not base64, or random bytes (a hash, a ciphertext): no text in it
                found.append(decoded)
                break
        text = "\n".join(found)
        if not text:
            return
        yield text


def leaks(where: str, text: str) -> list[str]:
    """What of a synthetic child's identity or story ``text`` holds, named by ``where``."""
    found = []
    for part in expanded(text):
        cleaned = NOT_A_CNP.sub("…", part)
        cnp = next((m for m in CNP_SHAPED.finditer(cleaned) if is_valid(m.group(0))), None)
        for match, what in ((cnp, "a CNP"), (NAMES.search(cleaned), "a child's name"),
                            (DESCRIPTION.search(cleaned), "a report's description")):
            if match:
                start = max(match.start() - 60, 0)
                found.append(f"{what} in {where}: …{cleaned[start:match.end() + 60]}…")
        if ADDRESS in cleaned:
            found.append(f"an address in {where}")
    return found


# Text inside a binary value that is not UTF-8 as a whole: runs of at least 16 characters.
# Random bytes (ciphertext, digests) decode to short runs by chance, and a few hundred
# kilobytes of ciphertext hold a three-letter name between two non-letters more often than
# not; text anyone stored comes in longer runs (a JSON member, a CNP with its key).
TEXT_RUN = re.compile(r"[^\x00-\x08\x0b-\x1f\x7f\ufffd]{16,}")


def _cell(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = " ".join(TEXT_RUN.findall(raw.decode("utf-8", errors="replace")))
        return text + " " + base64.b64encode(raw).decode()
    return str(value)


async def database_texts(database_url: str) -> list[tuple[str, str]]:
    """(where, text) of every row of every table of the network's databases, the vault aside."""
    found: list[tuple[str, str]] = []
    url = make_url(database_url)
    for service in SERVICES:
        name = f"punte_{service}"
        connection = await asyncpg.connect(host=url.host, port=url.port, user=url.username,
                                           password=url.password, database=name)
        try:
            tables = await connection.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_type = 'BASE TABLE'")
            for (table,) in tables:
                if (service, table) in VAULT:
                    continue
                for row in await connection.fetch(f'SELECT * FROM "{table}"'):
                    found.append((f"database {name}, table {table}", " | ".join(_cell(v) for v in row.values())))
        finally:
            await connection.close()
    return found


async def topic_texts(bootstrap: str, since_ms: int = 0) -> list[tuple[str, str]]:
    """(where, text) of every record of every punte.* topic written since ``since_ms`` (the
    network's start: the broker may be shared with tests that ran before)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                **client_options())
    await consumer.start()
    found: list[tuple[str, str]] = []
    try:
        # From one metadata request for every topic (broker_partitions): a consumer's own
        # metadata holds, on Apache Kafka, no topic it did not ask for.
        every = await broker_partitions(bootstrap)
        partitions = [TopicPartition(t, p) for t in sorted(every) if t.startswith("punte.") for p in every[t]]
        assert partitions, f"no punte.* topic on {bootstrap}: nothing to scan"
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            batch = await consumer.getmany(timeout_ms=2000, max_records=2000)
            if not batch:
                break
            for tp, records in batch.items():
                for record in records:
                    if record.timestamp < since_ms:
                        continue
                    headers = " ".join(f"{k}={(v or b'').decode('utf-8', 'ignore')}" for k, v in record.headers)
                    found.append((f"topic {tp.topic}[{tp.partition}]@{record.offset}",
                                  f"{_cell(record.key or b'')} {headers} {_cell(record.value or b'')}"))
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return found


def log_texts(logs: Path) -> list[tuple[str, str]]:
    return [(f"log {path.name}", path.read_text(encoding="utf-8", errors="ignore"))
            for path in sorted(logs.glob("*.log")) if path.name != "broker.log"]


async def audit_export(audit_url: str, token: str) -> list[tuple[str, str]]:
    async with httpx.AsyncClient(base_url=audit_url, timeout=120) as client:
        # An export covers a signed checkpoint: sign one now (a short run may end before the
        # audit's first scheduled one).
        signed = await client.post("/checkpoints", headers={"Authorization": f"Bearer {token}"})
        signed.raise_for_status()
        answer = await client.get("/export", headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    # A tar stream: its entries are JSON, read as text (tar headers and hashes are noise).
    return [("the audit export", answer.content.decode("utf-8", errors="replace"))]


def assert_no_leaks(texts: Iterable[tuple[str, str]]) -> None:
    found = [leak for where, text in texts for leak in leaks(where, text)]
    assert not found, f"{len(found)} places keep a synthetic child's identity or story:\n" + "\n".join(found[:15])


def scan(database_url: str, bootstrap: str, logs: Path, audit_url: str, token: str,
         sent: list[tuple[str, str]], since_ms: int = 0) -> None:
    async def gather() -> list[tuple[str, str]]:
        return [*await database_texts(database_url), *await topic_texts(bootstrap, since_ms),
                *await audit_export(audit_url, token)]
    assert_no_leaks([*asyncio.run(gather()), *log_texts(logs), *sent])
