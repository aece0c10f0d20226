"""Who an institution's notices reach, and how: the recipients configuration.

Each institution sets the channels its people may be reached through, its team mailbox,
the system webhook, quiet hours, the digest period, the on-call rota for P0 alerts and
how long an alert may stay unacknowledged before it is re-sent and escalated. Each person
has a role and contact points, and may choose, within the institution's channels, how
they are told (``Preference``). Pure data and rules; reading the YAML file is an adapter."""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from functools import cached_property
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

Channel = Literal["email", "sms"]
Role = Literal["case-manager", "supervisor", "coordinator"]

_EMAIL = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+")
# E.164 (+40712345678) or a Romanian national number (0712345678).
PHONE = re.compile(r"\+[1-9]\d{7,14}|0\d{9}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secure_webhook(url: str) -> bool:
    """Notices carry urgency and risk categories: a webhook goes over TLS, except to a
    loopback address (the embedded network and the tests), where nothing crosses a wire."""
    if not re.fullmatch(r"https?://\S+", url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        return False
    if not host:
        return False
    return parts.scheme == "https" or _loopback(host)


class _Strict(BaseModel):
    # Errors name the field, not the value given (a webhook URL may carry a secret).
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, hide_input_in_errors=True)


def _email(value: str | None) -> str | None:
    if value is not None and not _EMAIL.fullmatch(value):
        raise ValueError(f"{value!r} is not one plain e-mail address")
    return value


class Person(_Strict):
    institution: str
    role: Role = "case-manager"
    email: str | None = None
    phone: str | None = None
    # UATs (SIRUTA) the person covers; empty: the whole institution's area.
    uats: list[int] = Field(default_factory=list)
    # The person's default choice; their own preference (set in the inbox) overrides it.
    channels: list[Channel] = Field(default_factory=lambda: ["email"])
    digest: bool = True

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        return _email(value)

    @field_validator("phone")
    @classmethod
    def _check_phone(cls, value: str | None) -> str | None:
        if value is not None and not PHONE.fullmatch(value):
            raise ValueError(f"{value!r} is not a phone number (E.164 +40… or 0 and 9 digits)")
        return value

    def address(self, channel: Channel) -> str | None:
        return self.email if channel == "email" else self.phone


class Shift(_Strict):
    person: str
    start: AwareDatetime = Field(alias="from")
    end: AwareDatetime = Field(alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> "Shift":
        if self.end <= self.start:
            raise ValueError(f"the shift of {self.person} ends before it starts")
        return self

    def covers(self, now: datetime) -> bool:
        return self.start <= now < self.end


class QuietHours(_Strict):
    """Local times; ``start`` after ``end`` spans midnight (22:00–07:00)."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class InstitutionRecipients(_Strict):
    channels: list[Channel] = Field(default_factory=lambda: ["email"])
    team_email: str | None = None
    webhook: str | None = None
    quiet_hours: QuietHours | None = None
    digest_minutes: int = Field(60, ge=0, description="0: no digest, P2/P3 are sent one by one")
    ack_minutes: float = Field(10, gt=0, description="How long a P0 alert may wait for an acknowledgement")
    resends: int = Field(1, ge=0, description="Re-sends at a level before escalating to the next")
    supervisors: list[str] = Field(default_factory=list)
    # A DGASPC's coordinators are the county's coordinators: last level of every P0 alert.
    coordinators: list[str] = Field(default_factory=list)
    on_call: list[Shift] = Field(default_factory=list)

    @field_validator("team_email")
    @classmethod
    def _check_team(cls, value: str | None) -> str | None:
        return _email(value)

    @field_validator("webhook")
    @classmethod
    def _check_webhook(cls, value: str | None) -> str | None:
        if value is not None and not secure_webhook(value):
            # The URL is not repeated: it may carry a secret token.
            raise ValueError("the webhook must be an https:// URL; plain http:// only to this machine "
                             "(127.0.0.0/8, ::1, localhost)")
        return value


class Preference(_Strict):
    """A person's own choice of channels and digest."""

    channels: list[Channel]
    digest: bool = True


class PreferenceRefused(ValueError):
    """A preference the institution does not allow: a code and why, in Romanian and English."""

    def __init__(self, code: str, ro: str, en: str) -> None:
        super().__init__(en)
        self.code, self.ro, self.en = code, ro, en


class Recipients(_Strict):
    timezone: str = "Europe/Bucharest"
    institutions: dict[str, InstitutionRecipients] = Field(default_factory=dict)
    people: dict[str, Person] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (KeyError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Recipients":
        """Every person named by an institution exists and belongs to it, and each person's
        default channels are ones their institution allows and they can be reached on."""
        for inst_id, inst in self.institutions.items():
            named = [*inst.supervisors, *inst.coordinators, *(s.person for s in inst.on_call)]
            for person_id in named:
                person = self.people.get(person_id)
                if person is None:
                    raise ValueError(f"{inst_id} names {person_id!r}, who is not among the people")
                if person.institution != inst_id:
                    raise ValueError(f"{inst_id} names {person_id!r} of {person.institution}")
        for person_id, person in self.people.items():
            inst = self.institutions.get(person.institution)
            if inst is None:
                raise ValueError(f"{person_id} belongs to {person.institution!r}, which has no configuration")
            for channel in person.channels:
                if channel not in inst.channels:
                    raise ValueError(f"{person_id}: {person.institution} does not allow {channel}")
                if person.address(channel) is None:
                    raise ValueError(f"{person_id}: {channel} chosen but no {'e-mail' if channel == 'email' else 'phone'}")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def of(self, institution: str) -> InstitutionRecipients | None:
        return self.institutions.get(institution)

    @cached_property
    def _people_of(self) -> dict[str, list[tuple[str, Person]]]:
        """Each institution's people, in the configuration's order: ``members`` is asked for
        every notice, and a county's configuration names hundreds of people."""
        by_institution: dict[str, list[tuple[str, Person]]] = {}
        for pid, person in self.people.items():
            by_institution.setdefault(person.institution, []).append((pid, person))
        return by_institution

    def members(self, institution: str, *roles: Role) -> list[str]:
        return [pid for pid, p in self._people_of.get(institution, ()) if p.role in roles]

    def on_call(self, institution: str, now: datetime) -> list[str]:
        """Whoever is on call now; the supervisors when the rota has a hole."""
        inst = self.institutions.get(institution)
        if inst is None:
            return []
        found = list(dict.fromkeys(s.person for s in inst.on_call if s.covers(now)))
        return found or list(inst.supervisors)

    def check_preference(self, person_id: str, preference: Preference) -> Preference:
        """A preference as the institution allows it, or PreferenceRefused."""
        person = self.people.get(person_id)
        if person is None:
            raise PreferenceRefused("NOT_A_RECIPIENT", "Contul nu primește mesaje în afara inboxului.",
                                    "This account receives no messages outside the inbox.")
        inst = self.institutions[person.institution]
        for channel in preference.channels:
            if channel not in inst.channels:
                raise PreferenceRefused("CHANNEL_NOT_ALLOWED", f"Instituția {person.institution} nu folosește {channel}.",
                                        f"{person.institution} does not use {channel}.")
            if person.address(channel) is None:
                raise PreferenceRefused("NO_ADDRESS", f"Nu aveți o adresă pentru {channel}.",
                                        f"No {channel} address is on record for you.")
        if not preference.channels:
            raise PreferenceRefused("NO_CHANNEL", "Alegeți cel puțin un canal; inboxul arată oricum tot.",
                                    "Choose at least one channel; the inbox always shows everything.")
        return preference


def next_quiet_end(quiet: QuietHours, zone: ZoneInfo, now: datetime) -> datetime:
    """The first moment at or after ``now`` outside the quiet hours."""
    local = now.astimezone(zone)
    if not quiet.contains(local.time()):
        return now
    end = datetime.combine(local.date(), quiet.end, tzinfo=zone)
    if end <= local:
        end = datetime.combine(local.date() + timedelta(days=1), quiet.end, tzinfo=zone)
    return end


def next_digest(minutes: int, zone: ZoneInfo, now: datetime) -> datetime:
    """The next digest time: the next multiple of ``minutes`` since local midnight."""
    local = now.astimezone(zone)
    midnight = datetime.combine(local.date(), time(0), tzinfo=zone)
    elapsed = (local - midnight) // timedelta(minutes=minutes) + 1
    return midnight + elapsed * timedelta(minutes=minutes)


def county_coordinators(recipients: Recipients, county_dgaspc: Mapping[str, str], institution: str) -> list[str]:
    """The coordinators of the DGASPC of the institution's county."""
    dgaspc = county_dgaspc.get(institution)
    inst = recipients.of(dgaspc) if dgaspc else None
    return list(inst.coordinators) if inst else []
