"""What an operator reads of one request (decision 0036): every library's log line as JSON
with the request's trace ids, an access log naming the route and never the path's ids or
the query string, and spans that leave the process without query strings nor exception
messages. A fresh interpreter runs the service side: the tracer provider is set once per
process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from runtime.cloudevents import CloudEvent
from runtime.outbox import Outbox
from runtime.telemetry import QuietPolls, context_from_headers

ROOT = Path(__file__).resolve().parents[2]

SERVICE = """
import asyncio, json, logging
import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from runtime.log import AccessLog, configure_logging
from runtime.telemetry import configure_tracing, instrument_app

exporter = InMemorySpanExporter()
configure_logging("intake")
configure_tracing("intake", exporter)
app = FastAPI()

@app.get("/cases/{case_id}")
async def case(case_id: str) -> dict:
    logging.getLogger("aiokafka.consumer").warning("group %s rebalanced", "punte-referral-cases")
    logging.getLogger("httpx").info("HTTP Request: GET /cases/%s", case_id)  # below WARNING: not written
    return {"ok": True}

@app.get("/fails")
async def fails() -> dict:
    raise RuntimeError("duplicate key value: Key (pseudonym)=(PSEUDONYM-SECRET) already exists")

@app.get("/health/live")
async def live() -> dict:
    return {"status": "ok"}

app.add_middleware(AccessLog)
instrument_app(app)

async def main() -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        await client.get("/cases/CASE-SECRET-7", params={"token": "QUERY-SECRET"})
        await client.get("/fails")
        await client.get("/nowhere/CASE-SECRET-8")
        await client.get("/health/live")

asyncio.run(main())
trace.get_tracer_provider().force_flush()
print(json.dumps([{"name": s.name, "kind": s.kind.name, "trace_id": format(s.context.trace_id, "032x"),
                   "attributes": dict(s.attributes), "status": [s.status.status_code.name, s.status.description],
                   "events": [[e.name, dict(e.attributes)] for e in s.events]}
                  for s in exporter.get_finished_spans()]))
"""


def run_service() -> tuple[list[dict], list[str]]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PUNTE_TRACE"))}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    result = subprocess.run([sys.executable, "-c", SERVICE], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout), result.stderr.splitlines()


def test_library_logs_and_the_access_log_are_json_with_the_requests_trace_and_no_ids():
    spans, lines = run_service()
    logged = [json.loads(line) for line in lines]  # every line is JSON
    server = {s["name"]: s for s in spans if s["kind"] == "SERVER"}
    assert set(server) >= {"GET /cases/{case_id}", "GET /fails"}
    request = server["GET /cases/{case_id}"]["trace_id"]

    rebalanced = [e for e in logged if e.get("logger") == "aiokafka.consumer"]
    assert [(e["level"], e["event"], e["service"], e["trace_id"]) for e in rebalanced] == [
        ("warning", "group punte-referral-cases rebalanced", "intake", request)]
    assert not [e for e in logged if e.get("logger") == "httpx"], "libraries log at WARNING and above"

    access = [(e["method"], e["route"], e["status"]) for e in logged if e["event"] == "http request"]
    assert access == [("GET", "/cases/{case_id}", 200), ("GET", "/fails", 500), ("GET", None, 404)], \
        "one line per request, the route's template; probes are not logged"
    assert [e["trace_id"] for e in logged if e.get("route") == "/cases/{case_id}"] == [request]
    text = "\n".join(lines)
    for secret in ("CASE-SECRET", "QUERY-SECRET", "PSEUDONYM-SECRET"):
        assert secret not in text


def test_spans_leave_without_query_strings_or_exception_messages():
    spans, _ = run_service()
    exported = json.dumps(spans)
    assert "QUERY-SECRET" not in exported and "token=" not in exported
    assert "PSEUDONYM-SECRET" not in exported
    failed = next(s for s in spans if s["name"] == "GET /fails" and s["kind"] == "SERVER")
    assert failed["status"] == ["ERROR", None]
    assert [e for e in failed["events"] if e[0] == "exception"] == [["exception", {"exception.type": "RuntimeError"}]]
    assert not [s for s in spans if "health" in s["name"]], "probes are not traced"


def _parent(sampled: bool = True):
    context = SpanContext(0x1F, 0x2F, is_remote=True, trace_flags=TraceFlags(1 if sampled else 0))
    return trace.set_span_in_context(NonRecordingSpan(context))


def test_database_polls_outside_any_traced_work_are_not_traces_of_their_own():
    sampler = QuietPolls(ALWAYS_ON)
    query = sampler.should_sample(None, 0xA, "SELECT punte_intake", SpanKind.CLIENT, None)
    assert query.decision is Decision.DROP
    in_a_message = sampler.should_sample(_parent(), 0x1F, "SELECT punte_intake", SpanKind.CLIENT, None)
    assert in_a_message.decision is Decision.RECORD_AND_SAMPLE
    webhook = sampler.should_sample(None, 0xB, "POST", SpanKind.CLIENT, {"http.request.method": "POST"})
    assert webhook.decision is Decision.RECORD_AND_SAMPLE
    request = sampler.should_sample(None, 0xC, "GET /inbox", SpanKind.SERVER, None)
    assert request.decision is Decision.RECORD_AND_SAMPLE


def test_an_event_written_in_a_batch_goes_on_in_the_trace_of_its_cases_message():
    """A batch handler writes events for many cases at once: each event carries the trace of
    the batch's message of its case, or of the message it names as its cause (runtime.inbox
    sets Outbox.traces); any other, the current span's."""
    outbox = Outbox(session=None)  # type: ignore[arg-type]: emit only collects rows
    theirs = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    other = "00-" + "ef" * 16 + "-" + "cd" * 8 + "-01"
    outbox.traces = {"CASE-1": {"traceparent": theirs}, "punte.gateway/0/7": {"traceparent": other}}
    current = trace.NonRecordingSpan(SpanContext(0xEF, 0x12, is_remote=False, trace_flags=TraceFlags(1)))
    with trace.use_span(current):
        outbox.emit("punte.referrals", CloudEvent.new("ro.punte.test.v1", "/punte/referral", {}), key="CASE-1")
        outbox.emit("punte.referrals", CloudEvent.new("ro.punte.test.v1", "/punte/referral", {}), key="CASE-2")
        outbox.emit("punte.cases", CloudEvent.new("ro.punte.test.v1", "/punte/intake", {}), key="CASE-3",
                    cause="punte.gateway/0/7")
    first, second, third = (dict(row["headers"]) for row in outbox._rows)
    assert first["traceparent"] == theirs
    assert second["traceparent"] == f"00-{0xEF:032x}-{0x12:016x}-01"
    assert third["traceparent"] == other, "the message named as the cause"
    assert trace.get_current_span(context_from_headers([("traceparent", theirs.encode())])) \
        .get_span_context().trace_id == 0xABABABABABABABABABABABABABABABAB


UNEXPORTED = """
import json
from runtime.log import configure_logging, get_logger
from runtime.telemetry import configure_tracing, current_trace_headers, tracer
configure_logging("referral")
configure_tracing("referral")
with tracer("test").start_as_current_span("process punte.cases") as span:
    get_logger("test").info("case routed")
    print(json.dumps({"recording": span.is_recording(), "headers": current_trace_headers(),
                      "trace_id": format(span.get_span_context().trace_id, "032x")}))
"""


def test_without_an_exporter_nothing_is_recorded_yet_logs_and_messages_carry_the_trace():
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PUNTE_TRACE"))}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    result = subprocess.run([sys.executable, "-c", UNEXPORTED], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout)
    assert seen["recording"] is False
    assert seen["headers"]["traceparent"].split("-")[1] == seen["trace_id"] != "0" * 32
    [line] = [json.loads(line) for line in result.stderr.splitlines()]
    assert (line["event"], line["trace_id"]) == ("case routed", seen["trace_id"])
