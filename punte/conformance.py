"""`punte conformance`: an institution's system checked against docs/connecting.md.

Scripted: the kit plays the institution. It sends, over Kafka and signed with the
institution's key, a valid report v2, a valid sealed report v3 and one message for each
refusal an institution can cause (the rows marked *kit* in the doc's refusal table), reads
each outcome from the institution's delivery topic, and checks its code and the network's
signature. Recorded: the kit reads what the institution's own system sent on its ingress
topic and the outcomes the network gave, checks each message against the contract locally
and compares with the network's answer. Each check names the doc's section (decision 0041)."""
from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.events import EventType
from contracts.reference import delivery_topic, ingress_topic, institutions, may_send
from contracts.refusals import Refused
from punte.institution import fetch_intake_keys, seal
from punte.synthetic import synthetic_cnp
from runtime.cloudevents import decode, header_map, is_json, parse_time, repeated_attributes
from runtime.ingress import Window, source_refusal
from runtime.kafka import client_options, make_producer
from runtime.schemas import schema
from runtime.settings import Settings
from runtime.signing import (
    NETWORK,
    Keyring,
    PublicKey,
    SignatureError,
    SigningKey,
    b64url,
    signing_input,
    unb64url,
)

DOC = "docs/connecting.md"
# Each rule the kit checks, and the section of docs/connecting.md that states it (its anchor).
SECTIONS = {
    "headers": "signing-and-the-headers",
    "signature": "signing-and-the-headers",
    "time": "signing-and-the-headers",
    "size": "message-size",
    "body": "sending-a-report-over-kafka",
    "sealing": "sealing",
    "key": "your-signing-key",
    "outcome": "the-outcome",
    "network-signature": "the-networks-verification-keys",
    "refusal": "refusals-and-what-causes-each",
    "topics": "topics-groups-partitions-and-ordering",
}
NETWORK_KEYS_PATH = "/.well-known/punte-network-keys.json"
OUTCOME = EventType.OUTCOME.value
ACCEPTED = "accepted"


class ConformanceError(Exception):
    """The kit could not run (no key, no broker, no keys to check the network with)."""


@dataclass(frozen=True)
class Check:
    """One rule checked on one message: ``subject`` says which (a probe's name, or the
    position and id of a recorded message)."""

    subject: str
    rule: str
    passed: bool
    section: str
    detail: str = ""

    @property
    def where(self) -> str:
        return f"{DOC}#{self.section}"

    def as_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "rule": self.rule, "passed": self.passed, "section": self.where,
                "detail": self.detail}


@dataclass(frozen=True)
class Target:
    """What the kit needs to act as, or look at, one institution of one network."""

    institution: str
    bootstrap: str
    key: SigningKey | None = None  # the institution's (scripted mode signs with it)
    public_keys: Keyring | None = None  # the institution's public keys (recorded mode)
    network_keys: Keyring | None = None  # what deliveries are verified with
    intake_url: str | None = None  # intake's encryption keys (report v3)
    kafka: Settings | None = None
    timeout: float = 60

    @property
    def source(self) -> str:
        return f"/institutions/{self.institution}"


# --- keys ---------------------------------------------------------------------------------

def fetch_network_keys(urls: Iterable[str], timeout: float = 10) -> tuple[Keyring, str] | None:
    """The network's verification keys from the first service that serves them."""
    for url in urls:
        try:
            answer = httpx.get(url.rstrip("/") + NETWORK_KEYS_PATH, timeout=timeout)
        except httpx.HTTPError:
            continue
        if answer.status_code == 200:
            return Keyring.from_jwks(answer.json()), url.rstrip("/") + NETWORK_KEYS_PATH
    return None


def network_keys_of_state(keys_dir: Path) -> tuple[Keyring, str] | None:
    """The embedded network's verification keys from its state folder: network.pub.json,
    the JWKS every service serves (written by `punte up`)."""
    public = keys_dir / "network.pub.json"
    if not public.exists():
        return None
    return Keyring.from_jwks(json.loads(public.read_text())), str(public)


def public_keyring(institution: str, key: SigningKey) -> Keyring:
    since = datetime.min.replace(tzinfo=timezone.utc)
    return Keyring([PublicKey(key.key_id, institution, key.public_raw(), since, None)])


# --- what is sent, and what comes back ------------------------------------------------------

@dataclass(frozen=True)
class Record:
    """A Kafka record as read or sent."""

    topic: str
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes], ...]
    value: bytes
    timestamp_ms: int = 0

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def subject_id(self) -> str:
        """What the network's outcome names this record by (docs/connecting.md, The outcome)."""
        return header_map(self.headers).get("ce_id") or f"@{self.position}"


@dataclass(frozen=True)
class Answer:
    """An outcome read from the delivery topic, and whether the network's keys verify it."""

    data: dict[str, Any]
    signed: bool
    detail: str = ""

    @property
    def code(self) -> str:
        if self.data.get("status") == ACCEPTED:
            return ACCEPTED
        return str((self.data.get("reason") or {}).get("code"))


def read_answer(record: Record, network_keys: Keyring) -> Answer | None:
    """The outcome a delivery carries (None for notifications and unreadable records)."""
    try:
        event = decode(record.headers, record.value)
    except Exception:  # noqa: BLE001 (not an outcome the kit can read; the network's own fault)
        return None
    if event.type != OUTCOME:
        return None
    try:
        network_keys.verify_event(NETWORK, event, record.value)
    except SignatureError as exc:
        return Answer(event.data, False, f"{exc.code}: {exc.detail}")
    if not event.source.startswith("/punte/"):
        return Answer(event.data, False, f"ce_source {event.source} is not the network's")
    return Answer(event.data, True)


# --- scripted mode: the probes ----------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    """A message the kit sends, and the answers the contract allows for it."""

    name: str
    expect: frozenset[str]
    section: str
    headers: tuple[tuple[str, bytes], ...]
    value: bytes


class Probes:
    """The kit's messages for one institution, built as docs/connecting.md says (and broken
    as its refusal table says)."""

    def __init__(self, institution: str, key: SigningKey, intake_jwks: dict[str, Any] | None,
                 now: datetime | None = None, rng: random.Random | None = None) -> None:
        self.institution, self.key, self.intake_jwks = institution, key, intake_jwks
        self.now = now or datetime.now(timezone.utc)
        self.rng = rng or random.Random()
        self.size = 0  # pad the next report v3 to this many bytes (TOO_LARGE)

    @property
    def source(self) -> str:
        return f"/institutions/{self.institution}"

    def message(self, event_type: str, body: bytes, *, event_id: str | None = None,
                time: datetime | None = None, source: str | None = None, key: SigningKey | None = None,
                drop: Iterable[str] = (), override: dict[str, str] | None = None) -> tuple[tuple[str, bytes], ...]:
        """The headers of an event signed (v2) over ``body``; ``drop`` and ``override`` change
        them after signing."""
        signer = key or self.key
        headers = {
            "ce_specversion": "1.0", "ce_id": event_id or str(uuid.uuid4()), "ce_source": source or self.source,
            "ce_type": event_type,
            "ce_time": (time or self.now).astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "content-type": "application/json",
        }
        signature = signer.private.sign(signing_input(headers["ce_id"], headers["ce_source"], headers["ce_type"],
                                                      headers["ce_time"], None, body))
        headers |= {"ce_keyid": signer.key_id, "ce_sigversion": "2", "ce_signature": b64url(signature)}
        headers |= override or {}
        return tuple((k, v.encode()) for k, v in headers.items() if k not in set(drop))

    def report_v2(self, **child: Any) -> dict[str, Any]:
        """A report written as v2 about a synthetic child of Colonești (Bacău)."""
        born = self.now.date() - timedelta(days=self.rng.randrange(2 * 365, 15 * 365))
        return {
            "reporter": {"institution": self.institution, "role": "conformance-check"},
            "channel": "social-worker",
            "child": {"cnp": synthetic_cnp(self.rng, date(born.year, born.month, min(born.day, 28))),
                      "uat_siruta": 21891, "county": "BC"} | child,
            "risks": [{"category": "school_absenteeism", "indicators": []}],
            "description": "Verificare de conformitate (date sintetice).",
        }

    def report_v3(self, report: dict[str, Any] | None = None, event_id: str | None = None,
                  sealed: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """(ce_id, the v3 data) of ``report`` sealed to intake; ``sealed`` replaces the
        plaintext the kit would seal."""
        if self.intake_jwks is None:
            raise ConformanceError("intake's encryption keys are needed to seal a report v3 (--url)")
        report = report or self.report_v2()
        event_id = event_id or str(uuid.uuid4())
        child = report["child"]
        plaintext = sealed or {
            "report": {"id": event_id, "institution": self.institution},
            "child": {k: v for k, v in child.items() if k not in ("uat_siruta", "county")},
            "description": report["description"],
        }
        clear = {"reporter": report["reporter"], "channel": report["channel"],
                 "child": {k: child[k] for k in ("uat_siruta", "county") if k in child},
                 "risks": [{"category": r["category"]} for r in report["risks"]],
                 "sealed": seal(plaintext, self.intake_jwks)}
        return event_id, clear

    def v3(self, name: str, expect: str | Iterable[str], section: str, *, report: dict[str, Any] | None = None,
           sealed: Callable[[str], dict[str, Any]] | None = None, edit: Callable[[dict[str, Any]], None] | None = None,
           tamper: Callable[[Probe], Probe] | None = None, **message: Any) -> Probe:
        """A report v3, changed by ``edit`` before it is signed and by ``tamper`` after."""
        event_id = str(uuid.uuid4())
        _, data = self.report_v3(report, event_id, sealed(event_id) if sealed else None)
        if edit:
            edit(data)
        value = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        if len(value) < self.size:
            value = value[:-1] + b" " * (self.size - len(value)) + b"}"  # JSON may end in spaces
        headers = self.message(EventType.REPORT_SUBMITTED_V3.value, value, event_id=event_id, **message)
        codes = frozenset([expect] if isinstance(expect, str) else expect)
        probe = Probe(name, codes, section, headers, value)
        return tamper(probe) if tamper else probe

    def all(self, clear_report: bool = True) -> list[Probe]:
        """Every probe; ``clear_report``: with a report v2, whose child's identity travels in
        clear (synthetic, but a network that checks no identity rests on its topics will
        find it)."""
        v3 = EventType.REPORT_SUBMITTED_V3.value
        other = next(i for i in institutions() if i != self.institution)
        clear = json.dumps(self.report_v2(), ensure_ascii=False).encode()
        probes = [
            Probe("report v2", frozenset({ACCEPTED, "CLEAR_REPORT_RETIRED"}), SECTIONS["body"],
                  self.message(EventType.REPORT_SUBMITTED_V2.value, clear), clear),
        ] if clear_report else []
        probes += [
            self.v3("report v3, sealed", ACCEPTED, SECTIONS["sealing"]),
            Probe("MALFORMED_ENVELOPE: no ce_id", frozenset({"MALFORMED_ENVELOPE"}), SECTIONS["outcome"],
                  self.message(v3, b"{}", drop=["ce_id"]), b"{}"),
            Probe("MALFORMED_PAYLOAD: {not json", frozenset({"MALFORMED_PAYLOAD"}), SECTIONS["refusal"],
                  self.message(v3, b"{not json"), b"{not json"),
            self.v3("SCHEMA_VIOLATION: no risks", "SCHEMA_VIOLATION", SECTIONS["body"],
                    edit=lambda data: data.pop("risks")),
            Probe("UNKNOWN_EVENT_TYPE: ro.punte.report.deleted.v1", frozenset({"UNKNOWN_EVENT_TYPE"}),
                  SECTIONS["refusal"], self.message("ro.punte.report.deleted.v1", b"{}"), b"{}"),
            self.v3("MISSING_SIGNATURE", "MISSING_SIGNATURE", SECTIONS["signature"],
                    drop=["ce_signature", "ce_keyid", "ce_sigversion"]),
            self.v3("BAD_SIGNATURE: padded with ==", "BAD_SIGNATURE", SECTIONS["signature"],
                    tamper=lambda p: replace(p, headers=padded(p.headers))),
            self.v3("BAD_SIGNATURE: body changed after signing", "BAD_SIGNATURE", SECTIONS["signature"],
                    tamper=lambda p: replace(p, value=p.value.replace(b'"channel":"', b'"channel": "', 1))),
            self.v3("UNKNOWN_KEY", "UNKNOWN_KEY", SECTIONS["key"],
                    key=SigningKey.generate(f"{self.institution}-unknown")),
            self.v3(f"SOURCE_MISMATCH: ce_source {other}", "SOURCE_MISMATCH", SECTIONS["headers"],
                    source=f"/institutions/{other}"),
            self.v3("STALE_EVENT: ce_time 8 days ago", "STALE_EVENT", SECTIONS["time"],
                    time=self.now - timedelta(days=8)),
            self.v3("FUTURE_EVENT: ce_time an hour ahead", "FUTURE_EVENT", SECTIONS["time"],
                    time=self.now + timedelta(hours=1)),
            self.v3("UNKNOWN_UAT: 999999", "UNKNOWN_UAT", SECTIONS["refusal"],
                    report=self.report_v2(uat_siruta=999999)),
            self.v3("UAT_COUNTY_CONFLICT: a Bacău UAT with county NT", "UAT_COUNTY_CONFLICT", SECTIONS["refusal"],
                    report=self.report_v2(county="NT")),
            self.v3("UNKNOWN_INSTITUTION: reporter.institution nu-exista", "UNKNOWN_INSTITUTION",
                    SECTIONS["refusal"], edit=lambda data: data["reporter"].update(institution="nu-exista")),
            self.v3("INVALID_CNP: wrong check digit", "INVALID_CNP", SECTIONS["refusal"],
                    report=self._wrong_cnp()),
            self.v3("UNKNOWN_CATEGORY: nu_exista", "UNKNOWN_CATEGORY", SECTIONS["refusal"],
                    edit=lambda data: data.update(risks=[{"category": "nu_exista"}])),
            self.v3("SEALED_UNREADABLE: ciphertext altered", "SEALED_UNREADABLE", SECTIONS["sealing"],
                    edit=_alter_ciphertext),
            self.v3("SEALED_INVALID: no description", "SEALED_INVALID", SECTIONS["sealing"],
                    sealed=lambda event_id: {"report": {"id": event_id, "institution": self.institution},
                                             "child": {"cnp": self.report_v2()["child"]["cnp"]}}),
            self.v3("SEALED_MISMATCH: another report's id", "SEALED_MISMATCH", SECTIONS["sealing"],
                    sealed=lambda _: {"report": {"id": str(uuid.uuid4()), "institution": self.institution},
                                      "child": {"cnp": self.report_v2()["child"]["cnp"]},
                                      "description": "Verificare de conformitate (date sintetice)."}),
        ]
        self.size = 300 * 1024
        probes.append(self.v3("TOO_LARGE: 300 KiB", "TOO_LARGE", SECTIONS["size"]))
        self.size = 0
        command = json.dumps({"referral_id": str(uuid.uuid4()), "command": "acknowledge"}).encode()
        probes.append(Probe("UNKNOWN_REFERRAL: a random referral_id", frozenset({"UNKNOWN_REFERRAL"}),
                            SECTIONS["refusal"], self.message(EventType.REFERRAL_COMMAND.value, command), command))
        if not may_send(self.institution, EventType.SERVICE_UPDATED.value):
            update = json.dumps({"service_id": "nu-exista", "accepting": False}).encode()
            probes.append(Probe("SENDER_NOT_ALLOWED: a service update", frozenset({"SENDER_NOT_ALLOWED"}),
                                SECTIONS["refusal"], self.message(EventType.SERVICE_UPDATED.value, update), update))
        return probes

    def _wrong_cnp(self) -> dict[str, Any]:
        report = self.report_v2()
        cnp = report["child"]["cnp"]
        report["child"]["cnp"] = cnp[:12] + str((int(cnp[12]) + 1) % 10)
        return report


def _alter_ciphertext(data: dict[str, Any]) -> None:
    parts = data["sealed"].split(".")
    cipher = bytearray(unb64url(parts[3]))
    cipher[0] ^= 0xFF
    parts[3] = b64url(bytes(cipher))
    data["sealed"] = ".".join(parts)


# --- talking to the broker ------------------------------------------------------------------

async def _delivery_reader(target: Target) -> tuple[AIOKafkaConsumer, dict[TopicPartition, int]]:
    """A consumer of the institution's delivery topic without a group (nothing committed),
    and the end of each partition now."""
    topic = delivery_topic(target.institution)
    consumer = AIOKafkaConsumer(bootstrap_servers=target.bootstrap, group_id=None, enable_auto_commit=False,
                                **client_options(target.kafka))
    await consumer.start()
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer.stop()
        raise ConformanceError(f"no topic {topic} on {target.bootstrap}")
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    ends = await consumer.end_offsets(assigned)
    return consumer, ends


async def _answers(consumer: AIOKafkaConsumer, wanted: set[str], network_keys: Keyring,
                   timeout: float) -> dict[str, Answer]:
    """The outcomes of ``wanted`` subjects (the last of each), read until all came or
    ``timeout`` ran out."""
    found: dict[str, Answer] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not wanted <= found.keys() and loop.time() < deadline:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            for r in records:
                answer = read_answer(Record(r.topic, r.partition, r.offset, tuple(r.headers or ()), r.value or b"",
                                            r.timestamp), network_keys)
                if answer is not None and answer.data.get("subject_id") in wanted:
                    found[answer.data["subject_id"]] = answer
    return found


def _outcome_checks(subject: str, answer: Answer | None, expect: frozenset[str], section: str) -> list[Check]:
    if answer is None:
        return [Check(subject, "an outcome on the delivery topic", False, SECTIONS["outcome"], "none came in time")]
    said = answer.code + (f" ({answer.data['reason'].get('message_en')})" if answer.code != ACCEPTED else "")
    return [
        Check(subject, f"outcome {' or '.join(sorted(expect))}", answer.code in expect, section, said),
        Check(subject, "outcome signed by the network", answer.signed, SECTIONS["network-signature"], answer.detail),
    ]


async def run_scripted(target: Target, probes: list[Probe] | None = None, clear_report: bool = True) -> list[Check]:
    """Send every probe to the institution's ingress topic and check each outcome."""
    if target.key is None or target.network_keys is None:
        raise ConformanceError("the scripted mode needs the institution's key and the network's keys")
    if probes is None:
        jwks = fetch_intake_keys(target.intake_url) if target.intake_url else None
        probes = Probes(target.institution, target.key, jwks).all(clear_report)
    consumer, ends = await _delivery_reader(target)
    producer = make_producer(target.bootstrap, target.kafka)
    try:
        for tp, end in ends.items():
            consumer.seek(tp, end)
        await producer.start()
        subjects: list[str] = []
        topic = ingress_topic(target.institution)
        for probe in probes:
            sent = await producer.send_and_wait(topic, value=probe.value, headers=list(probe.headers),
                                                key=(header_map(probe.headers).get("ce_id") or probe.name).encode())
            subjects.append(Record(topic, sent.partition, sent.offset, probe.headers, probe.value).subject_id)
        found = await _answers(consumer, set(subjects), target.network_keys, target.timeout)
    finally:
        await producer.stop()
        await consumer.stop()
    checks: list[Check] = []
    for probe, subject in zip(probes, subjects, strict=True):
        checks += _outcome_checks(probe.name, found.get(subject), probe.expect, probe.section)
    return checks


# --- recorded mode --------------------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """Which of the institution's messages to look at: the last N, those since a time, or
    from an offset on."""

    last: int | None = None
    since: datetime | None = None
    from_offset: int | None = None


async def read_recorded(target: Target, selection: Selection) -> tuple[list[Record], dict[str, Answer]]:
    """The institution's messages on its ingress topic, and the network's outcomes of them."""
    if target.network_keys is None:
        raise ConformanceError("the recorded mode needs the network's keys")
    topic = ingress_topic(target.institution)
    consumer = AIOKafkaConsumer(bootstrap_servers=target.bootstrap, group_id=None, enable_auto_commit=False,
                                **client_options(target.kafka))
    await consumer.start()
    records: list[Record] = []
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise ConformanceError(f"no topic {topic} on {target.bootstrap}")
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            start = starts[tp]
            if selection.from_offset is not None:
                start = max(start, selection.from_offset)
            elif selection.since is not None:
                at = (await consumer.offsets_for_times({tp: int(selection.since.timestamp() * 1000)}))[tp]
                start = at.offset if at is not None else ends[tp]
            elif selection.last is not None:
                start = max(start, ends[tp] - selection.last)
            consumer.seek(tp, start)
        remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + target.timeout
        while remaining and loop.time() < deadline:
            for tp, batch in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                for r in batch:
                    if r.offset < ends[tp]:
                        records.append(Record(r.topic, r.partition, r.offset, tuple(r.headers or ()),
                                              r.value or b"", r.timestamp))
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    if selection.last is not None:
        records = sorted(records, key=lambda r: (r.timestamp_ms, r.partition, r.offset))[-selection.last:]
    reader, _ = await _delivery_reader(target)
    try:
        if records:
            first = min(r.timestamp_ms for r in records)
            for tp in reader.assignment():
                at = (await reader.offsets_for_times({tp: max(0, first - 60_000)}))[tp]
                if at is None:
                    await reader.seek_to_end(tp)
                else:
                    reader.seek(tp, at.offset)
        found = await _answers(reader, {r.subject_id for r in records}, target.network_keys, target.timeout)
    finally:
        await reader.stop()
    return records, found


def check_message(institution: str, record: Record, public_keys: Keyring, window: Window = Window()) -> list[Check]:
    """A message an institution sent, checked on its own against the contract: the
    receiver's own rules (runtime.cloudevents, runtime.ingress), each reported apart."""
    subject = _name(record)
    headers = header_map(record.headers)
    checks: list[Check] = []

    def check(rule: str, problem: str | None, section: str) -> None:
        checks.append(Check(subject, rule, problem is None, SECTIONS[section], problem or ""))

    doubled = repeated_attributes(name for name, _ in record.headers)
    check("each header once", f"given twice: {', '.join(doubled)}" if doubled else None, "headers")
    headers_schema = schema("cloudevents-binary-kafka")
    assert headers_schema is not None
    check("headers match cloudevents-binary-kafka.json", headers_schema.problem(headers), "headers")
    content_type = headers.get("content-type")
    check("content-type application/json", None if is_json(content_type) else f"content-type is {content_type!r}",
          "headers")
    time = headers.get("ce_time", "")
    try:
        sent: datetime | None = parse_time(time)
    except ValueError:
        sent = None
    check("ce_time is RFC 3339 with a time zone", None if sent else "not RFC 3339", "time")
    refused = source_refusal(headers.get("ce_source", ""), institution)
    check("ce_source is the institution", f"{refused.code}: {refused.detail}" if refused else None, "headers")
    try:
        window.check_size(record.value)
        check(f"value at most {window.max_bytes} bytes", None, "size")
    except Refused as exc:
        check(f"value at most {window.max_bytes} bytes", exc.detail, "size")
    try:
        data = json.loads(record.value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    check("value is a UTF-8 JSON object", None if isinstance(data, dict) else "not a UTF-8 JSON object", "body")
    if isinstance(data, dict):
        payload = schema(headers.get("ce_type", ""))
        problem = payload.problem(data) if payload else f"no schema for {headers.get('ce_type')!r}"
        check("value matches the schema of ce_type", problem, "body")
    try:
        public_keys.verify(institution, record.value, headers.get("ce_id", ""), headers.get("ce_source", ""),
                           headers.get("ce_type", ""), time, headers.get("ce_subject"), headers.get("ce_keyid"),
                           headers.get("ce_signature"), version=headers.get("ce_sigversion"))
        check("signature verifies with the institution's key", None, "signature")
    except SignatureError as exc:
        check("signature verifies with the institution's key", f"{exc.code}: {exc.detail}",
              "key" if exc.code == "UNKNOWN_KEY" else "signature")
    if sent is not None and record.timestamp_ms:
        # The window as the receiver held it when the message was written to the topic.
        written = datetime.fromtimestamp(record.timestamp_ms / 1000, timezone.utc)
        try:
            window.check(time, written)
            problem = None
        except Refused as exc:
            problem = f"{exc.code}: ce_time {time}, written to the topic at {written.isoformat(timespec='seconds')}"
        check("ce_time within the window when sent", problem, "time")
    return checks


def check_recorded(institution: str, records: list[Record], answers: dict[str, Answer], public_keys: Keyring,
                   window: Window = Window()) -> list[Check]:
    """Each recorded message checked on its own, then against the network's outcome: the
    network must have accepted it, and signed its answer."""
    checks: list[Check] = []
    for record in records:
        checks += check_message(institution, record, public_keys, window)
        answer = answers.get(record.subject_id)
        checks += _outcome_checks(_name(record), answer, frozenset({ACCEPTED}), SECTIONS["refusal"])
    return checks


def _name(record: Record) -> str:
    headers = header_map(record.headers)
    return f"{record.position} {headers.get('ce_id', '(no ce_id)')} {headers.get('ce_type', '')}".strip()


# --- everything at once ---------------------------------------------------------------------

@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def as_json(self) -> dict[str, Any]:
        return {"checks": [c.as_json() for c in self.checks], "notes": self.notes,
                "passed": not self.failed, "failed": len(self.failed)}


def key_of_file(path: Path) -> SigningKey:
    try:
        return SigningKey.load(path)
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise ConformanceError(f"{path}: not an institution's key file ({{\"key_id\", \"pem\"}}: {exc})") from None


def padded(record_headers: Iterable[tuple[str, bytes]]) -> tuple[tuple[str, bytes], ...]:
    """The headers with the signature spelt with base64 padding (for tests and examples)."""
    return tuple((k, v + b"==" if k == "ce_signature" else v) for k, v in record_headers)

