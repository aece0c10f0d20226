"""OpenTelemetry tracing (decision 0036); W3C trace context travels in Kafka headers and
through the outbox.

A service's spans: the standard instrumentations (FastAPI, SQLAlchemy, aiokafka, httpx),
plus the runtime's own messaging spans (runtime.inbox: ``process``, runtime.outbox: the
relay's ``send``) following the OpenTelemetry messaging conventions. What leaves the process
is redacted first (``Redacting``): no query string, no exception message or stack."""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, Status, TraceState
from opentelemetry.util.types import Attributes

# Not traced: probes and scrapes, every few seconds from every kubelet and Prometheus.
UNTRACED_URLS = "/health/live,/health/ready,/metrics"
# The messaging attributes of the runtime's own spans (semantic conventions 1.27 and later).
MESSAGING_SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
PARTITION = "messaging.destination.partition.id"
CONSUMER_GROUP = "messaging.consumer.group.name"
OFFSET = "messaging.kafka.offset"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
TRACE_HEADERS = ("traceparent", "tracestate")

_configured = False
# Whether configure_tracing installed an exporter: None until it ran (another provider may be
# in place, a test's), False when it knows nothing is recorded.
_exporting: bool | None = None
_libraries = False
_engine_traced = False


class QuietPolls(Sampler):
    """The configured sampler (OTEL_TRACES_SAMPLER), except for a database statement that
    nothing traced started: the relay's, the consumers' and the timers' polls run every
    second in every service, and each would be a trace of its own, about nothing. A statement
    inside a request, a message or a relay send is a child span and is kept."""

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None, trace_state: TraceState | None = None) -> SamplingResult:
        # SQLAlchemy's spans start as CLIENT spans without attributes (httpx's carry the URL).
        if (kind is SpanKind.CLIENT and not attributes
                and not trace.get_current_span(parent_context).get_span_context().is_valid):
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"QuietPolls{{{self._delegate.get_description()}}}"


_QUERY = re.compile(r"\?.*$", re.DOTALL)
# Attributes that may carry a URL or target with its query string (old and new conventions).
_URL_ATTRIBUTES = ("http.url", "url.full", "http.target")


def redacted(span: ReadableSpan) -> ReadableSpan:
    """``span`` as it may leave the process: query strings (ids, tokens) cut from URLs; the
    exceptions recorded by instrumentations (their message and stack can quote values: a
    database error names the duplicate key) reduced to their type, and the status to its
    code. The runtime's own exception events carry no stack and stay as they are
    (runtime.inbox writes them from failure_detail, which names no value)."""
    attributes = dict(span.attributes or {})
    for name in _URL_ATTRIBUTES:
        if isinstance(attributes.get(name), str):
            attributes[name] = _QUERY.sub("", attributes[name])
    attributes.pop("url.query", None)
    events = [
        Event(event.name, {"exception.type": (event.attributes or {}).get("exception.type", "")},
              event.timestamp)
        if event.name == "exception" and "exception.stacktrace" in (event.attributes or {}) else event
        for event in span.events
    ]
    return ReadableSpan(
        name=span.name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=attributes, events=events, links=span.links, kind=span.kind,
        status=Status(span.status.status_code), start_time=span.start_time, end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class Redacting(SpanExporter):
    """An exporter that sends ``redacted`` spans through another."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([redacted(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def configure_tracing(service: str, exporter: SpanExporter | None = None) -> None:
    """Install a tracer provider and the libraries' instrumentations, once per process.
    Spans go to an OpenTelemetry collector over OTLP/HTTP when the standard
    OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set, the exporter reading the other
    OTEL_EXPORTER_OTLP_* variables itself (headers, certificate, timeout; deploy/compose.yaml,
    decision 0030); to the console when asked (PUNTE_TRACE_CONSOLE=1); to ``exporter`` (a
    test's); otherwise nowhere, the trace ids still tying the logs of one request or message
    together across the services. OTEL_TRACES_SAMPLER and _ARG choose what is kept."""
    global _configured, _exporting
    if _configured:
        return
    exporters: list[SpanExporter] = [exporter] if exporter is not None else []
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter())
    if os.environ.get("PUNTE_TRACE_CONSOLE") == "1":
        exporters.append(ConsoleSpanExporter())
    # Nothing records what nothing reads: without an exporter every span is a non-recording
    # one, which still has its ids (the logs') and still carries them on (traceparent), at a
    # fraction of the cost (decision 0036's figures).
    standard = TracerProvider(shutdown_on_exit=False).sampler if exporters else ALWAYS_OFF
    provider = TracerProvider(resource=Resource.create({"service.name": f"punte-{service}"}),
                              sampler=QuietPolls(standard))
    for each in exporters:
        provider.add_span_processor(BatchSpanProcessor(Redacting(each)))
    trace.set_tracer_provider(provider)
    if exporters:
        # Per record and per statement, even a span not recorded costs (decision 0036's
        # figures): the instrumentations of the busy paths run where spans are exported.
        instrument_libraries()
    _exporting = bool(exporters)
    _configured = True


def nothing_recorded() -> bool:
    """Whether this process records no span: configure_tracing ran and found no exporter."""
    return _exporting is False


def instrument_libraries() -> None:
    """aiokafka (a ``send`` span around each record produced, its context injected into the
    record's headers: a report posted over HTTP goes on in the HTTP request's trace; a
    ``receive`` span for each record fetched) and httpx (webhooks, the identity provider's
    keys), once per process. Without them the runtime's own spans still carry the trace on
    (the relay injects the context itself: ``kafka_injects``)."""
    global _libraries
    if _libraries:
        return
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    AIOKafkaInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()
    _libraries = True


def kafka_injects() -> bool:
    """Whether the aiokafka instrumentation injects the trace context into what is sent."""
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor

    return AIOKafkaInstrumentor().is_instrumented_by_opentelemetry


def instrument_app(app: Any) -> None:
    """FastAPI's server spans (named by route: ``POST /v1/events``), probes and scrapes left
    out, and without the ASGI ``receive``/``send`` spans of every body chunk."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED_URLS, exclude_spans=["receive", "send"])


def instrument_engine(engine: Any) -> None:
    """A span for each SQL statement of ``engine`` (a sync Engine: AsyncEngine.sync_engine),
    its text with placeholders, never the values, when spans are exported. Once per
    process: a service has one engine (tests that start several services in one process
    trace the first one's statements)."""
    global _engine_traced
    if _engine_traced or not _libraries:  # nothing exported: no statement spans (configure_tracing)
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # Its declared range stops below SQLAlchemy 2.1, which keeps the engine events it hooks:
    # tests/e2e/test_traces.py finds the statements' spans.
    SQLAlchemyInstrumentor().instrument(engine=engine, skip_dep_check=True)
    _engine_traced = True


@cache
def tracer(name: str) -> trace.Tracer:
    """One tracer per name for the process (the SDK makes a new one at each get_tracer:
    6 % of the audit trail's samples when it was asked for each message)."""
    return trace.get_tracer(name)


def current_trace_headers() -> dict[str, str]:
    """The W3C traceparent (and tracestate) of the current span, to carry onwards."""
    return trace_headers_of(None)


def trace_headers_of(ctx: Context | None) -> dict[str, str]:
    """The W3C traceparent (and tracestate) of the span current in ``ctx`` (None: now)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return carrier


def context_from_headers(headers: Iterable[tuple[str, bytes]]) -> context.Context:
    """The trace context a message carries. The first traceparent counts, as the aiokafka
    instrumentation reads it."""
    return context_from_text((k, v.decode("latin-1")) for k, v in headers if k in TRACE_HEADERS)


def first_trace_id(headers: Iterable[tuple[str, bytes]]) -> bytes | None:
    """The trace id field of the first traceparent among Kafka headers, as sent (not parsed:
    the propagator judges whether it is valid)."""
    for k, v in headers:
        if k == "traceparent":
            return v[3:35]
    return None


def context_from_text(headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> context.Context:
    """The trace context stored with an outbox row (headers as text). Only the trace
    headers are read: the others (an event's subject, say) may hold any text, and the
    propagator ignores a trace header it cannot parse."""
    carrier: dict[str, str] = {}
    for k, v in headers.items() if isinstance(headers, Mapping) else headers:
        if k in TRACE_HEADERS and k not in carrier:
            carrier[k] = v
    return propagate.extract(carrier)
