"""Referral's use cases: a referral per new case, every command on a referral (from
Kafka or HTTP), direct referrals, the service directory, and the durable timers."""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from contracts import access, reference
from contracts.events import (
    CaseOpened,
    CaseReportAdded,
    CaseRestricted,
    EventType,
    ReferralAccept,
    ReferralCommand,
    ReferralOverdue,
    ReferralRequest,
    ReferralRequested,
    ReferralTransitioned,
    ServiceUpdated,
)
from contracts.refusals import Refused
from runtime import data_keys as data_keys_module
from runtime import restrictions
from runtime.cloudevents import CloudEvent, derived_id
from runtime.data_keys import DataKeys, Erased
from runtime.inbox import Message, UnitOfWork
from runtime.ingress import Refusal, Window, keep_answer, key_by_sender, receive, reply, sender_of
from runtime.service import Runtime
from runtime.signing import Keyring
from services.referral.adapters import notes, repository
from services.referral.adapters.tables import cases, commands, history, referrals, services, timers
from services.referral.domain import visibility
from services.referral.domain.deadlines import Escalate, Return, on_due, schedule
from services.referral.domain.referral import TERMINAL, Actor, Referral, ReferralRefused, State, Transition

SERVICE = "referral"
REFERRALS_TOPIC = "punte.referrals"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://punte.ro/referral")
INGRESS_TYPES = frozenset({EventType.REFERRAL_ACCEPT.value, EventType.REFERRAL_COMMAND.value,
                           EventType.REFERRAL_REQUEST.value, EventType.SERVICE_UPDATED.value})
URGENT = frozenset({"P0", "P1"})
CONFIG = "referral_config"  # Runtime.extras key (Config.of)
# The signed sender of an ingress event is its institution's own system (access.yaml roles).
SYSTEM_ROLES = frozenset({"institution-system"})


@dataclass(frozen=True)
class Config:
    keyring: Keyring
    deadlines: Mapping[str, Any]
    outcomes: frozenset[str]
    # Seals notes in the case file; required, so referral cannot run without data keys.
    data_keys: DataKeys
    reasons: Mapping[str, reference.ReferralReason] = field(default_factory=reference.referral_reasons)
    window: Window = Window()

    @staticmethod
    def of(rt: Runtime) -> "Config":
        """The running service's Config, built on first use and kept in ``rt.extras``: the
        consumers, the timers and every HTTP command share it, and a deadlines file is read
        once, not per request."""
        config = rt.extras.get(CONFIG)
        if config is None:
            config = rt.extras[CONFIG] = Config(
                keyring=rt.keyring,
                deadlines=reference.referral_deadlines(rt.settings.referral_deadlines_file),
                outcomes=frozenset(reference.referral_outcomes()),
                # Fails closed: without PUNTE_DATA_KEYS the service does not start.
                data_keys=data_keys_module.from_settings(rt.settings),
                window=rt.settings.ingress_window(),
            )
        return config


# --- cases -------------------------------------------------------------------------------

async def follow_case(uow: UnitOfWork, message: Message, config: Config) -> None:
    """A new case is referred to its lead; a report that joins a case updates its facts."""
    await follow_cases(uow, [message], config)


async def follow_cases(uow: UnitOfWork, messages: list[Message], config: Config) -> None:
    """A consumed batch of punte.cases, in order: each run of cases opened is referred to
    their leads with a constant number of statements (decision 0033); the other events one
    by one between them."""
    opened: list[CaseOpened] = []
    for message in messages:
        event = message.event
        if event.type == EventType.CASE_OPENED.value:
            opened.append(CaseOpened.model_validate(event.data))
            continue
        await _refer_to_leads(uow, opened, config)
        opened = []
        if event.type == EventType.CASE_RESTRICTED.value:
            # GDPR art. 18: while restricted, no command or new referral is taken on the case.
            await restrictions.follow(uow.session, CaseRestricted.model_validate(event.data))
        elif event.type == EventType.CASE_REPORT_ADDED.value:
            added = CaseReportAdded.model_validate(event.data)
            await uow.session.execute(sa.update(cases).where(cases.c.case_id == added.case_id)
                                      .values(categories=added.categories, urgency=added.urgency.value))
            # Reporting makes no participant; who reported is known, for the summary it may see.
            await repository.add_reporter(uow.session, added.case_id, added.reporter.institution)
    await _refer_to_leads(uow, opened, config)


async def _refer_to_leads(uow: UnitOfWork, opened: list[CaseOpened], config: Config) -> None:
    """Each case opened, kept, and referred to its lead: three statements for all of them."""
    if not opened:
        return
    await repository.open_cases(uow.session, [dict(
        case_id=case.case_id, lead=case.lead, urgency=case.urgency.value, categories=case.categories,
        county=case.county, do_not_contact=case.do_not_contact, status="open",
        participants=[case.lead, *case.informed], reporters=[case.reporter.institution],
        opened_at=uow.now) for case in opened])
    await _open_referrals(uow, config, [_Request(
        referral_id=_id(case.case_id), case_id=case.case_id, referrer=case.reporter.institution,
        to=case.lead, urgency=case.urgency.value, categories=case.categories, kind="case",
        do_not_contact=case.do_not_contact,
        # P0/P1: the statutory duty to act; P2/P3: consent is asked during assessment.
        legal_basis="statutory-duty" if case.urgency.value in URGENT else "consent-pending",
    ) for case in opened])


def _id(*parts: str) -> str:
    return f"ref-{uuid.uuid5(NAMESPACE, '|'.join(parts)).hex[:16]}"


@dataclass(frozen=True)
class _Request:
    """A referral to open: what create_referral is given."""

    referral_id: str
    case_id: str
    referrer: str
    to: str
    urgency: str
    categories: list[str]
    kind: str
    do_not_contact: bool
    legal_basis: str
    service_id: str | None = None
    forwarded_from: str | None = None
    consent: dict | None = None


async def create_referral(uow: UnitOfWork, config: Config, *, referral_id: str, case_id: str,
                          referrer: str, to: str, urgency: str, categories: list[str], kind: str,
                          do_not_contact: bool, legal_basis: str, service_id: str | None = None,
                          forwarded_from: str | None = None, consent: dict | None = None) -> bool:
    """Open a referral with its deadlines; False when it exists already (a redelivery)."""
    return bool(await _open_referrals(uow, config, [_Request(
        referral_id, case_id, referrer, to, urgency, categories, kind, do_not_contact, legal_basis,
        service_id, forwarded_from, consent)]))


async def _open_referrals(uow: UnitOfWork, config: Config, requests: list[_Request]) -> set[str]:
    """Open referrals with their deadlines and tell them (referral.requested); the ids of
    those opened now (one that exists already is a redelivery: nothing again)."""
    deadlines = {r.referral_id: schedule(r.kind, r.urgency, uow.now, config.deadlines) for r in requests}
    opened = await repository.open_referrals(uow.session, [dict(
        referral_id=r.referral_id, case_id=r.case_id, referrer=r.referrer, to_institution=r.to,
        urgency=r.urgency, categories=r.categories, state=State.REQUESTED.value, requested_at=uow.now,
        kind=r.kind, service_id=r.service_id, forwarded_from=r.forwarded_from, legal_basis=r.legal_basis,
        consent=r.consent, deadlines={k: v.isoformat() for k, v in deadlines[r.referral_id].items()},
        do_not_contact=r.do_not_contact, updated_at=uow.now,
    ) for r in requests])
    await repository.add_timers(uow.session, [
        {"referral_id": r.referral_id, "step": step, "due_at": at}
        for r in requests if r.referral_id in opened for step, at in deadlines[r.referral_id].items()])
    for r in requests:
        if r.referral_id not in opened:
            continue
        requested = ReferralRequested(
            referral_id=r.referral_id, case_id=r.case_id, referrer=r.referrer, to=r.to, urgency=r.urgency,
            categories=r.categories, requested_at=uow.now, kind=r.kind, service_id=r.service_id,
            forwarded_from=r.forwarded_from, legal_basis=r.legal_basis, consent=r.consent,
            deadlines=deadlines[r.referral_id], do_not_contact=r.do_not_contact,
        )
        # The referral id derives from its cause, and its request from the referral (ADR 0023).
        _emit(uow, EventType.REFERRAL_REQUESTED, requested.model_dump(mode="json"), r.case_id,
              id=derived_id(r.referral_id, EventType.REFERRAL_REQUESTED.value))
    return opened


def _emit(uow: UnitOfWork, type_: EventType, data: dict[str, Any], case_id: str, id: str | None) -> None:
    """``id``: derived from the event's cause (ADR 0023); None (random) only for what a
    person's HTTP request causes."""
    # Key = case id: every event of a case stays in order on punte.referrals.
    uow.outbox.emit(REFERRALS_TOPIC, CloudEvent.new(type_.value, uow.source, data, subject=case_id, id=id),
                    key=case_id)


# --- commands ------------------------------------------------------------------------------

async def on_ingress(uow: UnitOfWork, message: Message, config: Config) -> None:
    """A referral command, a direct referral or a directory update from an institution;
    whatever happens, the sender gets the outcome."""
    event = receive(uow, message, config.keyring, SERVICE, config.window)
    if isinstance(event, Refusal):
        await _record(uow, message, "rejected", event.code)
        return
    sender = sender_of(message) or ""
    try:
        answer: dict[str, Any]
        if event.type == EventType.REFERRAL_REQUEST.value:
            request = ReferralRequest.model_validate(event.data)
            referral_id = await request_referral(uow, config, sender, request, event.id, roles=SYSTEM_ROLES)
            answer = {"referral_id": referral_id, "case_id": request.case_id}
        elif event.type == EventType.SERVICE_UPDATED.value:
            await update_service(uow, sender, ServiceUpdated.model_validate(event.data))
            answer = {}
        else:
            command = _command_of(event)
            person = command.actor
            # A command naming no person is its institution's system's.
            actor = Actor(sender, person.person if person else None,
                          frozenset(person.roles) if person else SYSTEM_ROLES)
            after = await execute(uow, config, command.referral_id, command.command, actor,
                                  reason=command.reason, outcome=command.outcome, note=command.note,
                                  assignee=command.assignee, forward_to=command.forward_to,
                                  cause=key_by_sender(message))
            answer = {"referral_id": after.referral_id, "case_id": after.case_id}
    except Refused as exc:
        reply(uow, message, accepted=False, code=exc.code, detail=exc.detail,
              referral_id=event.data.get("referral_id"))
        await _record(uow, message, "rejected", exc.code)
        return
    reply(uow, message, accepted=True, key=answer.get("case_id"), **answer)
    await _record(uow, message, "accepted")


def _command_of(event: CloudEvent) -> ReferralCommand:
    """A referral command; a v1 referral.accept is the command "accept"."""
    if event.type == EventType.REFERRAL_ACCEPT.value:
        accept = ReferralAccept.model_validate(event.data)
        return ReferralCommand(referral_id=accept.referral_id, command="accept", note=accept.note)
    return ReferralCommand.model_validate(event.data)


async def load(uow: UnitOfWork, referral_id: str) -> tuple[Referral, sa.Row]:
    row = await repository.referral_of(uow.session, referral_id, for_update=True)
    if row is None:
        raise ReferralRefused("UNKNOWN_REFERRAL", "no such referral")
    return Referral(row.referral_id, row.case_id, row.referrer, row.to_institution, row.urgency,
                    State(row.state), row.owner), row


async def execute(uow: UnitOfWork, config: Config, referral_id: str, command: str, actor: Actor, *,
                  reason: str | None = None, outcome: str | None = None, note: str | None = None,
                  assignee: str | None = None, forward_to: str | None = None,
                  cause: str | None = None) -> Referral:
    """One step on a referral, by anyone, from any transport: checked by the lifecycle,
    recorded in the history, told to both sides through referral.transitioned. Who may give
    a command at all is the access rule's (referral.command: a non-participant is told the
    referral does not exist); the network's own timers act as the lifecycle allows.
    ``cause``: what gave the command (a message's inbox key, a timer's id), from which the
    ids of the step's event and note derive (ADR 0023); None for a person's HTTP request."""
    referral, row = await load(uow, referral_id)
    relations: frozenset[access.Relation] = frozenset()
    if actor != Actor.system():
        case = await repository.sides_of_case(uow.session, row.case_id)
        relations = visibility.to_referral(actor.institution, referrer=row.referrer, to=row.to_institution,
                                           case=case)
        access.require(access.decide("referral.command", actor.roles, relations, "referral"))
        await restrictions.refuse_if_restricted(uow.session, row.case_id)
    forwarded: str | None = None
    # An outcome code belongs to "complete" alone; anything else sent there is not kept or told.
    outcome = outcome if command == "complete" else None
    if command in ("claim", "assign"):
        # Who holds the referral changes, its state does not.
        if not actor.person:
            raise ReferralRefused("SCHEMA_VIOLATION", f"{command} needs the acting person (actor.person)")
        if reason is not None:
            raise ReferralRefused("UNKNOWN_REASON", f"{command} takes no reason (referral-reasons.yaml)")
        if command == "claim":
            after = referral.claim(actor)
            await uow.session.execute(sa.update(cases).where(
                cases.c.case_id == row.case_id, cases.c.lead == row.to_institution, cases.c.lead_manager.is_(None),
            ).values(lead_manager=actor.person))
        else:
            if not assignee:
                raise ReferralRefused("SCHEMA_VIOLATION", "assign needs an assignee")
            after = referral.assign(actor, assignee)
        transition = Transition(command, referral.state, referral.state, actor, uow.now, note=note)
    else:
        if command == "forward" and (forward_to not in reference.institutions() or forward_to == referral.to):
            raise Refused("UNKNOWN_INSTITUTION", "forward_to names no other institution of the network")
        after, transition = referral.apply(command, actor, uow.now, reason=reason, outcome=outcome,
                                           note=note, outcomes=config.outcomes, reasons=config.reasons)
        if visibility.ends_statutory(command, row.legal_basis):
            # The lifecycle lets the referrer end it; the duty to act lets only the case's
            # lead, or a supervisor, silence its deadlines (access.yaml referral.end-statutory).
            access.require(access.decide("referral.end-statutory", actor.roles, relations, "referral"),
                           f"{command} of a statutory referral: the case's lead or a supervisor")
        if command == "forward":
            assert forward_to is not None
            forwarded = _id(referral_id, "forward", forward_to)
            await create_referral(
                uow, config, referral_id=forwarded, case_id=row.case_id, referrer=row.referrer,
                to=forward_to, urgency=row.urgency, categories=row.categories, kind=row.kind,
                do_not_contact=row.do_not_contact, legal_basis=row.legal_basis,
                service_id=None, forwarded_from=referral_id, consent=row.consent)
            # Referred to, it takes part in the case, as with a direct referral.
            await repository.add_participant(uow.session, row.case_id, forward_to)
    # The note goes into the case file, sealed; what is told anyone else is its id.
    note_id = await _add_note(uow, config, referral_id, row.case_id, command, actor, note,
                              note_id=_note_id(derived_id(cause, "note", referral_id)) if cause else None)
    await uow.session.execute(sa.update(referrals).where(referrals.c.referral_id == referral_id).values(
        state=after.state.value, owner=after.owner, updated_at=uow.now,
        **({"accepted_at": uow.now} if after.state is State.ACCEPTED else {}),
        **({"outcome": outcome} if command == "complete" else {}),
    ))
    await uow.session.execute(sa.insert(history).values(
        referral_id=referral_id, at=uow.now, command=command, from_state=transition.from_state.value,
        to_state=transition.to_state.value, actor_institution=actor.institution,
        actor_person=actor.person, owner=after.owner, reason=reason, outcome=outcome, note_id=note_id,
    ))
    _emit(uow, EventType.REFERRAL_TRANSITIONED, ReferralTransitioned(
        referral_id=referral_id, case_id=row.case_id, referrer=row.referrer, to=row.to_institution,
        urgency=row.urgency, command=command, from_state=transition.from_state.value,
        to_state=transition.to_state.value, actor_institution=actor.institution,
        actor_person=actor.person, owner=after.owner, reason=reason, outcome=outcome, note_id=note_id,
        forwarded_to=forwarded, at=uow.now,
    ).model_dump(mode="json"), row.case_id,
        id=derived_id(cause, EventType.REFERRAL_TRANSITIONED.value, referral_id) if cause else None)
    return after


def _note_id(derived: str) -> str:
    return f"note-{uuid.UUID(derived).hex[:20]}"


async def _add_note(uow: UnitOfWork, config: Config, referral_id: str, case_id: str, command: str,
                    actor: Actor, text: str | None, note_id: str | None = None) -> str | None:
    """Seal a step's note into the case file; its id (None without a note). ``note_id``:
    derived from the step's cause (random when None), so the note an event names is the
    one a replay writes again."""
    if not text:
        return None
    try:
        return await notes.add(uow.session, config.data_keys, referral_id=referral_id, case_id=case_id,
                               command=command, author_institution=actor.institution,
                               author_person=actor.person, text=text, now=uow.now, note_id=note_id)
    except Erased:
        raise ReferralRefused("ILLEGAL_TRANSITION", "the case file was erased") from None


async def seal_legacy_notes(uow: UnitOfWork, config: Config) -> int:
    """Notes and free-text reasons recorded before they were sealed: into the case file."""
    return await notes.seal_legacy(uow.session, config.data_keys, config.reasons, uow.now)


async def request_referral(uow: UnitOfWork, config: Config, sender: str, request: ReferralRequest,
                           request_id: str, *, roles: frozenset[str]) -> str:
    """An institution taking part in a case refers it to another institution or to a
    service it offers; the receiver takes part from then on."""
    case = await repository.case_of(uow.session, request.case_id, for_update=True)
    if case is None:
        raise Refused("UNKNOWN_CASE", "no such case")
    access.require(access.decide("referral.request", roles,
                                 visibility.to_case(sender, repository.sides_of(case)), "case"),
                   "only the case's lead and the institutions taking part refer it")
    await restrictions.refuse_if_restricted(uow.session, case.case_id)
    if request.service_id:
        service = None if not repository.storable(request.service_id) else (await uow.session.execute(
            sa.select(services).where(services.c.service_id == request.service_id))).first()
        if service is None:
            raise Refused("UNKNOWN_SERVICE", "no such service")
        to = service.provider
    elif request.to in reference.institutions():
        to = request.to
    else:
        raise Refused("UNKNOWN_INSTITUTION", "`to` names no institution of the network")
    urgent = case.urgency in URGENT or request.kind == "information-request"
    if not urgent and (request.consent is None or request.consent.expires_on < uow.now.date()):
        raise Refused("CONSENT_REQUIRED", "a prevention referral (P2/P3) needs current consent")
    referral_id = _id(sender, request_id)
    await create_referral(
        uow, config, referral_id=referral_id, case_id=case.case_id, referrer=sender, to=to,
        urgency=case.urgency, categories=case.categories, kind=request.kind,
        do_not_contact=case.do_not_contact, legal_basis="statutory-duty" if urgent else "consent",
        service_id=request.service_id,
        consent=request.consent.model_dump(mode="json") if request.consent else None)
    await repository.add_participant(uow.session, case.case_id, to)
    await _add_note(uow, config, referral_id, case.case_id, "request",
                    Actor(sender, None, roles), request.note, note_id=_note_id(derived_id(referral_id, "note")))
    return referral_id


# --- the service directory -----------------------------------------------------------------

async def seed_directory(session, now: datetime) -> None:
    """Reference services the directory does not have yet (events keep them current)."""
    rows = [{"service_id": s.id, "provider": s.provider_institution, "name": s.name,
             "nomenclature_code": s.nomenclature_code, "categories": list(s.categories),
             "capacity": s.capacity, "occupancy": _occupied(s.capacity, s.occupancy_pct),
             "waiting": s.waiting, "accepting": s.status != "proposed", "updated_at": now}
            for s in reference.social_services()]
    if rows:
        await session.execute(pg_insert(services).values(rows).on_conflict_do_nothing())


def _occupied(capacity: int | None, percent: float | None) -> int | None:
    return round(capacity * percent / 100) if capacity is not None and percent is not None else None


async def update_service(uow: UnitOfWork, sender: str, update: ServiceUpdated) -> None:
    row = (await uow.session.execute(
        sa.select(services.c.provider).where(services.c.service_id == update.service_id))).first()
    if row is None and update.name and update.categories:
        # An institution lists a service of its own.
        await uow.session.execute(sa.insert(services).values(
            service_id=update.service_id, provider=sender, name=update.name,
            nomenclature_code=update.nomenclature_code, categories=update.categories,
            capacity=update.capacity, occupancy=update.occupancy, waiting=update.waiting,
            accepting=True if update.accepting is None else update.accepting, updated_at=uow.now))
        return
    if row is None:
        raise Refused("UNKNOWN_SERVICE", "no such service; give name and categories to add it")
    if row.provider != sender:
        raise Refused("NOT_ALLOWED", "only the provider updates its service")
    values = update.model_dump(exclude={"service_id"}, exclude_none=True)
    await uow.session.execute(sa.update(services).where(services.c.service_id == update.service_id)
                              .values(updated_at=uow.now, **values))


# --- deadlines -----------------------------------------------------------------------------

def coordinator_for(institution: str) -> str | None:
    """The DGASPC of the receiving institution's county coordinates escalations."""
    known = reference.institutions().get(institution)
    if known is None:
        return None
    try:
        return reference.county_institution("DGASPC", known.county).id
    except KeyError:
        return None


async def fire_due_timers(uow: UnitOfWork, config: Config, limit: int = 100) -> int:
    """Every timer due by ``uow.now``: overdue and escalated, or returned to the referrer.
    Rows are locked and skipped by other replicas, and marked fired in the same
    transaction as the events they cause."""
    due = (await uow.session.execute(
        sa.select(timers.c.id, timers.c.step, timers.c.due_at, referrals)
        .join(referrals, referrals.c.referral_id == timers.c.referral_id)
        .where(timers.c.fired_at.is_(None), timers.c.due_at <= uow.now,
               # A restricted case's deadlines wait: they fire once it is lifted, if still due.
               referrals.c.case_id.not_in(restrictions.RESTRICTED_CASES))
        .order_by(timers.c.due_at).limit(limit).with_for_update(of=timers, skip_locked=True)
    )).all()
    for row in due:
        # A timer is its referral and step (the row's serial id may differ in a database
        # rebuilt after a restore): what it causes derives from that (ADR 0023).
        timer = derived_id(row.referral_id, "timer", row.step)
        action = on_due(row.step, State(row.state), row.kind, row.urgency, row.to_institution,
                        coordinator_for(row.to_institution), config.deadlines)
        if isinstance(action, Escalate):
            _emit(uow, EventType.REFERRAL_OVERDUE, ReferralOverdue(
                referral_id=row.referral_id, case_id=row.case_id, referrer=row.referrer,
                to=row.to_institution, urgency=row.urgency, step=action.step, due_at=row.due_at,
                level=action.level, escalate_to=list(action.to),
            ).model_dump(mode="json"), row.case_id, id=derived_id(timer, EventType.REFERRAL_OVERDUE.value))
        elif isinstance(action, Return):
            await execute(uow, config, row.referral_id, "expire", Actor.system(), reason="NO_RESPONSE", cause=timer)
    if due:
        await uow.session.execute(sa.update(timers).where(timers.c.id.in_([row.id for row in due]))
                                  .values(fired_at=uow.now))
    return len(due)


# --- bookkeeping ---------------------------------------------------------------------------

async def record_failure(uow: UnitOfWork, message: Message, code: str) -> None:
    reply(uow, message, accepted=False, code=code)
    await _record(uow, message, "rejected", code)


async def _record(uow: UnitOfWork, message: Message, outcome: str, reason: str | None = None) -> None:
    await keep_answer(uow.session, commands, {
        "message_key": key_by_sender(message), "event_type": message.header("ce_type"),
        "sender": sender_of(message), "received_at": uow.now, "outcome": outcome, "reason_code": reason,
    }, uow.replaying)


async def stats(session) -> dict:
    count = sa.func.count
    total, accepted, still_open = (await session.execute(sa.select(
        count(), count().filter(referrals.c.accepted_at.isnot(None)),
        count().filter(referrals.c.state.notin_([s.value for s in TERMINAL])),
    ).select_from(referrals))).one()
    # Every command is answered exactly once (on_ingress, record_failure): one row, one outcome.
    answered = await session.scalar(sa.select(count()).select_from(commands))
    return {"referrals": total, "accepted": accepted, "open": still_open,
            "commands": answered, "outcomes": answered}
