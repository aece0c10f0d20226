"""The embedded SMS default: one JSON line per SMS, written in order even when sent at
once; the text it is given is one plain-ASCII segment."""
from __future__ import annotations

import asyncio
import json

import pytest

from services.notification.channels.email import ChannelError
from services.notification.channels.sms import FileSmsProvider, SmsProvider
from services.notification.domain.templates import SMS_LIMIT, sms_text

CASE = "case-0123456789abcdef"
LINK = f"https://punte.example.ro/inbox/{CASE}"
PHONE = "+40700000001"  # synthetic


async def test_file_provider_appends_one_json_line_per_sms(tmp_path):
    path = tmp_path / "sms" / "outbox.jsonl"
    provider = FileSmsProvider(path)
    assert isinstance(provider, SmsProvider)
    text = sms_text("referral-requested", "P0", CASE, LINK, None, True)
    assert len(text) <= SMS_LIMIT and text.isascii()

    first = await provider.send(PHONE, text)
    second = await provider.send("0700000002", "Punte P3. Caz x.")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == [first, second] and first != second
    assert lines[0]["to"] == PHONE and lines[0]["text"] == text
    assert set(lines[0]) == {"to", "text", "id", "idempotency_key", "at"} and lines[0]["at"].endswith("+00:00")


async def test_concurrent_sends_give_whole_lines(tmp_path):
    path = tmp_path / "outbox.jsonl"
    provider = FileSmsProvider(path)
    ids = await asyncio.gather(*(provider.send(PHONE, f"Punte P2. Caz case-{i:016x}.") for i in range(50)))
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 50 and {line["id"] for line in lines} == set(ids)


@pytest.mark.parametrize("phone", ["", "40700000001", "+40 700 000 001", "+40700000001\n", "07000"])
async def test_bad_phone_is_a_channel_error(tmp_path, phone):
    with pytest.raises(ChannelError) as caught:
        await FileSmsProvider(tmp_path / "outbox.jsonl").send(phone, "x")
    assert caught.value.code == "INVALID_PHONE"


async def test_unwritable_path_is_a_transient_channel_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ChannelError) as caught:
        await FileSmsProvider(blocker / "outbox.jsonl").send(PHONE, "x")
    assert caught.value.code == "SMS_UNAVAILABLE" and caught.value.transient
