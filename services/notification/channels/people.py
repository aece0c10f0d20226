"""Sends the queued e-mails and SMS to people (adapters/people.py), digests grouped.

One e-mail or SMS per due row, except digest rows, which are grouped per person and
address into one e-mail. What goes out is rendered here from the inbox entry's summary
(``domain.templates``): a case reference, category, urgency, deadline and the inbox link,
never the case's details. Transient failures are retried with backoff; permanent ones
(address refused, bad number) are marked failed with the channel's error.

Each message carries an idempotency key derived from what it tells (``idempotency_key``,
ADR 0023): in the e-mail's Message-ID, in the SMS gateway call. A message sent but not
recorded as sent (a crash in between) goes again with the same key, and the receiving side
can drop it."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from runtime.cloudevents import derived_id
from runtime.log import get_logger
from services.notification.adapters import people
from services.notification.channels.email import ChannelError, SmtpConnections, SmtpSender
from services.notification.channels.sms import SmsProvider
from services.notification.domain.recipients import Channel
from services.notification.domain.retry import RetryPolicy
from services.notification.domain.templates import DigestItem, render, render_digest, sms_text

log = get_logger("notification.people")


@dataclass
class PeopleChannels:
    email: SmtpSender | None
    sms: SmsProvider | None
    inbox_url: str
    zone: ZoneInfo
    policy: RetryPolicy = RetryPolicy(base=5.0, cap=300.0, max_attempts=6, timeout=30.0)

    @property
    def available(self) -> tuple[Channel, ...]:
        found: list[Channel] = []
        if self.email is not None:
            found.append("email")
        if self.sms is not None:
            found.append("sms")
        return tuple(found)

    def link(self, notification_id: str | None = None) -> str:
        """The web inbox, opened at the notification when there is one."""
        return f"{self.inbox_url}#n={notification_id}" if notification_id else self.inbox_url

    def when(self, moment: datetime | None) -> str | None:
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M") if moment else None


def idempotency_key(rows: Sequence[Any]) -> str:
    """The key of the message for ``rows``: a pure function of the notification(s) it tells,
    the person, the channel, the purpose and the alert's round (what makes a queued row
    unique), so the same message sent again carries the same key. A digest's key is that of
    the notices it groups."""
    first = rows[0]
    if first.purpose == "digest":
        return derived_id("digest", first.person, first.channel, *sorted(r.notification_id for r in rows))
    return derived_id(first.notification_id, "message", first.person, first.channel, first.purpose,
                      str(first.round))


async def _send(channels: PeopleChannels, rows: Sequence[Any], mail: SmtpConnections | None = None) -> str:
    """Send one message for ``rows`` (one row, or a digest's rows), e-mails over ``mail``'s
    connections; the provider's id."""
    first = rows[0]
    key = idempotency_key(rows)
    if first.channel == "email":
        if channels.email is None:
            raise ChannelError("CHANNEL_NOT_CONFIGURED", "no SMTP server is configured")
        if first.purpose == "digest":
            rendered = render_digest([DigestItem(r.urgency, r.summary_ro, r.summary_en, r.case_id,
                                                 channels.when(r.deadline), r.do_not_contact)
                                      for r in rows], channels.link())
        else:
            rendered = render(first.kind, first.urgency, first.summary_ro, first.summary_en, first.case_id,
                              channels.link(first.notification_id), channels.when(first.deadline),
                              first.do_not_contact)
        return await channels.email.send(first.address, rendered, message_id=key, over=mail)
    if channels.sms is None:
        raise ChannelError("CHANNEL_NOT_CONFIGURED", "no SMS provider is configured")
    text = sms_text(first.kind, first.urgency, first.case_id, channels.link(first.notification_id),
                    channels.when(first.deadline), first.do_not_contact)
    return await channels.sms.send(first.address, text, idempotency_key=key)


def _groups(rows: Sequence[Any]) -> list[list[Any]]:
    digests: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    single: list[list[Any]] = []
    for row in rows:
        if row.purpose == "digest":
            digests[(row.person, row.channel, row.address)].append(row)
        else:
            single.append([row])
    return single + list(digests.values())


async def send_due(session: AsyncSession, channels: PeopleChannels, now: datetime) -> int:
    """Send what is due at ``now`` and record each outcome, in one transaction (begun here
    unless one is open). The number of rows handled."""
    began = not session.in_transaction()
    async with session.begin() if began else nullcontext():
        rows = await people.due(session, now, channels.policy.batch)
        if not rows:
            return 0
        gate = asyncio.Semaphore(channels.policy.concurrency)
        mail = channels.email.connections() if channels.email is not None else nullcontext(None)

        async def one(group: list[Any], over: SmtpConnections | None) -> str | ChannelError:
            async with gate:
                try:
                    return await asyncio.wait_for(_send(channels, group, over), channels.policy.timeout)
                except ChannelError as exc:
                    return exc
                except TimeoutError:
                    return ChannelError("TIMEOUT", "the channel did not answer in time", transient=True)
                except ValueError as exc:  # a template refused the content: never retried
                    return ChannelError("INVALID_MESSAGE", str(exc))

        groups = _groups(rows)
        async with mail as over:
            results = await asyncio.gather(*(one(group, over) for group in groups))
        # Batch first: what was sent in one update, retries and failures one per distinct
        # time and error (a mail server away fails every group of a pass alike).
        sent: list[tuple[int, str]] = []
        retries: dict[tuple[datetime, str], list[int]] = defaultdict(list)
        failed: dict[str, list[int]] = defaultdict(list)
        for group, result in zip(groups, results, strict=True):
            ids = [row.id for row in group]
            tries = max(row.attempts for row in group) + 1
            if isinstance(result, str):
                sent += [(i, result) for i in ids]
            elif result.transient and tries < channels.policy.max_attempts:
                retries[(now + channels.policy.delay(tries), str(result))] += ids
            else:
                log.warning("message to a person failed", code=result.code, channel=group[0].channel,
                            person=group[0].person, rows=len(ids))
                failed[str(result)] += ids
        await people.mark_sent(session, sent, now)
        for (next_at, error), ids in retries.items():
            await people.mark_retry(session, ids, next_at, error)
        for error, ids in failed.items():
            await people.mark_failed(session, ids, error)
        return len(rows)
