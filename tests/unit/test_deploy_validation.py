"""Every manifest in deploy/ validates (issue #13, decisions 0028, 0029): the Kubernetes core
resources against Kubernetes' own schemas (the kubernetes-validate package, strict: an unknown
field is an error), the Strimzi and CloudNativePG resources against the openAPIV3Schema of the
operators' published CRDs (vendored in deploy/schemas/strimzi-<version>/ and
cloudnative-pg-<version>/, unknown fields refused as `kubectl apply --validate=strict` would),
and compose.yaml against the compose specification's JSON schema (vendored in
deploy/schemas/compose-spec/). Each check is shown to refuse a broken manifest. Then what
the manifests must say for each service of punte.stack.SERVICES: its Deployment runs
non-root on a read-only root with a writable state volume, and has its Service,
PodDisruptionBudget, HorizontalPodAutoscaler, NetworkPolicy, role and database, and a
container in the migrations Job."""
from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from sqlalchemy.engine import make_url

from punte.stack import SERVICES
from runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SCHEMAS = DEPLOY / "schemas"
STRIMZI_CRDS = SCHEMAS / "strimzi-1.2.0"
CLOUDNATIVE_PG_CRDS = SCHEMAS / "cloudnative-pg-1.30.0"
COMPOSE_SCHEMA = SCHEMAS / "compose-spec" / "compose-spec.json"
# The Kubernetes version the manifests are written for (the newest kubernetes-validate knows).
KUBERNETES_VERSION = "1.37"


@cache
def documents() -> tuple[tuple[str, int, dict[str, Any]], ...]:
    """Every resource under deploy/kubernetes/ (parsed once: read them, copy to change one)."""
    found = []
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                found.append((str(path.relative_to(DEPLOY)), i, doc))
    return tuple(found)


# The API groups whose resources are checked against vendored CRDs, not kubernetes-validate.
OPERATOR_GROUPS = ("kafka.strimzi.io/", "postgresql.cnpg.io/")


def is_custom(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith(OPERATOR_GROUPS)


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
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators = {}
    for path in sorted([*STRIMZI_CRDS.glob("*.yaml"), *CLOUDNATIVE_PG_CRDS.glob("*.yaml")]):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version["served"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                # OpenAPI v3 schemas are JSON Schema draft 4 with extensions (x-kubernetes-*).
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft4Validator(schema)
    return validators


def crd_errors(doc: dict[str, Any]) -> list[str]:
    validator = crd_validators().get((doc["apiVersion"], doc["kind"]))
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
            ("kubernetes/strimzi/users.yaml", "KafkaUser"), ("kubernetes/postgres.yaml", "Cluster"),
            ("kubernetes/postgres.yaml", "Database"), ("kubernetes/migrate-job.yaml", "Job"),
            ("kubernetes/network-policies.yaml", "NetworkPolicy")} <= kinds


def test_every_kubernetes_core_resource_validates():
    errors = {f"{path}#{i}": kubernetes_errors(doc) for path, i, doc in documents() if not is_custom(doc)}
    assert {k: v for k, v in errors.items() if v} == {}


def test_every_strimzi_and_cloudnative_pg_resource_validates_against_its_crd():
    errors = {f"{path}#{i}": crd_errors(doc) for path, i, doc in documents() if is_custom(doc)}
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
    ("NetworkPolicy", lambda d: d["spec"].update(policyType=["Egress"])),  # misspelt
    ("NetworkPolicy", lambda d: d["spec"]["podSelector"].update(matchLabel={"app": "punte"})),
    ("HorizontalPodAutoscaler", lambda d: d["spec"].update(targetCPUUtilizationPercentage=70)),  # autoscaling/v1's
    ("PodDisruptionBudget", lambda d: d["spec"].update(minAvailable=[1])),
    ("Service", lambda d: d["spec"]["ports"][0].update(port="http")),
], ids=["policy-types", "selector", "hpa-v1-field", "pdb-shape", "service-port"])
def test_a_broken_core_resource_is_refused(kind, break_it):
    doc = _first(kind)
    assert kubernetes_errors(doc) == []
    break_it(doc)
    assert kubernetes_errors(doc) != []


@pytest.mark.parametrize(("kind", "break_it"), [
    ("KafkaUser", lambda d: d["spec"]["authorization"]["acls"][0].update(operations=["Reed"])),
    ("KafkaUser", lambda d: d["spec"]["authorization"]["acls"][0]["resource"].update(patternType="prefixed")),
    ("KafkaUser", lambda d: d["spec"].update(authentication={"type": "scram-sha-256"})),
    ("KafkaTopic", lambda d: d["spec"].update(partitions="three")),
    ("KafkaTopic", lambda d: d["spec"].update(replica=3)),  # misspelt
    ("Kafka", lambda d: d["spec"]["kafka"]["listeners"][0].pop("tls")),
    ("KafkaNodePool", lambda d: d["spec"].update(roles=["leader"])),
    ("Cluster", lambda d: d["spec"].update(instances="three")),
    ("Cluster", lambda d: d["spec"]["managed"]["roles"][0].update(passwordSecrets={"name": "x"})),  # misspelt
    ("Cluster", lambda d: d["spec"]["postgresql"]["synchronous"].update(method="all")),
    ("Database", lambda d: d["spec"].pop("owner")),
    ("Database", lambda d: d["spec"].update(databaseReclaimPolicy="keep")),
], ids=["operation", "pattern", "mechanism", "partitions-type", "unknown-field", "listener-tls", "role",
        "instances-type", "role-unknown-field", "synchronous-method", "database-owner", "reclaim-policy"])
def test_a_broken_operator_resource_is_refused(kind, break_it):
    doc = _first(kind)
    assert crd_errors(doc) == []
    break_it(doc)
    assert crd_errors(doc) != []


def test_a_resource_of_an_api_version_strimzi_no_longer_serves_is_refused():
    topic = _first("KafkaTopic")
    topic["apiVersion"] = "kafka.strimzi.io/v1beta2"  # removed in Strimzi 1.0
    assert crd_errors(topic) != []


@pytest.mark.parametrize("break_it", [
    lambda c: c["services"]["postgres"].update(restrat="always"),
    lambda c: c["services"]["intake"].update(depends_on={"kafka-setup": {"condition": "finished"}}),
    lambda c: c.update(volumes=["pgdata"]),
], ids=["unknown-field", "depends-on-condition", "volumes-shape"])
def test_a_broken_compose_file_is_refused(break_it):
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    break_it(compose)
    assert compose_errors(compose) != []


# --- what the manifests say, for each service of punte.stack.SERVICES (decision 0029) ----

def resources(kind: str) -> list[dict[str, Any]]:
    return [doc for _, _, doc in documents() if doc["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    [found] = [doc for doc in resources(kind) if doc["metadata"]["name"] == name]
    return found


def pod_labels(service: str) -> dict[str, str]:
    return named("Deployment", f"punte-{service}")["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions with In/Exists) picks ``labels``."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
        if e["operator"] == "Exists" and e["key"] not in labels:
            return False
    return True


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def pods() -> list[tuple[str, dict[str, Any]]]:
    """The pod template of every Deployment and Job."""
    return [(doc["metadata"]["name"], doc["spec"]["template"]) for doc in resources("Deployment") + resources("Job")]


def test_the_services_are_those_of_the_stack():
    assert sorted(d["metadata"]["labels"]["service"] for d in resources("Deployment")) == sorted(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_its_service_disruption_budget_autoscaler_and_network_policy(service: str):
    labels = pod_labels(service)
    deployment = named("Deployment", f"punte-{service}")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    port = container["ports"][0]["containerPort"]

    svc = named("Service", f"punte-{service}")
    assert selects({"matchLabels": svc["spec"]["selector"]}, labels)
    assert [p["port"] for p in svc["spec"]["ports"]] == [port]

    budget = named("PodDisruptionBudget", f"punte-{service}")
    assert selects(budget["spec"]["selector"], labels)
    autoscaler = named("HorizontalPodAutoscaler", f"punte-{service}")
    assert autoscaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                    "name": f"punte-{service}"}
    # Never scaled, nor drained, to a single replica or none.
    assert autoscaler["spec"]["minReplicas"] > budget["spec"]["minAvailable"] >= 1

    policy = named("NetworkPolicy", f"punte-{service}")
    assert selects(policy["spec"]["podSelector"], labels)
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    # Ingress to its HTTP port only.
    assert {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]} == {port}


def _egress_ports(policy: dict[str, Any], peer: dict[str, str]) -> set[int]:
    """The ports a policy's egress allows to pods labelled ``peer`` (in the same namespace)."""
    return {p["port"] for rule in policy["spec"]["egress"] for to in rule.get("to", [])
            if "podSelector" in to and "namespaceSelector" not in to and selects(to["podSelector"], peer)
            for p in rule["ports"]}


BROKER = {"strimzi.io/cluster": "punte", "strimzi.io/broker-role": "true", "strimzi.io/kind": "Kafka"}


def postgres_pod() -> dict[str, str]:
    return {"cnpg.io/cluster": resources("Cluster")[0]["metadata"]["name"]}


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_reaches_dns_kafka_and_postgresql_and_nothing_unnamed(service: str):
    policy = named("NetworkPolicy", f"punte-{service}")
    assert _egress_ports(policy, BROKER) == {9093}
    assert _egress_ports(policy, postgres_pod()) == {5432}
    dns = [rule for rule in policy["spec"]["egress"] for to in rule.get("to", [])
           if to.get("podSelector", {}).get("matchLabels") == {"k8s-app": "kube-dns"}]
    assert [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in dns] == [[(53, "TCP"), (53, "UDP")]]
    # Every egress rule names where it goes (pods or an address block), and its ports.
    assert all(rule.get("to") and rule.get("ports") for rule in policy["spec"]["egress"])
    # The database accepts the service's pods.
    db = named("NetworkPolicy", "punte-db")
    assert any(selects(peer["podSelector"], pod_labels(service)) and {p["port"] for p in rule["ports"]} == {5432}
               for rule in db["spec"]["ingress"] for peer in rule["from"] if "podSelector" in peer)


def test_the_namespace_denies_everything_by_default():
    policy = named("NetworkPolicy", "default-deny")
    assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


IMAGE_USER = next(line.split()[1] for line in (DEPLOY / "Dockerfile").read_text().splitlines()
                  if line.startswith("USER "))


@pytest.mark.parametrize("name", [name for name, _ in pods()])
def test_every_deployment_and_job_runs_non_root_on_a_read_only_root(name: str):
    [template] = [t for n, t in pods() if n == name]
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    # The image's own user (deploy/Dockerfile), which owns its state folder.
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == IMAGE_USER
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert "memory" in container["resources"]["limits"] and container["resources"]["requests"]
        # Somewhere to write: /tmp, and the state folder where the service has one.
        writable = {m["mountPath"] for m in container["volumeMounts"]
                    if "emptyDir" in volumes[m["name"]] and not m.get("readOnly")}
        assert "/tmp" in writable
        state = env_of(container).get("PUNTE_STATE_DIR")
        if name.removeprefix("punte-") in SERVICES:  # a service's Deployment
            assert state is not None and state["value"] in writable


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_its_probes_and_they_are_not_assignment_bound(service: str):
    [container] = named("Deployment", f"punte-{service}")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    startup = container["startupProbe"]
    # The startup probe outlasts the service's own wait for its database and migrations.
    waits = Settings().startup_timeout_seconds
    assert startup["periodSeconds"] * startup["failureThreshold"] > waits


def _database_url(container: dict[str, Any]) -> Any:
    return make_url(env_of(container)["PUNTE_DATABASE_URL"]["value"])


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_its_own_role_and_database_on_the_cloudnative_pg_cluster(service: str):
    [cluster] = resources("Cluster")
    assert cluster["spec"]["instances"] == 3
    [container] = named("Deployment", f"punte-{service}")["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    url = _database_url(container)
    assert url.host == f"{cluster['metadata']['name']}-rw"  # the primary
    assert url.password == "$(DATABASE_PASSWORD)"
    secret = env["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    assert roles[url.username]["passwordSecret"] == {"name": secret["name"]} and secret["key"] == "password"
    assert roles[url.username]["login"] is True and not roles[url.username].get("superuser")
    # The database the service will use (runtime.settings) exists, owned by its role.
    name = make_url(Settings(database_url=str(url)).database_for(service)).database
    [database] = [d for d in resources("Database") if d["spec"]["name"] == name]
    assert database["spec"]["owner"] == url.username
    assert database["spec"]["cluster"] == {"name": cluster["metadata"]["name"]}
    assert database["spec"]["databaseReclaimPolicy"] == "retain"


@pytest.mark.parametrize("service", SERVICES)
def test_the_migrations_job_migrates_every_service_and_the_services_do_not(service: str):
    [container] = named("Deployment", f"punte-{service}")["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["PUNTE_MIGRATE_ON_START"]["value"] == "false"
    job = named("Job", "punte-migrate")
    [migrate] = [c for c in job["spec"]["template"]["spec"]["containers"]
                 if c["command"] == ["punte", "migrate", service]]
    # As the service's own role, on the same database.
    assert env_of(migrate)["PUNTE_DATABASE_URL"] == env_of(container)["PUNTE_DATABASE_URL"]
    assert env_of(migrate)["DATABASE_PASSWORD"] == env_of(container)["DATABASE_PASSWORD"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    # It may reach PostgreSQL, and PostgreSQL accepts it.
    labels = job["spec"]["template"]["metadata"]["labels"]
    [policy] = [p for p in resources("NetworkPolicy") if p["spec"]["podSelector"] and
                selects(p["spec"]["podSelector"], labels)]
    assert _egress_ports(policy, postgres_pod()) == {5432}
