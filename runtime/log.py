"""structlog configured for JSON lines carrying the current trace and span ids; the standard
library's logging (uvicorn, aiokafka, SQLAlchemy, httpx ...) rendered the same way, and an
access log that names routes, never paths, query strings or bodies (decision 0036)."""
from __future__ import annotations

import logging
import sys
import time
from typing import Any

import structlog
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The handler configure_logging puts on the root logger: replaced, not added, when called again.
_HANDLER_NAME = "punte"


def _add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def _renderer(fmt: str) -> Any:
    return structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()


def library_handler(fmt: str = "json") -> logging.Handler:
    """A handler rendering the standard library's records as the service's own lines: level,
    time, logger name, trace ids, the bound service; the record's message as ``event``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.name = _HANDLER_NAME
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_ids,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
    ))
    return handler


def configure_logging(service: str, level: str = "INFO", fmt: str = "json",
                      library_level: str = "WARNING") -> None:
    """The service's own logs at ``level``; every other library's (the standard library's
    logging) at ``library_level`` (PUNTE_LIBRARY_LOG_LEVEL), both as JSON lines on stderr."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_ids,
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(library_handler(fmt))
    root.setLevel(logging.getLevelName(library_level))
    # uvicorn's loggers keep their own handlers when it configures logging; serve() asks it
    # not to, and these pass their records to the root's handler in any case.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


# Requests not written to the access log while they succeed: probes and scrapes.
QUIET_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})
access_log = get_logger("punte.access")


class AccessLog:
    """One line per HTTP request: method, route template (``/cases/{case_id}``: the path
    itself carries ids, and the query string ids and tokens), status, duration, and the
    trace ids. No client address, no header, no body: the lines name no one. Placed inside
    the tracing middleware, so the line carries the request's trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if not (status < 400 and scope.get("path") in QUIET_PATHS):
                route = scope.get("route")
                access_log.info("http request", method=scope.get("method"),
                                route=getattr(route, "path", None), status=status,
                                duration_ms=round((time.perf_counter() - started) * 1000, 1))
