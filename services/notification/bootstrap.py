"""Composition root: wires notification's handlers to the runtime, the recipients
configuration and the channels (SMTP, SMS, webhooks)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import httpx

from contracts import reference
from runtime.inbox import InboxConsumer, Message, UnitOfWork
from runtime.service import Runtime, ServiceSpec
from runtime.settings import Settings
from services.notification import handlers, retention
from services.notification.adapters import metrics, recipients_file
from services.notification.channels.email import SmtpSender
from services.notification.channels.people import PeopleChannels, send_due
from services.notification.channels.sms import FileSmsProvider
from services.notification.channels.webhook import RetryPolicy, deliver_due
from services.notification.domain.dispatch import PageCap
from services.notification.entrypoints import http, privacy, ui

TOPICS = ["punte.cases", "punte.referrals", "punte.access"]
CONFIG = http.CONFIG


def people_channels(settings: Settings, zone) -> PeopleChannels:
    email = None
    if settings.smtp_host:
        email = SmtpSender(settings.smtp_host, settings.smtp_port, settings.smtp_sender,
                           starttls=settings.smtp_starttls, username=settings.smtp_username,
                           password=settings.smtp_password)
    return PeopleChannels(email=email, sms=FileSmsProvider(settings.resolved_sms_file()),
                          inbox_url=settings.inbox_url.rstrip("/"), zone=zone)


async def configure(rt: Runtime) -> None:
    """Read the recipients file once; a broken file stops the service at start."""
    recipients = recipients_file.load(rt.settings.resolved_recipients_file())
    rt.extras[CONFIG] = handlers.Config(
        labels=reference.risk_categories(), recipients=recipients,
        channels=people_channels(rt.settings, recipients.zone), network_key=rt.network_key,
        page_cap=PageCap(rt.settings.p0_pages_per_person, timedelta(seconds=rt.settings.p0_page_window_seconds)),
    )


def queued(rt: Runtime) -> asyncio.Event:
    """Set when the consumer committed notices: their e-mails, SMS and webhooks are queued,
    and the dispatcher sends them at once; its poll only finds what comes due later (a held
    page, a retry, an alert to escalate) or what another process queued, and can be slow."""
    return rt.extras.setdefault("notification_queued", asyncio.Event())


def consumers(rt: Runtime) -> list[InboxConsumer]:
    config: handlers.Config = rt.extras[CONFIG]
    schedule = rt.retention()

    async def handle(uow: UnitOfWork, message: Message) -> None:
        await handle_many(uow, [message])

    async def handle_many(uow: UnitOfWork, messages: list[Message]) -> None:
        pending = handlers.Pending()
        for message in messages:
            if message.header("ce_type") in retention.CLOSURES:
                await pending.write(uow, config)  # in order: what came before the closure first
                await retention.follow_closure(uow, message, schedule)
            else:
                await handlers.take(uow, message, config, pending)
        await pending.write(uow, config)

    return [rt.consumer(group_id="punte-notification", handler=handle, topics=TOPICS,
                        batch_handler=handle_many, after_applied=queued(rt).set)]


def loops(rt: Runtime):
    config: handlers.Config = rt.extras[CONFIG]
    webhook_policy = RetryPolicy()

    async def dispatch(client: httpx.AsyncClient) -> int:
        """Alerts to re-send or escalate, then e-mails and SMS, then webhooks."""
        now = datetime.now(timezone.utc)
        async with rt.sessions() as session:
            done = await handlers.fire_due_alerts(session, config, now)
        async with rt.sessions() as session:
            done += await send_due(session, config.channels, now)
        async with rt.sessions() as session:
            return done + await deliver_due(session, client, webhook_policy, now, signer=config.network_key,
                                             data_keys=rt.data_keys)

    async def dispatcher() -> None:
        async with httpx.AsyncClient() as client:
            await rt.polling(partial(dispatch, client), rt.settings.dispatch_poll_seconds, wake=queued(rt))()

    return [dispatcher, rt.purge_job(retention.purge)]


SPEC = ServiceSpec(
    name="notification", title="Punte notification — notificări / notifications",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers, routers=[http.router, ui.router, privacy.router], stats=handlers.stats,
    on_start=configure, loops=loops, data_keys=True, metrics=metrics.gauges,
)
