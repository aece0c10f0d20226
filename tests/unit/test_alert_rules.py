"""The alerting rules (deploy/prometheus/alerts.yaml) are a Prometheus rule file whose
expressions parse as PromQL and name only metrics the services expose (runtime.metrics);
each alert's runbook is a section of docs/operations/ that exists; and where promtool is
installed (always under CI: .ci/run installs it) `promtool check rules` accepts the file and
its rule tests (tests/prometheus/alerts_test.yaml, one or more per alert) pass."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import promql_parser
import pytest
import yaml

from runtime.metrics import NAMES

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
RULE_TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yaml"
# Prometheus's own series an alert may name besides the services' metrics.
PROMETHEUS_OWN = {"up"}


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


def anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub makes them: lower case, spaces
    to hyphens, punctuation other than hyphens and underscores dropped."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in markdown.splitlines() if re.match(r"#{1,6} ", line)}


def test_every_rule_is_an_alert_with_a_severity_a_summary_and_a_runbook():
    found = rules()
    assert {r["alert"] for r in found} >= {
        "PunteConsumerStopped", "PunteConsumerNotPolling", "PunteConsumerLagGrowing", "PunteOutboxLate",
        "PunteOutboxParked", "PunteBrokerNotProvisioned", "PunteP0NotAcknowledged", "PunteAuditNotVerifying"}
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}, rule["alert"]
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])


def test_every_runbook_is_a_section_of_a_file_in_docs_operations():
    for rule in rules():
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path.startswith("docs/operations/") and path.endswith(".md") and anchor, rule["alert"]
        assert (ROOT / path).is_file(), (rule["alert"], path)
        assert anchor in anchors((ROOT / path).read_text()), (rule["alert"], path, anchor)
        # The runbook names what sent the operator there.
        assert rule["alert"] in (ROOT / path).read_text(), (rule["alert"], path)


def test_anchors_are_made_as_github_makes_them():
    assert anchors("# Title\n## A failure limit stopped it\n### Rows wait longer than a minute (late)\ntext") == {
        "title", "a-failure-limit-stopped-it", "rows-wait-longer-than-a-minute-late"}


def test_every_expression_parses_and_names_only_metrics_the_services_expose():
    for rule in rules():
        named = metric_names(promql_parser.parse(rule["expr"]))
        assert named, rule["alert"]
        assert named <= set(NAMES) | PROMETHEUS_OWN, (rule["alert"], named - set(NAMES))


def test_a_broken_expression_or_an_unknown_metric_is_caught():
    """The checks above can fail."""
    try:
        promql_parser.parse("max by (service (punte_consumer_stopped) == 1")
    except ValueError:
        pass
    else:
        raise AssertionError("an unclosed parenthesis parsed")
    assert metric_names(promql_parser.parse("sum(increase(punte_no_such_total[5m])) > 0")) == {"punte_no_such_total"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        # Under CI the tool is installed (.ci/run: Debian's prometheus package); elsewhere
        # the checks above still run.
        (pytest.fail if os.environ.get("CI") else pytest.skip)("promtool is not installed (apt-get install prometheus)")
    return found


def test_promtool_accepts_the_rules():
    checked = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_in_the_rule_tests_and_they_pass():
    tested = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert tested == {r["alert"] for r in rules()}
    run = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                         timeout=120, cwd=RULE_TESTS.parent)
    assert run.returncode == 0, run.stdout + run.stderr
