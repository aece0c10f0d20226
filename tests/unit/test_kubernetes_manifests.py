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
