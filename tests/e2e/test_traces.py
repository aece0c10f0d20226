"""One trace from a report posted over HTTP to the lead's inbox entry, across the four
services as processes, as an OpenTelemetry collector receives it (tests/e2e/spans.py); the
same trace's ids in the services' JSON logs (decision 0036)."""
from __future__ import annotations

import json
import random
import secrets
from pathlib import Path

import httpx
import pytest

from punte.stack import Stack
from punte.synthetic import synthetic_report
from runtime.cloudevents import CloudEvent
from tests.e2e.conftest import institution_system, sign_in, wait_until
from tests.e2e.spans import Span, SpanReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.broker]
SERVICES = {"punte-intake", "punte-referral", "punte-notification", "punte-audit"}
# The consumers that process the case intake opened: (service, consumer group).
GROUPS = (("punte-referral", "punte-referral-cases"), ("punte-notification", "punte-notification"),
          ("punte-audit", "punte-audit"), ("punte-audit", "punte-audit-cases"))


def _statement(span: Span) -> str:
    return str(span.attributes.get("db.statement") or span.attributes.get("db.query.text") or "")


def _read_from(path: Path, offset: int) -> list[str]:
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8").splitlines()


def _processed(spans: list[Span], service: str, topic: str, group: str) -> list[Span]:
    return [s for s in spans if s.service == service and s.kind == "CONSUMER" and s.name == f"process {topic}"
            and s.attributes.get("messaging.consumer.group.name") == group]


async def test_a_report_posted_over_http_is_one_trace_to_the_leads_inbox_entry(
        network: Stack, span_receiver: SpanReceiver):
    # What the services log from here on (other tests may have restarted or killed them).
    log_sizes = {name: (network.state_dir / "logs" / f"{name}.log").stat().st_size
                 for name in ("intake", "referral", "notification", "audit")}
    doctor = institution_system(network, "dsp-bc", producer=None)  # an institution without Kafka
    report: CloudEvent = doctor.report(synthetic_report(random.Random(15), "dsp-bc"))
    token = await sign_in(network, "sys.dsp-bc")
    # The institution's own system traces its call: the network goes on in its trace.
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json",
               "traceparent": f"00-{trace_id}-{parent}-01",
               **{k.replace("ce_", "ce-", 1): v.decode() for k, v in report.headers() if k.startswith("ce_")}}
    async with httpx.AsyncClient(base_url=network.url("intake"), timeout=40) as client:
        answer = await client.post("/v1/events", params={"wait": 20}, content=report.body(), headers=headers)
    assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text

    async def whole_trace() -> list[Span] | None:
        """the trace reaches the lead's inbox entry through every service, every span's parent in it"""
        spans = span_receiver.spans(trace_id)
        ids = {s.span_id for s in spans}
        # In this trace; or, when notification's batch held other traces' messages too, in
        # the batch span's trace, linked to this trace's process span.
        batches = {s.trace_id for s in span_receiver.spans() if ids & set(s.links)}
        inbox = [s for s in span_receiver.spans() if s.trace_id in {trace_id, *batches}
                 and s.service == "punte-notification" and s.kind == "CLIENT"
                 and "INSERT INTO inbox_entries" in _statement(s)]
        connected = all(s.parent_id in ids for s in spans if s.parent_id != parent)
        every_group = all(_processed(spans, service, "punte.cases", group) for service, group in GROUPS)
        return spans if inbox and every_group and {s.service for s in spans} >= SERVICES and connected else None

    try:
        spans = await wait_until(whole_trace, timeout=60)
    except AssertionError as missing:
        seen = sorted({(s.service, s.kind, s.name, s.parent_id in {t.span_id for t in span_receiver.spans(trace_id)}
                        or s.parent_id == parent) for s in span_receiver.spans(trace_id)})
        raise AssertionError(f"{missing}; the trace has (service, kind, name, parent found): {seen}") from None

    # intake: the HTTP request (named by its route), the gateway record it sends, its own
    # consumer of that record, the database, and the relay publishing the case.
    server = [s for s in spans if s.kind == "SERVER"]
    assert [(s.service, s.name, s.parent_id) for s in server] == [("punte-intake", "POST /v1/events", parent)]
    assert [s for s in spans if s.service == "punte-intake" and s.kind == "PRODUCER"
            and s.attributes.get("messaging.destination.name", "").startswith("punte.gateway")]
    assert [s for s in spans if s.service == "punte-intake" and s.kind == "CLIENT" and _statement(s)]
    relayed = [s for s in spans if s.service == "punte-intake" and s.name == "send punte.cases"]
    assert relayed and relayed[0].kind == "PRODUCER"
    assert {relayed[0].attributes[k] for k in ("messaging.system", "messaging.operation.type")} == {"kafka", "send"}
    # referral and notification process the case in the same trace; notification writes the
    # lead's inbox entry there; the audit trail records it there too.
    for service, group in GROUPS:
        attributes = _processed(spans, service, "punte.cases", group)[0].attributes
        assert attributes["messaging.system"] == "kafka" and attributes["messaging.operation.type"] == "process"
        assert attributes["messaging.destination.name"] == "punte.cases"
        assert attributes["messaging.destination.partition.id"].isdigit()
        assert attributes["cloudevents.event_type"]
    # Nothing the caller put in the query string left a service in a span.
    assert not [s for s in spans if any("wait=" in str(v) for v in s.attributes.values())]

    # The same trace in the JSON logs: intake's access log line names the route, not the path
    # or its query, and carries the trace id; no line any service wrote meanwhile is anything
    # but JSON.
    logs = {name: _read_from(network.state_dir / "logs" / f"{name}.log", at) for name, at in log_sizes.items()}
    for name, lines in logs.items():
        for line in lines:
            assert line.startswith("{"), (name, line[:200])
    access = [json.loads(line) for line in logs["intake"] if '"punte.access"' in line or '"http request"' in line]
    mine = [entry for entry in access if entry.get("trace_id") == trace_id]
    assert [(e["event"], e["method"], e["route"], e["status"]) for e in mine] == [
        ("http request", "POST", "/v1/events", 200)]
    assert not [line for line in logs["intake"] if "wait=20" in line or report.id in line and "http request" in line]
