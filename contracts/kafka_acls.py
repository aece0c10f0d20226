"""Who may do what on Apache Kafka, derived from contracts/topics.yaml and the institutions
(decision 0027): the topics to create, one principal per institution and per service, and
the ACL bindings between them. Pure: `punte kafka apply` (punte.kafka_admin) applies it,
`punte kafka acls` prints it, docs/kafka-acls.md shows it.

- An institution (SCRAM user = its id) writes its own ingress topic, reads its own delivery
  topic and whatever else topics.yaml names ``{institution}`` a consumer of (the audit
  checkpoints), and uses consumer groups named ``<id>.<anything>``. Nothing else.
- A service (SCRAM user ``punte-<service>``) reads exactly the topics it consumes, writes
  exactly those it produces, and uses its own consumer groups, ``punte-<service>…``.
- Everything is an ALLOW on a named resource; the brokers run with
  ``allow.everyone.if.no.acl.found=false``, so whatever is not listed is denied.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from contracts.reference import BROKER_EPOCH_TOPIC, INSTITUTION_PLACEHOLDER, kept_briefly, topics

REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
DAY_MS = 24 * 3600 * 1000
SERVICE_USER_PREFIX = "punte-"
# The cluster's super user (brokers, `punte kafka apply`); never a network principal.
ADMIN_USER = "admin"

READ, WRITE = "READ", "WRITE"
TOPIC, GROUP = "TOPIC", "GROUP"
LITERAL, PREFIXED = "LITERAL", "PREFIXED"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    kind: str  # topics.yaml's kind: ingress, delivery, internal, dead-letter
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, order=True)
class Principal:
    user: str  # the SCRAM user name; the Kafka principal is User:<user>
    kind: str  # institution or service

    @property
    def principal(self) -> str:
        return f"User:{self.user}"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW binding: ``user`` may ``operation`` the ``resource`` named ``name``
    (exactly, or every name starting with it when ``pattern`` is PREFIXED), from any host."""

    user: str
    resource: str
    pattern: str
    name: str
    operation: str

    @property
    def principal(self) -> str:
        return f"User:{self.user}"


def service_user(service: str) -> str:
    return f"{SERVICE_USER_PREFIX}{service}"


def institution_user(institution_id: str) -> str:
    return institution_id


def institution_group_prefix(institution_id: str) -> str:
    """An institution's consumer groups are named ``<id>.<anything>``."""
    return f"{institution_id}."


def service_group_prefix(service: str) -> str:
    """The services' consumer groups are named ``punte-<service>`` or ``punte-<service>-…``."""
    return service_user(service)


def services() -> list[str]:
    """Every service topics.yaml names as a producer or consumer."""
    named = {who for topic in topics() for who in (*topic["producers"], *topic["consumers"])}
    return sorted(named - {INSTITUTION_PLACEHOLDER})


def principals(institution_ids: Iterable[str]) -> list[Principal]:
    ids = sorted(institution_ids)
    taken = {ADMIN_USER, *(service_user(s) for s in services())}
    clashes = [i for i in ids if i in taken or i.startswith(SERVICE_USER_PREFIX)]
    if clashes:
        raise ValueError(f"institution ids that would share a Kafka principal with a service or the "
                         f"admin: {clashes}")
    return ([Principal(institution_user(i), "institution") for i in ids]
            + [Principal(service_user(s), "service") for s in services()])


def topic_specs(institution_ids: Iterable[str], ingress_days: int) -> list[TopicSpec]:
    """Every concrete topic: its partitions, replication factor 3, min.insync.replicas 2,
    and for ingress topics retention.yaml's ``ingress_days`` (as runtime.kafka.topic_configs)."""
    ids = sorted(institution_ids)
    specs: list[TopicSpec] = []
    for topic in topics():
        template, kind = str(topic["name"]), str(topic["kind"])
        configs = {"min.insync.replicas": str(MIN_INSYNC_REPLICAS),
                   **{str(k): str(v) for k, v in (topic.get("configs") or {}).items()}}
        if kept_briefly(template):  # as runtime.kafka.topic_configs
            configs["retention.ms"] = str(ingress_days * DAY_MS)
        names = ([template.replace(INSTITUTION_PLACEHOLDER, i) for i in ids]
                 if INSTITUTION_PLACEHOLDER in template else [template])
        specs.extend(TopicSpec(n, kind, int(topic.get("partitions", 1)), REPLICATION_FACTOR, dict(configs))
                     for n in names)
    # The broker's epoch marker, kept for ever (decision 0026); the admin writes it.
    specs.append(TopicSpec(BROKER_EPOCH_TOPIC, "internal", 1, REPLICATION_FACTOR,
                           {"min.insync.replicas": str(MIN_INSYNC_REPLICAS), "retention.ms": "-1"}))
    return specs


def grants(institution_ids: Iterable[str]) -> list[Grant]:
    """Every ACL binding of the network, sorted, each once."""
    return list(_grants(tuple(sorted(institution_ids))))


@functools.cache
def _grants(ids: tuple[str, ...]) -> tuple[Grant, ...]:
    out: set[Grant] = set()
    for topic in topics():
        template = str(topic["name"])
        per_institution = INSTITUTION_PLACEHOLDER in template
        for inst in ids if per_institution else [None]:
            name = template.replace(INSTITUTION_PLACEHOLDER, inst) if inst else template
            for operation, parties in ((WRITE, topic["producers"]), (READ, topic["consumers"])):
                for party in parties:
                    if party != INSTITUTION_PLACEHOLDER:
                        users = [service_user(party)]
                    elif per_institution:  # that topic's own institution
                        users = [institution_user(str(inst))]
                    else:  # a shared topic every institution takes part in
                        users = [institution_user(i) for i in ids]
                    out.update(Grant(u, TOPIC, LITERAL, name, operation) for u in users)
    # Every service reads the broker's epoch; only the admin writes it (decision 0026).
    out.update(Grant(service_user(s), TOPIC, LITERAL, BROKER_EPOCH_TOPIC, READ) for s in services())
    out.update(Grant(institution_user(i), GROUP, PREFIXED, institution_group_prefix(i), READ) for i in ids)
    out.update(Grant(service_user(s), GROUP, PREFIXED, service_group_prefix(s), READ) for s in services())
    return tuple(sorted(out))


def grants_of(user: str, institution_ids: Iterable[str]) -> list[Grant]:
    return [g for g in grants(institution_ids) if g.user == user]


# --- the table (docs/kafka-acls.md, `punte kafka acls`) ------------------------------------

TABLE_BEGIN = "<!-- generated by `punte kafka acls --markdown`: do not edit -->"
TABLE_END = "<!-- end of generated table -->"


def table_rows() -> list[tuple[str, str, str, str]]:
    """(principal, writes, reads, consumer groups) with ``{institution}`` standing for each
    institution: the shape of the bindings, whatever the institutions are."""
    placeholder = INSTITUTION_PLACEHOLDER
    every = grants([placeholder])
    rows = []
    for principal in [Principal(institution_user(placeholder), "institution"),
                      *[Principal(service_user(s), "service") for s in services()]]:
        mine = [g for g in every if g.user == principal.user]

        def names(resource: str, operation: str, mine: list[Grant] = mine) -> str:
            return ", ".join(f"`{g.name}{'*' if g.pattern == PREFIXED else ''}`" for g in mine
                             if g.resource == resource and g.operation == operation) or "—"

        rows.append((f"`User:{principal.user}`", names(TOPIC, WRITE), names(TOPIC, READ), names(GROUP, READ)))
    return rows


def markdown_table() -> str:
    lines = [TABLE_BEGIN, "", "| principal | writes (topics) | reads (topics) | consumer groups |",
             "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in table_rows()]
    return "\n".join([*lines, "", TABLE_END])
