"""deploy/compose.yaml's telemetry (issue #13, decision 0030): an OpenTelemetry collector the
services send their spans to, Prometheus scraping exactly the containers that serve
/metrics and loading the alert rules, Grafana with Prometheus as its data source. Every path
is followed through compose's own mounts to the file in deploy/ the tests read, so a renamed
file or a wrong mount fails here; and the services run on a read-only root filesystem with
their state in a volume."""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from punte.stack import SERVICES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES_OF_COMPOSE: dict[str, dict[str, Any]] = COMPOSE["services"]
PIPELINE_TYPES = ("traces", "metrics", "logs")


def by_image(prefix: str) -> tuple[str, dict[str, Any]]:
    [found] = [(n, s) for n, s in SERVICES_OF_COMPOSE.items() if str(s.get("image", "")).startswith(prefix)]
    return found


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The file in deploy/ a container sees at ``container_path``, through its bind mounts."""
    wanted = PurePosixPath(container_path)
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./") and (wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents):
            return DEPLOY / source / wanted.relative_to(target)
    raise AssertionError(f"{container_path} is not mounted from deploy/")


def option(service: dict[str, Any], name: str) -> str:
    [value] = [a.split("=", 1)[1] for a in service["command"] if a.startswith(f"{name}=")]
    return value


def collector() -> tuple[str, dict[str, Any]]:
    name, service = by_image("otel/opentelemetry-collector-contrib:")
    return name, yaml.safe_load(host_path(service, option(service, "--config")).read_text())


def prometheus() -> tuple[str, dict[str, Any], dict[str, Any]]:
    name, service = by_image("prom/prometheus:")
    config = yaml.safe_load(host_path(service, option(service, "--config.file")).read_text())
    return name, service, config


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def metrics_servers() -> set[str]:
    """host:port of every container serving GET /metrics: each Punte service (its HTTP port)
    and the collector's Prometheus exporter (its endpoint in the collector's configuration)."""
    servers = {f"{name}:{service['environment']['PUNTE_HTTP_PORT']}" for name, service in SERVICES_OF_COMPOSE.items()
               if service.get("command", [])[:2] == ["python", "-m"]
               and service["command"][2].startswith("services.")}
    name, config = collector()
    servers |= {f"{name}:{port_of(e['endpoint'])}" for key, e in config["exporters"].items()
                if key.split("/")[0] == "prometheus"}
    return servers


def test_prometheus_scrapes_exactly_the_containers_that_serve_metrics():
    assert {f"{s}:8000" for s in SERVICES} < metrics_servers()
    _, _, config = prometheus()
    targets = {t for job in config["scrape_configs"] for static in job.get("static_configs", [])
               for t in static["targets"]}
    assert targets == metrics_servers()
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in config["scrape_configs"])


def test_prometheus_loads_the_alert_rules_the_tests_check():
    _, service, config = prometheus()
    rule_files = [host_path(service, path) for path in config["rule_files"]]
    assert rule_files == [DEPLOY / "prometheus" / "alerts.yaml"]
    assert rule_files[0].exists()


def test_the_collectors_pipelines_name_only_defined_components_and_use_every_one():
    _, config = collector()
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    pipelines = config["service"]["pipelines"]
    assert {"traces", "metrics"} <= set(pipelines)
    for name, pipeline in pipelines.items():
        assert name.split("/")[0] in PIPELINE_TYPES, name
        assert pipeline["receivers"] and pipeline["exporters"], name
        for kind in used:
            named = pipeline.get(kind, [])
            assert set(named) <= set(config.get(kind) or {}), (name, kind, named)
            used[kind] |= set(named)
    assert {kind: set(config.get(kind) or {}) for kind in used} == used
    assert set(config["service"].get("extensions", [])) <= set(config.get("extensions") or {})
    assert "batch" in pipelines["traces"]["processors"]
    assert {e.split("/")[0] for e in pipelines["traces"]["exporters"]} >= {"debug"}
    assert {e.split("/")[0] for e in pipelines["metrics"]["exporters"]} >= {"prometheus"}


def test_every_service_sends_its_spans_to_the_collectors_otlp_http_receiver():
    name, config = collector()
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http.startswith("0.0.0.0:")  # reachable from the other containers, not loopback only
    for service in SERVICES:
        endpoint = urlsplit(SERVICES_OF_COMPOSE[service]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", name, port_of(http))


def test_grafana_has_prometheus_as_its_provisioned_data_source():
    name, _, _ = prometheus()
    _, grafana = by_image("grafana/grafana:")
    folder = host_path(grafana, "/etc/grafana/provisioning")
    sources = [s for path in sorted((folder / "datasources").glob("*.yaml"))
               for s in yaml.safe_load(path.read_text())["datasources"]]
    [source] = sources
    assert source["type"] == "prometheus" and source.get("isDefault") is True
    url = urlsplit(source["url"])
    assert (url.hostname, url.port) == (name, 9090)
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${")


def test_the_services_run_read_only_with_their_state_in_a_volume():
    for name in (*SERVICES, "kafka-setup"):
        service = SERVICES_OF_COMPOSE[name]
        assert service.get("read_only") is True, name
        assert "/tmp" in service.get("tmpfs", []), name
        state = [v for v in service["volumes"] if v.split(":")[1] == "/var/lib/punte"]
        assert len(state) == 1 and state[0].split(":")[0] in COMPOSE["volumes"], name
