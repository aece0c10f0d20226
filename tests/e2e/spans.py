"""An OpenTelemetry collector for the end-to-end network: an OTLP/HTTP receiver gathering
the spans every service process exports (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), as a real
collector would take them. The services run as processes, so an in-memory exporter in the
test's process would see none of them (decision 0036)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

# What a span's kind is in OTLP (opentelemetry-proto's Span.SpanKind).
KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    links: tuple[str, ...] = ()  # the span ids it links to (a batch's messages)


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


class SpanReceiver:
    """Keeps the export requests as they come (decoding is left to ``spans``, in the test's
    thread: the receiver answers at once while every service is busy)."""

    def __init__(self) -> None:
        self._bodies: list[bytes] = []
        self._decoded: list[Span] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's hook name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/traces":
                    with receiver._lock:
                        receiver._bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def spans(self, trace_id: str | None = None) -> list[Span]:
        """The spans received so far (of one trace), each request decoded once."""
        with self._lock:
            bodies, self._bodies = self._bodies, []
        for body in bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self._decoded.append(Span(
                            str(resource.get("service.name", "")), span.name, KINDS.get(span.kind, "UNSPECIFIED"),
                            span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(),
                            {a.key: _value(a.value) for a in span.attributes},
                            tuple(link.span_id.hex() for link in span.links)))
        return [s for s in self._decoded if trace_id is None or s.trace_id == trace_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
