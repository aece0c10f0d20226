"""Composition root: wires intake's handlers to the runtime and the reference data."""
from __future__ import annotations

from pathlib import Path

from contracts import reference
from runtime.inbox import InboxConsumer, Message, UnitOfWork
from runtime.ingress import key_by_sender
from runtime.service import Runtime, ServiceSpec
from runtime.settings import Settings
from services.intake import handlers, retention
from services.intake.adapters.report_keys import ReportKeys
from services.intake.adapters.vault import IdentityVault
from services.intake.domain.cases import Rules
from services.intake.entrypoints import http, privacy

# What institutions send: their ingress topics, and the reports intake's HTTP gateway took.
INGRESS_PATTERN = r"^punte\.ingress\..+|^punte\.gateway$"
# HMAC-SHA256 and AES-256-GCM keys: 32 random bytes, 64 hex digits.
KEY_BYTES = 32


class MissingSecret(RuntimeError):
    """Intake was given no key, or a weak or malformed one, in the PUNTE_* variable named.
    There is no built-in key to fall back on: whoever holds the source could otherwise
    hash the ~10^9 possible CNPs and reverse every pseudonym."""


def pseudonym_key(setting: str) -> bytes:
    """PUNTE_PSEUDONYM_KEY as bytes; MissingSecret (never quoting it) unless 32+ bytes of hex."""
    if not setting.strip():
        raise MissingSecret("PUNTE_PSEUDONYM_KEY is not set: give 64 hex digits (32 random bytes)")
    try:
        key = bytes.fromhex(setting.strip())
    except ValueError:
        raise MissingSecret("PUNTE_PSEUDONYM_KEY is not hexadecimal: give 64 hex digits "
                            "(32 random bytes)") from None
    if len(key) < KEY_BYTES:
        raise MissingSecret(f"PUNTE_PSEUDONYM_KEY is too short ({len(key)} bytes): give 64 hex digits "
                            "(32 random bytes)")
    return key


def build_rules(pseudonym_key_hex: str) -> Rules:
    uats = reference.uats()

    def county_institution(kind: str, county: str) -> str | None:
        try:
            return reference.county_institution(kind, county).id
        except KeyError:
            return None

    return Rules(
        categories=frozenset(reference.risk_categories()),
        uat_county={s: u.county for s, u in uats.items()},
        triage_table=reference.triage_table(),
        routing_table=reference.routing_table(),
        urgency_levels=reference.urgency_levels(),
        observation_items={section: frozenset(items)
                           for section, items in reference.observation_sheet_items().items()},
        local_authority=lambda siruta: (i.id if (i := reference.local_authority(siruta)) else None),
        county_institution=county_institution,
        pseudonym_key=pseudonym_key(pseudonym_key_hex),
    )


def build_vault(settings: Settings) -> IdentityVault:
    try:
        return IdentityVault.from_setting(settings.identity_keys)
    except ValueError as exc:
        raise MissingSecret(f"PUNTE_IDENTITY_KEYS is not usable ({exc}): give kid:64-hex-digits"
                            "[,kid:…], the first key encrypts") from None


def build_report_keys(settings: Settings) -> ReportKeys:
    """Intake's encryption keys (report v3); MissingSecret when the file is not usable: a
    sealed report would otherwise be refused for want of a key nobody noticed was missing."""
    path = settings.resolved_intake_encryption_keys_file()
    try:
        return ReportKeys.load(path)
    except ValueError as exc:
        raise MissingSecret(f"PUNTE_INTAKE_ENCRYPTION_KEYS_FILE is not usable ({exc}): give a JWKS "
                            "of private EC P-256 keys with kids, the first current") from None


def check_secrets(settings: Settings) -> None:
    """Raise MissingSecret before anything starts when a key intake needs is not usable."""
    build_rules(settings.pseudonym_key)
    build_vault(settings)
    build_report_keys(settings)


def build_intake(rt: Runtime) -> handlers.Intake:
    report_keys = build_report_keys(rt.settings)
    rt.extras["report_keys"] = report_keys  # published by GET /.well-known/jwks.json
    return handlers.Intake(keyring=rt.keyring, rules=build_rules(rt.settings.pseudonym_key),
                           vault=build_vault(rt.settings), window=rt.settings.ingress_window(),
                           report_keys=report_keys, accept_clear=rt.settings.accept_clear_reports)


def handled_elsewhere() -> frozenset[str]:
    """Ingress event types another service answers (topics.yaml `handled_by`)."""
    return frozenset(
        e["type"] for t in reference.topics() if t["kind"] == "ingress"
        for e in t["events"] if e.get("handled_by", "intake") != "intake"
    )


def consumers(rt: Runtime) -> list[InboxConsumer]:
    intake = build_intake(rt)
    others = handled_elsewhere()

    async def handle_many(uow: UnitOfWork, messages: list[Message]) -> None:
        await handlers.submit_reports(uow, [m for m in messages if m.header("ce_type") not in others], intake)

    async def handle(uow: UnitOfWork, message: Message) -> None:
        await handle_many(uow, [message])

    async def on_failure(uow: UnitOfWork, message: Message, code: str, detail: str) -> None:
        await handlers.record_failure(uow, message, code)

    schedule = rt.retention()

    async def on_referrals(uow: UnitOfWork, message: Message) -> None:
        await retention.follow_closure(uow, message, schedule)

    return [rt.consumer(group_id="punte-intake", handler=handle, pattern=INGRESS_PATTERN,
                        message_key=key_by_sender, on_failure=on_failure, batch_handler=handle_many),
            # Cases their lead closes or reopens (referral).
            rt.consumer(group_id="punte-intake-closures", topics=["punte.referrals"], handler=on_referrals,
                        background=True)]


SPEC = ServiceSpec(
    name="intake", title="Punte intake — rapoarte de risc / risk reports",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers, routers=[http.router, http.keys, privacy.router], stats=handlers.stats,
    loops=lambda rt: [rt.purge_job(retention.purge)], data_keys=True,
)
