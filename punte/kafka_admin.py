"""`punte kafka apply`: the declaration of contracts.kafka_acls made true on a running Apache
Kafka cluster, idempotently: missing topics created (existing ones get the declared
configuration), a SCRAM-SHA-512 credential for every principal that has none, every
declared ACL binding, and the bindings of our principals that are no longer declared
removed. With confluent-kafka's admin client: aiokafka's has neither ACLs nor SCRAM
credentials (decision 0027)."""
from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from contracts.kafka_acls import Grant, Principal, TopicSpec

SCRAM_ITERATIONS = 8192
TIMEOUT = 60.0


@dataclass
class Applied:
    """What one run changed: empty lists the second time."""

    topics_created: list[str] = field(default_factory=list)
    topics_configured: list[str] = field(default_factory=list)
    users_created: list[str] = field(default_factory=list)
    acls_created: int = 0
    acls_deleted: int = 0
    warnings: list[str] = field(default_factory=list)

    def changed(self) -> bool:
        return bool(self.topics_created or self.topics_configured or self.users_created
                    or self.acls_created or self.acls_deleted)


def load_credentials(path: Path) -> dict[str, str]:
    return json.loads(path.read_text()) if path.exists() else {}


def save_credentials(path: Path, credentials: dict[str, str]) -> None:
    """The principals' passwords, readable by the owner only (each service gets its own)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(credentials, out, indent=1, sort_keys=True)
    tmp.replace(path)


def _binding(grant: Grant) -> AclBinding:
    return AclBinding(ResourceType[grant.resource], grant.name, ResourcePatternType[grant.pattern],
                      grant.principal, "*", AclOperation[grant.operation], AclPermissionType.ALLOW)


def _as_grant(binding: AclBinding) -> Grant | None:
    """A binding as the declaration would write it, or None when it is of another shape
    (a DENY, a host, an operation the declaration never grants)."""
    if (binding.permission_type != AclPermissionType.ALLOW or binding.host != "*"
            or not binding.principal.startswith("User:")):
        return None
    return Grant(binding.principal.removeprefix("User:"), binding.restype.name, binding.resource_pattern_type.name,
                 binding.name, binding.operation.name)


def _wait(futures: dict[Any, Any]) -> None:
    for future in futures.values():
        future.result(timeout=TIMEOUT)


def apply(config: dict[str, str], topics: Iterable[TopicSpec], principals: Iterable[Principal],
          grants: Iterable[Grant], credentials: dict[str, str]) -> Applied:
    """Make the cluster at ``config`` (librdkafka settings of a super user) hold the
    declaration. ``credentials`` (user -> password) is completed with a new password for
    every principal without one; the caller saves it."""
    admin = AdminClient({**config, "log_level": 0})
    done = Applied()
    _apply_topics(admin, list(topics), done)
    _apply_users(admin, list(principals), credentials, done)
    _apply_acls(admin, list(principals), list(grants), done)
    return done


def _apply_topics(admin: AdminClient, topics: list[TopicSpec], done: Applied) -> None:
    existing = admin.list_topics(timeout=TIMEOUT).topics
    missing = [t for t in topics if t.name not in existing]
    if missing:
        futures = admin.create_topics([NewTopic(t.name, t.partitions, t.replication_factor, config=dict(t.configs))
                                       for t in missing], request_timeout=TIMEOUT)
        for name, future in futures.items():
            try:
                future.result(timeout=TIMEOUT)
                done.topics_created.append(name)
            except KafkaException as exc:  # created meanwhile by someone else: fine
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    present = [t for t in topics if t.name in existing]
    if not present:
        return
    # An existing topic: the declared configuration set where it differs; its partitions
    # and replicas are reported, not changed (a reassignment is an operator's decision).
    resources = [ConfigResource(ResourceType.TOPIC, t.name) for t in present]
    described = admin.describe_configs(resources, request_timeout=TIMEOUT)
    changes = []
    for spec, resource in zip(present, resources, strict=True):
        current = described[resource].result(timeout=TIMEOUT)
        wrong = {k: v for k, v in spec.configs.items() if current.get(k) is None or current[k].value != v}
        if wrong:
            changes.append((spec.name, ConfigResource(
                ResourceType.TOPIC, spec.name, incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in wrong.items()])))
        metadata = existing[spec.name]
        replicas = {len(p.replicas) for p in metadata.partitions.values()}
        if len(metadata.partitions) != spec.partitions or replicas != {spec.replication_factor}:
            done.warnings.append(f"{spec.name}: {len(metadata.partitions)} partitions × {sorted(replicas)} replicas, "
                                 f"declared {spec.partitions} × {spec.replication_factor}; not changed")
    if changes:
        _wait(admin.incremental_alter_configs([r for _, r in changes], request_timeout=TIMEOUT))
        done.topics_configured += [name for name, _ in changes]


def _users_with_scram(admin: AdminClient) -> set[str]:
    described = admin.describe_user_scram_credentials(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    return {user for user, description in described.items()
            if any(info.mechanism == ScramMechanism.SCRAM_SHA_512 for info in description.scram_credential_infos)}


def _until_visible(look: Callable[[], set[Any]], wanted: set[Any], what: str) -> None:
    """Until a broker answers with all of ``wanted``: each broker applies the controllers'
    metadata on its own, and a principal that connects to one that has not yet would be
    refused (seen under load: a second apply right after the first saw none of the users)."""
    deadline = time.monotonic() + TIMEOUT
    while not wanted <= look():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not visible after {TIMEOUT:.0f} s")
        time.sleep(0.5)


def _apply_users(admin: AdminClient, principals: list[Principal], credentials: dict[str, str],
                 done: Applied) -> None:
    with_scram = _users_with_scram(admin)
    upserts = []
    for principal in principals:
        if principal.user in with_scram:
            if principal.user not in credentials:
                done.warnings.append(f"{principal.user}: has a credential on the cluster that is not in the "
                                     f"credentials file; kept")
            continue
        password = credentials.setdefault(principal.user, secrets.token_urlsafe(24))
        upserts.append(UserScramCredentialUpsertion(
            principal.user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS), password.encode()))
    if upserts:
        _wait(admin.alter_user_scram_credentials(upserts, request_timeout=TIMEOUT))
        done.users_created += [u.user for u in upserts]
        _until_visible(lambda: _users_with_scram(admin), set(done.users_created), "SCRAM credentials")


def _apply_acls(admin: AdminClient, principals: list[Principal], grants: list[Grant], done: Applied) -> None:
    ours = {p.user for p in principals}
    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    def describe() -> list[AclBinding]:
        return list(admin.describe_acls(every, request_timeout=TIMEOUT).result(timeout=TIMEOUT))

    present = describe()
    declared = set(grants)
    have = {g for g in map(_as_grant, present) if g is not None}
    create = sorted(declared - have)
    # Ours but no longer declared (a consumer dropped from topics.yaml, an institution
    # removed): deleted, each by an exact filter. Other principals' bindings are left alone.
    stale = [b for b in present if b.principal.removeprefix("User:") in ours and _as_grant(b) not in declared]
    if create:
        _wait(admin.create_acls([_binding(g) for g in create], request_timeout=TIMEOUT))
        done.acls_created = len(create)
        _until_visible(lambda: {_as_grant(b) for b in describe()}, set(create), "ACL bindings")
    if stale:
        filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host,
                                    b.operation, b.permission_type) for b in stale]
        _wait(admin.delete_acls(filters, request_timeout=TIMEOUT))
        done.acls_deleted = len(stale)


def apply_network(config: dict[str, str], credentials_file: Path, retention_file: Path | None = None) -> Applied:
    """The whole network's declaration (topics.yaml, institutions.csv, retention.yaml), with
    the principals' passwords kept in ``credentials_file`` (new ones added, mode 0600)."""
    from contracts import kafka_acls
    from contracts.reference import institutions, retention

    ids = sorted(institutions())
    credentials = load_credentials(credentials_file)
    try:
        return apply(config, kafka_acls.topic_specs(ids, retention(retention_file).ingress_days),
                     kafka_acls.principals(ids), kafka_acls.grants(ids), credentials)
    finally:  # passwords already set on the cluster must not be lost with a later failure
        save_credentials(credentials_file, credentials)
