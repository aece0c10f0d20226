"""In production Kubernetes supervises the services (decision 0024): every service has a
Deployment with startup, readiness and liveness probes on its health endpoints, and its own
data-key KEK from the punte-data-keys secret."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from punte.stack import SERVICES

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def container_of(service: str) -> dict:
    [deployment] = [d for d in yaml.safe_load_all((KUBERNETES / f"{service}.yaml").read_text())
                    if d and d["kind"] == "Deployment"]
    assert deployment["metadata"]["name"] == f"punte-{service}"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_is_probed_on_its_health_endpoints(service: str):
    container = container_of(service)
    port = container["ports"][0]["containerPort"]
    assert container["command"] == ["python", "-m", f"services.{service}"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": port}
    assert container["startupProbe"]["httpGet"] == {"path": "/health/live", "port": port}


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_its_own_data_keys_from_a_secret(service: str):
    env = {e["name"]: e for e in container_of(service)["env"]}
    assert env["PUNTE_SERVICE"]["value"] == service
    assert env["PUNTE_DATA_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": "punte-data-keys", "key": service}


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_connects_to_kafka_as_its_own_kafka_user(service: str):
    """TLS and SCRAM-SHA-512 as punte-<service>, the password from the Secret Strimzi's User
    Operator makes for that KafkaUser, the brokers checked against the cluster CA (decision 0028)."""
    env = {e["name"]: e for e in container_of(service)["env"]}
    user = f"punte-{service}"
    assert env["PUNTE_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["PUNTE_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
    assert env["PUNTE_KAFKA_USERNAME"]["value"] == user
    assert env["PUNTE_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": user, "key": "password"}
    users = {d["metadata"]["name"] for d in yaml.safe_load_all((KUBERNETES / "strimzi" / "users.yaml").read_text())
             if d}
    assert user in users
    [deployment] = [d for d in yaml.safe_load_all((KUBERNETES / f"{service}.yaml").read_text())
                    if d and d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    ca = env["PUNTE_KAFKA_CA_FILE"]["value"]
    [mount] = [m for m in container_of(service)["volumeMounts"] if ca.startswith(m["mountPath"] + "/")]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "punte-cluster-ca-cert"


def test_the_cluster_is_three_kraft_nodes_with_scram_tls_and_the_admin_as_only_super_user():
    resources = {d["kind"]: d for d in yaml.safe_load_all((KUBERNETES / "kafka-cluster.yaml").read_text()) if d}
    pool, kafka = resources["KafkaNodePool"], resources["Kafka"]
    assert pool["spec"]["replicas"] == 3 and sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"] == "punte"
    [listener] = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True and listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple", "superUsers": ["admin"]}
    config = kafka["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (3, 2)
    assert config["auto.create.topics.enable"] is False


def test_the_bootstrap_job_claims_the_broker_epoch_as_the_admin():
    [job] = [d for d in yaml.safe_load_all((KUBERNETES / "kafka-bootstrap-job.yaml").read_text())
             if d and d["kind"] == "Job"]
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:3] == ["punte", "replay", "--bootstrap"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PUNTE_KAFKA_USERNAME"]["value"] == "admin"
    assert env["PUNTE_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "admin", "key": "password"}
