"""Every manifest in deploy/ validates (issue #13, decision 0028): the Kubernetes core resources
against Kubernetes' own schemas (the kubernetes-validate package, strict: an unknown field is
an error), the Strimzi resources against the openAPIV3Schema of Strimzi's published CRDs
(vendored in deploy/schemas/strimzi-<version>/, unknown fields refused as `kubectl apply
--validate=strict` would), and compose.yaml against the compose specification's JSON schema
(vendored in deploy/schemas/compose-spec/). Each check is shown to refuse a broken manifest."""
from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SCHEMAS = DEPLOY / "schemas"
STRIMZI_CRDS = SCHEMAS / "strimzi-1.2.0"
COMPOSE_SCHEMA = SCHEMAS / "compose-spec" / "compose-spec.json"
# The Kubernetes version the manifests are written for (the newest kubernetes-validate knows).
KUBERNETES_VERSION = "1.37"


def documents() -> list[tuple[str, int, dict[str, Any]]]:
    found = []
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                found.append((str(path.relative_to(DEPLOY)), i, doc))
    return found


def is_strimzi(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith("kafka.strimzi.io/")


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused: the API server prunes them silently, which
    would hide a misspelt field; `kubectl apply --validate=strict` refuses them."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def strimzi_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators = {}
    for path in sorted(STRIMZI_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version["served"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                # OpenAPI v3 schemas are JSON Schema draft 4 with extensions (x-kubernetes-*).
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft4Validator(schema)
    return validators


def strimzi_errors(doc: dict[str, Any]) -> list[str]:
    validator = strimzi_validators().get((doc["apiVersion"], doc["kind"]))
    if validator is None:
        return [f"no served CRD for {doc['apiVersion']} {doc['kind']}"]
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def kubernetes_errors(doc: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
        return [getattr(e, "message", str(e))]
    return []


@cache
def compose_validator() -> jsonschema.protocols.Validator:
    import json

    return jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))


def compose_errors(doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in compose_validator().iter_errors(doc)]


def test_the_manifests_cover_the_four_services_the_cluster_and_the_generated_resources():
    kinds = {(path, doc["kind"]) for path, _, doc in documents()}
    assert {("kubernetes/intake.yaml", "Deployment"), ("kubernetes/referral.yaml", "Deployment"),
            ("kubernetes/notification.yaml", "Deployment"), ("kubernetes/audit.yaml", "Deployment"),
            ("kubernetes/kafka-cluster.yaml", "Kafka"), ("kubernetes/kafka-cluster.yaml", "KafkaNodePool"),
            ("kubernetes/kafka-bootstrap-job.yaml", "Job"), ("kubernetes/strimzi/topics.yaml", "KafkaTopic"),
            ("kubernetes/strimzi/users.yaml", "KafkaUser")} <= kinds


def test_every_kubernetes_core_resource_validates():
    errors = {f"{path}#{i}": kubernetes_errors(doc) for path, i, doc in documents() if not is_strimzi(doc)}
    assert {k: v for k, v in errors.items() if v} == {}


def test_every_strimzi_resource_validates_against_its_crd():
    errors = {f"{path}#{i}": strimzi_errors(doc) for path, i, doc in documents() if is_strimzi(doc)}
    assert {k: v for k, v in errors.items() if v} == {}


def test_compose_validates_against_the_compose_specification():
    assert compose_errors(yaml.safe_load((DEPLOY / "compose.yaml").read_text())) == []


def _first(kind: str) -> dict[str, Any]:
    """The first resource of ``kind`` (a KafkaUser with ACL rules: not the admin)."""
    return copy.deepcopy(next(doc for _, _, doc in documents() if doc["kind"] == kind
                              and (kind != "KafkaUser" or "authorization" in doc["spec"])))


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("break_it", [
    lambda d: _container(d).update(readinesProbe=_container(d)["readinessProbe"]),  # a misspelt field
    lambda d: d["spec"].update(replicas="two"),
    lambda d: _container(d)["env"].append({"name": "PUNTE_KAFKA_PASSWORD", "valueFrom": {"secretRef": "x"}}),
], ids=["unknown-field", "wrong-type", "wrong-shape"])
def test_a_broken_deployment_is_refused(break_it):
    deployment = _first("Deployment")
    assert kubernetes_errors(deployment) == []
    break_it(deployment)
    assert kubernetes_errors(deployment) != []


@pytest.mark.parametrize(("kind", "break_it"), [
    ("KafkaUser", lambda d: d["spec"]["authorization"]["acls"][0].update(operations=["Reed"])),
    ("KafkaUser", lambda d: d["spec"]["authorization"]["acls"][0]["resource"].update(patternType="prefixed")),
    ("KafkaUser", lambda d: d["spec"].update(authentication={"type": "scram-sha-256"})),
    ("KafkaTopic", lambda d: d["spec"].update(partitions="three")),
    ("KafkaTopic", lambda d: d["spec"].update(replica=3)),  # misspelt
    ("Kafka", lambda d: d["spec"]["kafka"]["listeners"][0].pop("tls")),
    ("KafkaNodePool", lambda d: d["spec"].update(roles=["leader"])),
], ids=["operation", "pattern", "mechanism", "partitions-type", "unknown-field", "listener-tls", "role"])
def test_a_broken_strimzi_resource_is_refused(kind, break_it):
    doc = _first(kind)
    assert strimzi_errors(doc) == []
    break_it(doc)
    assert strimzi_errors(doc) != []


def test_a_resource_of_an_api_version_strimzi_no_longer_serves_is_refused():
    topic = _first("KafkaTopic")
    topic["apiVersion"] = "kafka.strimzi.io/v1beta2"  # removed in Strimzi 1.0
    assert strimzi_errors(topic) != []


@pytest.mark.parametrize("break_it", [
    lambda c: c["services"]["postgres"].update(restrat="always"),
    lambda c: c["services"]["intake"].update(depends_on={"kafka-setup": {"condition": "finished"}}),
    lambda c: c.update(volumes=["pgdata"]),
], ids=["unknown-field", "depends-on-condition", "volumes-shape"])
def test_a_broken_compose_file_is_refused(break_it):
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    break_it(compose)
    assert compose_errors(compose) != []
