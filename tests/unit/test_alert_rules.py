"""The alerting rules (deploy/prometheus/alerts.yaml) are a Prometheus rule file whose
expressions parse as PromQL and name only metrics the services expose (runtime.metrics)."""
from __future__ import annotations

from pathlib import Path

import promql_parser
import yaml

from runtime.metrics import NAMES

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yaml"


def metric_names(expression) -> set[str]:
    """Every metric a PromQL expression selects."""
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        for child in ("expr", "lhs", "rhs", "vector_selector"):
            if getattr(node, child, None) is not None:
                visit(getattr(node, child))
        for argument in getattr(node, "args", None) or []:
            visit(argument)
    visit(expression)
    return names


def rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_rule_is_an_alert_with_a_severity_a_summary_and_a_runbook():
    found = rules()
    assert {r["alert"] for r in found} >= {"PunteConsumerStopped", "PunteOutboxParked", "PunteBrokerNotProvisioned"}
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook"]
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])


def test_every_expression_parses_and_names_only_metrics_the_services_expose():
    for rule in rules():
        named = metric_names(promql_parser.parse(rule["expr"]))
        assert named, rule["alert"]
        assert named <= set(NAMES), (rule["alert"], named - set(NAMES))


def test_a_broken_expression_or_an_unknown_metric_is_caught():
    """The checks above can fail."""
    try:
        promql_parser.parse("max by (service (punte_consumer_stopped) == 1")
    except ValueError:
        pass
    else:
        raise AssertionError("an unclosed parenthesis parsed")
    assert metric_names(promql_parser.parse("sum(increase(punte_no_such_total[5m])) > 0")) == {"punte_no_such_total"}
