"""The Grafana dashboard (deploy/grafana/dashboards/punte.json, decision 0037) as Grafana
provisions it: compose mounts the folder where the provider looks, every panel queries the
provisioned Prometheus, every query parses as PromQL and names only metrics the services
expose, every metric the services expose is on it, and no panel overlaps another."""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import promql_parser
import yaml

from runtime.metrics import NAMES
from tests.unit.test_alert_rules import PROMETHEUS_OWN, metric_names
from tests.unit.test_compose_observability import by_image, host_path

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "punte.json").read_text())
PANEL_TYPES = {"row", "stat", "timeseries", "table", "gauge", "bargauge", "text"}


def panels() -> list[dict]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def test_compose_mounts_the_dashboards_where_the_provider_reads_them():
    _, grafana = by_image("grafana/grafana:")
    [provider] = yaml.safe_load(host_path(grafana, "/etc/grafana/provisioning/dashboards/punte.yaml").read_text())[
        "providers"]
    assert provider["type"] == "file"
    folder = PurePosixPath(provider["options"]["path"])
    assert host_path(grafana, str(folder / "punte.json")).resolve() == (GRAFANA / "dashboards" / "punte.json").resolve()


def test_the_dashboard_is_a_dashboard_grafana_loads():
    assert DASHBOARD["uid"] == "punte-network" and DASHBOARD["title"] == "Punte"
    assert isinstance(DASHBOARD["schemaVersion"], int) and DASHBOARD["schemaVersion"] >= 36
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in DASHBOARD["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["title"], panel["id"]
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["w"] > 0 and box["x"] + box["w"] <= 24 and box["h"] > 0, panel["title"]


def test_no_panel_overlaps_another():
    cells: dict[tuple[int, int], str] = {}
    for panel in DASHBOARD["panels"]:
        box = panel["gridPos"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_every_panel_queries_the_provisioned_prometheus():
    [source] = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())["datasources"]
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
        assert all(t.get("datasource", panel["datasource"]) == panel["datasource"] for t in panel["targets"])


def test_every_query_parses_and_every_metric_is_on_the_dashboard():
    shown: set[str] = set()
    for panel in panels():
        for target in panel["targets"]:
            named = metric_names(promql_parser.parse(target["expr"]))
            assert named and named <= set(NAMES) | PROMETHEUS_OWN, (panel["title"], target["expr"])
            shown |= named
    assert set(NAMES) <= shown, set(NAMES) - shown
