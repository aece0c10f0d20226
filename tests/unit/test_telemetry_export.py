"""Spans leave a service for an OpenTelemetry collector when the standard
OTEL_EXPORTER_OTLP_ENDPOINT is set (deploy/compose.yaml points it at its collector; decision
0030), over OTLP/HTTP; without it nothing is sent anywhere. A fresh interpreter per case: the
tracer provider is set once per process."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVICE = """
from opentelemetry import trace
from runtime.telemetry import configure_tracing, tracer
configure_tracing("intake")
with tracer("test").start_as_current_span("report.accepted"):
    pass
trace.get_tracer_provider().force_flush()
"""


class Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's hook name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Collector.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def run_service(env: dict[str, str]) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    result = subprocess.run([sys.executable, "-c", SERVICE], cwd=ROOT, env={**environment, **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]


def collector() -> HTTPServer:
    Collector.received = []
    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_spans_go_to_the_collector_named_by_the_standard_variable():
    server = collector()
    try:
        run_service({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}"})
    finally:
        server.shutdown()
    assert [(path, kind) for path, kind, _ in Collector.received] == [("/v1/traces", "application/x-protobuf")]
    body = Collector.received[0][2]
    assert b"punte-intake" in body and b"report.accepted" in body


def test_without_the_variable_nothing_is_sent():
    server = collector()
    try:
        run_service({})
    finally:
        server.shutdown()
    assert Collector.received == []
