"""The CloudEvents codec, message signatures and tokens of the shared runtime."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi import HTTPException

from runtime.cloudevents import CloudEvent, EnvelopeError, decode
from runtime.signing import Keyring, PublicKey, SignatureError, SigningKey
from runtime.tokens import TokenIssuer, TokenVerifier

NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)


def test_a_cloudevent_survives_kafka_headers_and_body():
    event = CloudEvent.new("ro.punte.x.v1", "/institutions/isj-bc", {"a": "ăîșț"}, subject="case-1")
    back = decode(event.headers(), event.body())
    assert back == event


GOOD = [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t"),
        ("ce_time", b"2026-11-22T12:00:00Z"), ("content-type", b"application/json")]
WITHOUT_CONTENT_TYPE = [h for h in GOOD if h[0] != "content-type"]


@pytest.mark.parametrize("headers, body, code", [
    ([], b"{}", "MALFORMED_ENVELOPE"),
    ([("ce_specversion", b"0.3"), ("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t")], b"{}", "MALFORMED_ENVELOPE"),
    ([("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t"), ("ce_time", b"yesterday")], b"{}", "MALFORMED_ENVELOPE"),
    ([("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t")], b"{}", "MALFORMED_ENVELOPE"),
    (GOOD, b"\xff\xfe", "MALFORMED_PAYLOAD"),
    (GOOD, b"[1, 2]", "MALFORMED_PAYLOAD"),
    # docs/contracts.md: content-type is required and JSON.
    (WITHOUT_CONTENT_TYPE, b"{}", "MALFORMED_ENVELOPE"),
    (WITHOUT_CONTENT_TYPE + [("content-type", b"text/plain")], b"{}", "MALFORMED_ENVELOPE"),
    (WITHOUT_CONTENT_TYPE + [("content-type", b"application/jsonx")], b"{}", "MALFORMED_ENVELOPE"),
    # A header given twice: which one counts would depend on the reader (issue #16).
    (GOOD + [("ce_id", b"2")], b"{}", "MALFORMED_ENVELOPE"),
    (GOOD + [("ce_id", b"1")], b"{}", "MALFORMED_ENVELOPE"),
    (GOOD + [("content-type", b"application/json")], b"{}", "MALFORMED_ENVELOPE"),
    (GOOD + [("ce_signature", b"x"), ("ce_signature", b"y")], b"{}", "MALFORMED_ENVELOPE"),
    # ce_time is RFC 3339 (section 5.6), not whatever datetime.fromisoformat takes.
    *[([*GOOD[:4], ("ce_time", time), GOOD[5]], b"{}", "MALFORMED_ENVELOPE") for time in (
        b"2026-11-22 12:00:00+00:00", b"20261122T120000+0000", b"2026-11-22T12:00:00",
        b"2026-11-22T12:00+00:00", b"2026-11-22T12:00:00.+00:00", b"2026-11-22T12:00:00+0000",
        b"2026-11-22", b"2026-13-22T12:00:00Z", "2026-11-22T12:00:00\u00a0Z".encode())],
])
def test_unreadable_events_are_refused_with_a_code(headers, body, code):
    with pytest.raises(EnvelopeError) as refused:
        decode(headers, body)
    assert refused.value.code == code


@pytest.mark.parametrize("content_type", [b"application/json", b"application/json; charset=utf-8",
                                          b"Application/JSON;charset=UTF-8"])
def test_json_with_parameters_is_json(content_type):
    event = decode(WITHOUT_CONTENT_TYPE + [("content-type", content_type)], b'{"a": 1}')
    assert event.data == {"a": 1}


@pytest.mark.parametrize("time", ["2026-11-22T12:00:00Z", "2026-11-22T14:00:00+02:00",
                                  "2026-11-22T12:00:00.123456789Z", "2026-11-22t12:00:00z"])
def test_any_rfc_3339_time_is_read(time):
    event = decode([*GOOD[:4], ("ce_time", time.encode()), GOOD[5]], b"{}")
    assert event.time == time


def test_other_headers_may_repeat():
    """Only CloudEvents attributes and content-type must be single: W3C and brokers' own
    headers are not the receiver's to police."""
    event = decode(GOOD + [("tracestate", b"a=1"), ("tracestate", b"b=2")], b"{}")
    assert event.id == "1"


def keyring_for(key: SigningKey, owner: str, not_after: datetime | None = None) -> Keyring:
    return Keyring([PublicKey(key.key_id, owner, key.public_raw(), NOW - timedelta(days=30), not_after)])


def verify(keyring: Keyring, event: CloudEvent, owner: str = "isj-bc", body: bytes | None = None) -> None:
    keyring.verify(owner, body if body is not None else event.body(), event.id, event.source,
                   event.type, event.time, event.subject, event.extensions.get("keyid"),
                   event.extensions.get("signature"), now=NOW, version=event.extensions.get("sigversion"))


def test_signatures_verify_and_any_change_breaks_them():
    key = SigningKey.generate("isj-bc-1")
    event = key.sign(CloudEvent.new("t.v1", "/institutions/isj-bc", {"n": 1}))
    keyring = keyring_for(key, "isj-bc")
    verify(keyring, event)
    with pytest.raises(SignatureError) as bad:
        verify(keyring, event, body=b'{"n":2}')
    assert bad.value.code == "BAD_SIGNATURE"
    moved = CloudEvent(event.id, event.source, "other.v1", event.time, event.data, None, event.extensions)
    with pytest.raises(SignatureError):
        verify(keyring, moved)


def test_a_key_counts_only_for_its_owner_and_inside_its_validity():
    key = SigningKey.generate("isj-bc-1")
    event = key.sign(CloudEvent.new("t.v1", "/institutions/isj-bc", {}))
    with pytest.raises(SignatureError) as other_owner:
        verify(keyring_for(key, "dsp-bc"), event, owner="isj-bc")
    assert other_owner.value.code == "UNKNOWN_KEY"
    with pytest.raises(SignatureError) as expired:
        verify(keyring_for(key, "isj-bc", not_after=NOW - timedelta(days=1)), event)
    assert expired.value.code == "UNKNOWN_KEY"
    unsigned = CloudEvent.new("t.v1", "/institutions/isj-bc", {})
    with pytest.raises(SignatureError) as missing:
        verify(keyring_for(key, "isj-bc"), unsigned)
    assert missing.value.code == "MISSING_SIGNATURE"


def test_keyring_round_trips_through_json():
    key = SigningKey.generate("isj-bc-1")
    keyring = Keyring.from_json(keyring_for(key, "isj-bc").to_json())
    verify(keyring, key.sign(CloudEvent.new("t.v1", "/institutions/isj-bc", {})))


async def test_tokens_carry_institution_and_roles_and_reject_forgeries():
    issuer = TokenIssuer("http://127.0.0.1:1", SigningKey.generate("idp-1"))
    verifier = TokenVerifier("http://127.0.0.1:1", "punte", jwks=issuer.jwks())
    principal = await verifier.verify(issuer.issue("cm.isj-bc", "isj-bc", ["case-manager"]))
    assert principal.institution == "isj-bc" and principal.roles == {"case-manager"}
    impostor = TokenIssuer("http://127.0.0.1:1", SigningKey.generate("idp-1"))
    with pytest.raises(HTTPException) as refused:
        await verifier.verify(impostor.issue("cm.isj-bc", "isj-bc", ["auditor"]))
    assert refused.value.status_code == 401


async def polled(monkeypatch, found: list[int], interval: float, **options) -> list[str]:
    """What a polling loop did with work that finds ``found`` on its passes, in order
    (stopped when they run out): each pass and each wait."""
    import asyncio

    from runtime import service

    passes = iter(found)
    calls: list[str] = []

    async def work() -> int:
        try:
            n = next(passes)
        except StopIteration:
            raise asyncio.CancelledError from None
        calls.append(f"work:{n}")
        return n

    async def sleep(seconds: float) -> None:
        calls.append(f"sleep:{seconds}")
    monkeypatch.setattr(service.asyncio, "sleep", sleep)
    with pytest.raises(asyncio.CancelledError):
        await service.polling(work, interval, **options)()
    return calls


async def test_a_polling_loop_works_at_once_while_busy_and_waits_only_when_idle(monkeypatch):
    assert await polled(monkeypatch, [3, 1, 0, 2], 1.5) == ["work:3", "work:1", "work:0", "sleep:1.5", "work:2"]


async def test_a_woken_poll_works_at_once_and_otherwise_waits_its_interval():
    """``wake``: what gives the loop work in this process sets it, and the loop goes round
    without waiting out its (slow) interval; with nothing set it still polls."""
    import asyncio

    from runtime import service

    wake = asyncio.Event()
    passes: list[float] = []

    async def work() -> int:
        passes.append(asyncio.get_running_loop().time())
        return 0

    loop = asyncio.create_task(service.polling(work, 30.0, wake=wake)())
    await asyncio.sleep(0.05)
    assert len(passes) == 1  # the first pass found nothing, and it waits
    wake.set()
    await asyncio.sleep(0.05)
    assert len(passes) == 2, "woken: it went round at once"
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop

    passes.clear()
    loop = asyncio.create_task(service.polling(work, 0.05, wake=asyncio.Event())())
    await asyncio.sleep(0.18)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert len(passes) >= 3, "never woken: it polls at its interval"


async def test_a_woken_loop_takes_the_commits_of_a_trickle_in_one_pass():
    """Step 41: a pass after a wake waits ``gather_seconds`` first, so wakes that come
    meanwhile (each commit of a consumer sets it) are one pass, not a pass each and an
    empty one after each."""
    import asyncio

    from runtime import service

    wake = asyncio.Event()
    passes: list[int] = []
    waiting = [0]

    async def work() -> int:
        found, waiting[0] = waiting[0], 0
        passes.append(found)
        return found

    loop = asyncio.create_task(service.polling(work, 30.0, wake=wake, gather_seconds=0.3)())
    await asyncio.sleep(0.05)
    assert passes == [0]
    for _ in range(3):  # three commits, 30 ms apart
        waiting[0] += 1
        wake.set()
        await asyncio.sleep(0.03)
    await asyncio.sleep(0.4)
    assert passes[:2] == [0, 3], "the three commits' work in one pass"
    await asyncio.sleep(0.35)
    assert passes == [0, 3, 0], "then one look for more, after the same wait, and rest"
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop


@pytest.mark.parametrize("headers, body", [
    ([("ce_specversion", b"Testescu"), ("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t")], b"{}"),
    ([*GOOD[:4], ("ce_time", b"Ana Testescu")], b"{}"),
    (GOOD, "Testescu \xe2".encode("latin-1")),
    (GOOD, b'{"family_name": Testescu}'),
])
def test_a_refusal_says_where_the_event_is_unreadable_never_what_it_says(headers, body):
    """Refusal details travel in outcomes and dead letters (issue #11): no input in them."""
    with pytest.raises(EnvelopeError) as refused:
        decode(headers, body)
    assert "Testescu" not in refused.value.detail


def test_a_quiet_loop_waits_longer_with_each_empty_pass_up_to_its_quiet_wait_and_work_brings_it_back():
    from runtime.quiet import QuietWait

    wait = QuietWait(1.0, 8.0)
    assert [wait.idle() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    wait.worked()
    assert [wait.idle() for _ in range(2)] == [1.0, 2.0]
    # A quiet wait below the interval (or none): the interval, as before.
    assert [QuietWait(60.0, 8.0).idle() for _ in range(3)] == [60.0] * 3
    assert [QuietWait(0.5, 0.0).idle() for _ in range(3)] == [0.5] * 3


async def test_an_idle_poll_backs_off_until_work_or_a_wake_brings_its_interval_back(monkeypatch):
    """What a poll on a quiet network does: nothing found, it waits its interval, then twice
    that, up to the quiet wait; work found sends it round at once and back to the interval."""
    assert await polled(monkeypatch, [0, 0, 0, 0, 0, 2, 0, 0], 1.0, quiet_seconds=4.0) == [
        "work:0", "sleep:1.0", "work:0", "sleep:2.0", "work:0", "sleep:4.0", "work:0", "sleep:4.0",
        "work:0", "sleep:4.0", "work:2", "work:0", "sleep:1.0", "work:0", "sleep:2.0"]


async def test_an_idle_relay_backs_off_and_a_commit_of_its_process_brings_it_back(monkeypatch):
    """The relay's poll on a quiet network: its interval, then longer up to the quiet wait;
    a wake (a commit of its own process that wrote events) sends it round at once, and its
    next empty poll waits the interval again."""
    import asyncio

    from runtime import outbox

    relay = outbox.OutboxRelay(None, None, batch_max=10, poll_seconds=1.0, quiet_seconds=4.0)  # type: ignore[arg-type]
    waits: list[float] = []

    async def publish_batch() -> int:
        return 0
    relay.publish_batch = publish_batch  # type: ignore[method-assign]

    async def wait_for(awaitable, timeout):
        awaitable.close()
        waits.append(timeout)
        if len(waits) == 4:
            relay.wake()  # a commit while it waited
            return True
        if len(waits) == 6:
            raise asyncio.CancelledError
        raise TimeoutError
    monkeypatch.setattr(outbox.asyncio, "wait_for", wait_for)
    with pytest.raises(asyncio.CancelledError):
        await relay.run()
    assert waits == [1.0, 2.0, 4.0, 4.0, 1.0, 2.0]
