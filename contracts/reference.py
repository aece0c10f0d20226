"""Reference data of the Punte network, loaded from ``contracts/reference/`` and ``topics.yaml``.

Plain data, read once and cached: counties, administrative units (UAT), institutions, risk
categories, triage, routing and urgency tables, the observation sheet's items, who may send
what (permissions), rejection codes, referral outcomes and deadlines, social services and
topics. Standard library and PyYAML only, so any service (or integrator) can import it.
"""
from __future__ import annotations

import csv
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONTRACTS_DIR = Path(__file__).resolve().parent
REFERENCE_DIR = CONTRACTS_DIR / "reference"
TOPICS_FILE = CONTRACTS_DIR / "topics.yaml"
INSTITUTION_PLACEHOLDER = "{institution}"
# Not a topic of events (topics.yaml): its first record is the broker's epoch, written when a
# broker is provisioned and read by every service (runtime.broker_epoch, decision 0026).
BROKER_EPOCH_TOPIC = "punte.broker-epoch"


@dataclass(frozen=True)
class County:
    """A county (județ) or Bucharest, by its code (the car-plate code, as in events.CountyCode)."""

    code: str
    name: str  # with diacritics: "Bacău", "Municipiul București"
    cnp_county_code: str  # the two county digits (JJ) of a CNP issued there: "04" for Bacău


@dataclass(frozen=True)
class Uat:
    """An administrative unit (municipality, town or commune), identified by SIRUTA."""

    siruta: int
    name: str
    kind: str
    county: str


@dataclass(frozen=True)
class Institution:
    id: str
    kind: str  # DAS, SPAS, DGASPC, DSP, ISJ, CJRAE, IPJ, PL
    name: str
    level: str  # local | county
    county: str
    siruta: int | None  # the UAT of a local institution


@dataclass(frozen=True)
class RiskCategory:
    id: str
    label_ro: str
    label_en: str
    group: str
    anpdca: bool
    crime_suspected: bool


@dataclass(frozen=True)
class RejectionCode:
    code: str
    message_ro: str
    message_en: str
    description: str


@dataclass(frozen=True)
class ReferralReason:
    """A code of referral-reasons.yaml: why a referral step was taken."""

    code: str
    label_ro: str
    label_en: str
    commands: frozenset[str]
    note_required: bool = False


@dataclass(frozen=True)
class SocialService:
    id: str
    provider_institution: str
    nomenclature_code: str | None
    name: str
    address: str
    capacity: int | None
    capacity_note: str | None
    occupancy_pct: float | None
    waiting: int | None
    beneficiaries: str
    categories: tuple[str, ...]  # risk category ids the service addresses; empty: not for children
    status: str  # existing | proposed
    source: str

    @property
    def occupancy(self) -> int | None:
        """Places taken, from capacity and occupancy_pct, when both are known."""
        if self.capacity is None or self.occupancy_pct is None:
            return None
        return round(self.capacity * self.occupancy_pct / 100)

    @property
    def accepting(self) -> bool:
        """Whether the seed lets the service take referrals: only existing services do."""
        return self.status == "existing"


def _read_csv(name: str) -> list[dict[str, str]]:
    with (REFERENCE_DIR / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _read_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a YAML mapping")
    return data


def _int_or_none(text: str) -> int | None:
    return int(text) if text.strip() else None


def _float_or_none(text: str) -> float | None:
    return float(text) if text.strip() else None


def _str_or_none(text: str) -> str | None:
    return text if text.strip() else None


# --- places and institutions ------------------------------------------------------------


@functools.cache
def counties() -> dict[str, County]:
    """The 41 counties and Bucharest, by code, in the order of counties.csv."""
    return {
        row["code"]: County(code=row["code"], name=row["name"], cnp_county_code=row["cnp_county_code"])
        for row in _read_csv("counties.csv")
    }


@functools.cache
def uats() -> dict[int, Uat]:
    """Every UAT served by the network, by SIRUTA code."""
    result: dict[int, Uat] = {}
    for row in _read_csv("uat.csv"):
        uat = Uat(siruta=int(row["siruta"]), name=row["name"], kind=row["kind"], county=row["county"])
        result[uat.siruta] = uat
    return result


@functools.cache
def institutions() -> dict[str, Institution]:
    """Every institution of the network, by id."""
    result: dict[str, Institution] = {}
    for row in _read_csv("institutions.csv"):
        institution = Institution(
            id=row["id"], kind=row["kind"], name=row["name"], level=row["level"],
            county=row["county"], siruta=_int_or_none(row["siruta"]),
        )
        if institution.id in result:
            raise ValueError(f"duplicate institution id {institution.id!r}")
        result[institution.id] = institution
    return result


@functools.cache
def _local_authorities() -> dict[int, Institution]:
    return {
        inst.siruta: inst
        for inst in institutions().values()
        if inst.kind in ("DAS", "SPAS") and inst.siruta is not None
    }


def local_authority(siruta: int) -> Institution | None:
    """The public social assistance service (DAS or SPAS) of a UAT, if the UAT is known."""
    return _local_authorities().get(siruta)


@functools.cache
def _county_institutions() -> dict[tuple[str, str], Institution]:
    return {
        (inst.kind, inst.county): inst
        for inst in institutions().values()
        if inst.level == "county"
    }


def county_institution(kind: str, county: str = "BC") -> Institution:
    """The county institution of a kind (DGASPC, DSP, ISJ, CJRAE, IPJ); KeyError if none.

    Bacău has all five; every other county (and Bucharest, as ``dgaspc-b``) has only its
    DGASPC in the network so far."""
    try:
        return _county_institutions()[(kind, county)]
    except KeyError:
        raise KeyError(f"no {kind} in county {county}") from None


# --- risk, triage, routing, urgency ------------------------------------------------------


@functools.cache
def risk_categories() -> dict[str, RiskCategory]:
    """Risk categories by id, in the order of risk-categories.yaml."""
    data = _read_yaml(REFERENCE_DIR / "risk-categories.yaml")
    return {
        item["id"]: RiskCategory(
            id=item["id"], label_ro=item["label_ro"], label_en=item["label_en"],
            group=item["group"], anpdca=bool(item["anpdca"]),
            crime_suspected=bool(item["crime_suspected"]),
        )
        for item in data["categories"]
    }


@dataclass(frozen=True)
class NeedToKnow:
    """need-to-know.yaml: the categories each institution kind sees, and those never
    named in a message to a person."""

    visible: dict[str, frozenset[str]]  # institution kind -> category ids
    protected_in_messages: frozenset[str]


@functools.cache
def need_to_know() -> NeedToKnow:
    data = _read_yaml(REFERENCE_DIR / "need-to-know.yaml")
    categories = risk_categories()

    def select(rule: dict[str, Any], where: str) -> frozenset[str]:
        groups = rule.get("groups") or []
        chosen = set(rule.get("categories") or [])
        if groups == "all":
            return frozenset(categories)
        known_groups = {c.group for c in categories.values()}
        for name in [*groups, *chosen]:
            if name not in known_groups and name not in categories:
                raise ValueError(f"need-to-know.yaml {where}: unknown group or category {name!r}")
        return frozenset(c.id for c in categories.values() if c.group in groups) | frozenset(chosen)

    kinds = {inst.kind for inst in institutions().values()}
    visible = {kind: select(rule, kind) for kind, rule in data["by_kind"].items()}
    if missing := kinds - set(visible):
        raise ValueError(f"need-to-know.yaml names no rule for {sorted(missing)}")
    return NeedToKnow(visible, select(data["protected_in_messages"], "protected_in_messages"))


@functools.cache
def triage_table() -> dict[str, Any]:
    """triage.yaml: ``immediate_danger``, ``default`` and ``categories`` (id -> urgency)."""
    return _read_yaml(REFERENCE_DIR / "triage.yaml")


@functools.cache
def routing_table() -> dict[str, Any]:
    """routing.yaml: ``precedence``, ``roles`` and ``categories`` (id -> lead, informed)."""
    return _read_yaml(REFERENCE_DIR / "routing.yaml")


@functools.cache
def urgency_levels() -> dict[str, Any]:
    """urgency.yaml ``levels``: P0..P3 -> labels, clock and ISO-8601 deadlines."""
    levels: dict[str, Any] = _read_yaml(REFERENCE_DIR / "urgency.yaml")["levels"]
    return levels


@functools.cache
def observation_sheet_items() -> dict[str, dict[str, dict[str, str]]]:
    """observation-sheet.yaml: section -> item id -> {"label_ro", "label_en"}, in file order.

    The JSON Schema of the observation sheet only says each section maps item ids to
    booleans; whether an id is in the catalogue is checked by intake against this table
    (rejection code UNKNOWN_OBSERVATION_ITEM)."""
    data = _read_yaml(REFERENCE_DIR / "observation-sheet.yaml")
    result: dict[str, dict[str, dict[str, str]]] = {}
    for section, body in data["sections"].items():
        items: dict[str, dict[str, str]] = {}
        for item in body["items"]:
            if item["id"] in items:
                raise ValueError(f"duplicate observation item {section}.{item['id']}")
            items[item["id"]] = {"label_ro": item["label_ro"], "label_en": item["label_en"]}
        result[section] = items
    return result


@functools.cache
def observation_sections() -> dict[str, dict[str, str]]:
    """observation-sheet.yaml: section -> {"label_ro", "label_en"}."""
    data = _read_yaml(REFERENCE_DIR / "observation-sheet.yaml")
    return {
        section: {"label_ro": body["label_ro"], "label_en": body["label_en"]}
        for section, body in data["sections"].items()
    }


@functools.cache
def permissions() -> dict[str, frozenset[str]]:
    """permissions.yaml: ingress event type -> the institution kinds that may send it."""
    data = _read_yaml(REFERENCE_DIR / "permissions.yaml")
    return {event_type: frozenset(kinds) for event_type, kinds in data["event_types"].items()}


def may_send(institution_id: str, event_type: str) -> bool:
    """Whether an institution may send an event type on its ingress topic; False for an
    unknown institution or event type."""
    institution = institutions().get(institution_id)
    if institution is None:
        return False
    return institution.kind in permissions().get(event_type, frozenset())


@functools.cache
def rejection_codes() -> dict[str, RejectionCode]:
    data = _read_yaml(REFERENCE_DIR / "rejection-codes.yaml")
    return {
        item["code"]: RejectionCode(
            code=item["code"], message_ro=item["message_ro"],
            message_en=item["message_en"], description=item["description"],
        )
        for item in data["codes"]
    }


@functools.cache
def referral_outcomes() -> dict[str, dict[str, str]]:
    """referral-outcomes.yaml: outcome code -> {"label_ro", "label_en", "group"}, in file order.

    The codes a referral is completed with (command "complete", OUTCOME_REQUIRED otherwise)
    and that feedback to the referrer and statistics use."""
    data = _read_yaml(REFERENCE_DIR / "referral-outcomes.yaml")
    result: dict[str, dict[str, str]] = {}
    for item in data["outcomes"]:
        if item["code"] in result:
            raise ValueError(f"duplicate outcome code {item['code']!r}")
        result[item["code"]] = {"label_ro": item["label_ro"], "label_en": item["label_en"],
                                "group": item["group"]}
    return result


def case_closure_reasons() -> dict[str, dict[str, str]]:
    """case-closure-reasons.yaml: reason code -> {"label_ro", "label_en"}, in file order;
    the only reasons a case's lead may close a case with."""
    data = _read_yaml(REFERENCE_DIR / "case-closure-reasons.yaml")
    result: dict[str, dict[str, str]] = {}
    for item in data["reasons"]:
        if item["code"] in result:
            raise ValueError(f"duplicate case closure reason {item['code']!r}")
        result[item["code"]] = {"label_ro": item["label_ro"], "label_en": item["label_en"]}
    return result


REFERRAL_DEADLINES_FILE = REFERENCE_DIR / "referral-deadlines.yaml"
REFERRAL_STEPS = ("acknowledge", "decide", "first_contact", "outcome", "return_after")


@functools.cache
def referral_reasons() -> dict[str, ReferralReason]:
    """referral-reasons.yaml: reason code -> ReferralReason, in file order. The only
    reasons a referral command may give (UNKNOWN_REASON otherwise)."""
    data = _read_yaml(REFERENCE_DIR / "referral-reasons.yaml")
    result: dict[str, ReferralReason] = {}
    for item in data["reasons"]:
        if item["code"] in result:
            raise ValueError(f"duplicate reason code {item['code']!r}")
        result[item["code"]] = ReferralReason(item["code"], item["label_ro"], item["label_en"],
                                              frozenset(item["commands"]), bool(item.get("note_required", False)))
    return result


@functools.cache
def _default_referral_deadlines() -> dict[str, Any]:
    return _read_yaml(REFERRAL_DEADLINES_FILE)


def referral_deadlines(path: Path | None = None) -> dict[str, Any]:
    """referral-deadlines.yaml: ``version``, ``levels`` (P0..P3 -> clock, ISO-8601 durations
    for acknowledge, decide, first_contact, outcome, return_after, escalate_to_coordinator,
    note) and ``information_request`` (clock, decide, outcome, note).

    With ``path``, reads that file instead (a test or the e2e may use a faster table); only
    the default table is cached. Callers must not mutate the result."""
    if path is None:
        return _default_referral_deadlines()
    return _read_yaml(Path(path))


@functools.cache
def social_services() -> list[SocialService]:
    """Social services named in the Bacău sources (existing and proposed): the seed of the
    referral service's directory, which providers then keep current (service.updated)."""
    return [
        SocialService(
            id=row["id"], provider_institution=row["provider_institution"],
            nomenclature_code=_str_or_none(row["nomenclature_code"]), name=row["name"],
            address=row["address"], capacity=_int_or_none(row["capacity"]),
            capacity_note=_str_or_none(row["capacity_note"]),
            occupancy_pct=_float_or_none(row["occupancy_pct"]),
            waiting=_int_or_none(row["waiting"]), beneficiaries=row["beneficiaries"],
            categories=tuple(row["categories"].split()), status=row["status"], source=row["source"],
        )
        for row in _read_csv("services.csv")
    ]


# --- topics ----------------------------------------------------------------------------


@functools.cache
def topics() -> list[dict[str, Any]]:
    """The ``topics`` of contracts/topics.yaml; names may hold ``{institution}``."""
    return list(_read_yaml(TOPICS_FILE)["topics"])


def _template(kind: str) -> str:
    for topic in topics():
        if topic["kind"] == kind:
            return str(topic["name"])
    raise KeyError(f"no {kind} topic in topics.yaml")


def topic_partitions(institution_ids: Iterable[str]) -> list[tuple[str, int]]:
    """Every concrete topic with its partition count: per-institution templates expanded
    for each id given."""
    ids = list(institution_ids)
    plan: list[tuple[str, int]] = []
    for topic in topics():
        name, partitions = str(topic["name"]), int(topic.get("partitions", 1))
        if INSTITUTION_PLACEHOLDER in name:
            plan.extend((name.replace(INSTITUTION_PLACEHOLDER, inst_id), partitions) for inst_id in ids)
        else:
            plan.append((name, partitions))
    return plan


def topic_names(institution_ids: Iterable[str]) -> list[str]:
    """Every concrete topic name: per-institution templates expanded for each id given."""
    return [name for name, _ in topic_partitions(institution_ids)]


def ingress_topic(inst_id: str) -> str:
    """The topic an institution writes to (only it)."""
    return _template("ingress").replace(INSTITUTION_PLACEHOLDER, inst_id)


def delivery_topic(inst_id: str) -> str:
    """The topic an institution reads from (only it)."""
    return _template("delivery").replace(INSTITUTION_PLACEHOLDER, inst_id)


def gateway_topic() -> str:
    """The topic intake's HTTP gateway writes the reports it takes to (only intake)."""
    return _template("gateway")


# The institution intake's HTTP gateway authenticated, on the gateway topic's messages.
SENDER_HEADER = "punte_sender"


def from_an_institution(topic: str) -> bool:
    """Whether ``topic`` carries what institutions sent, signed by them rather than by the
    network: an ingress topic (known institution or not) or the gateway topic."""
    return named_in_topic(topic, "ingress") is not None or topic == gateway_topic()


def declared_configs(topic: str) -> dict[str, str]:
    """The topic settings contracts/topics.yaml declares for a concrete topic (``configs``),
    none when it declares none or does not know the topic."""
    for declared in topics():
        template, kind = str(declared["name"]), str(declared["kind"])
        named = named_in_topic(topic, kind) is not None if INSTITUTION_PLACEHOLDER in template else topic == template
        if named:
            return {str(k): str(v) for k, v in (declared.get("configs") or {}).items()}
    return {}


def kept_briefly(topic: str) -> bool:
    """Whether ``topic`` keeps its messages only retention.yaml's ``ingress_days``: those
    institutions sent, so a report in clear from the transition does not linger there."""
    return from_an_institution(topic)


def named_in_topic(topic: str, kind: str) -> str | None:
    """The ``{institution}`` part of a per-institution topic of ``kind`` ("ingress",
    "delivery"), whether or not an institution of that id is known; None for other topics."""
    prefix, _, suffix = _template(kind).partition(INSTITUTION_PLACEHOLDER)
    if len(topic) > len(prefix) + len(suffix) and topic.startswith(prefix) and topic.endswith(suffix):
        return topic[len(prefix): len(topic) - len(suffix)]
    return None


def owner_of_ingress_topic(topic: str) -> str | None:
    """The id of the institution whose ingress topic this is, or None (not an ingress topic,
    or no known institution owns it)."""
    inst_id = named_in_topic(topic, "ingress")
    return inst_id if inst_id in institutions() else None


# --- retention ---------------------------------------------------------------------------

RETENTION_FILE = REFERENCE_DIR / "retention.yaml"


@dataclass(frozen=True)
class RetentionRule:
    """How long one kind of record is kept (retention.yaml), and from which event."""

    id: str
    record: str
    starts: str  # the event the period runs from ("case-closed", "published", ...)
    days: int
    status: str  # law | policy | verify
    basis: str


@dataclass(frozen=True)
class RetentionSchedule:
    rules: dict[str, RetentionRule]
    ingress_days: int

    def rule(self, rule_id: str) -> RetentionRule:
        """A rule by id; a KeyError names it (a service asking for a rule the schedule does
        not have must not start, rather than keep a record for ever)."""
        return self.rules[rule_id]


def retention(path: Path | None = None) -> RetentionSchedule:
    """retention.yaml (or ``path``, a test's or an operator's copy): the schedule every
    service's purge job follows. Refuses a rule without a period or with an unknown status."""
    data = _read_yaml(Path(path) if path is not None else RETENTION_FILE)
    rules: dict[str, RetentionRule] = {}
    for item in data["rules"]:
        if item["id"] in rules:
            raise ValueError(f"duplicate retention rule {item['id']!r}")
        if item["status"] not in ("law", "policy", "verify"):
            raise ValueError(f"retention rule {item['id']!r}: unknown status {item['status']!r}")
        days = int(item["days"])
        if days < 0:
            raise ValueError(f"retention rule {item['id']!r}: a negative period")
        rules[item["id"]] = RetentionRule(id=item["id"], record=" ".join(item["record"].split()),
                                          starts=item["from"], days=days, status=item["status"],
                                          basis=" ".join(item["basis"].split()))
    return RetentionSchedule(rules=rules, ingress_days=int(data["ingress_days"]))
