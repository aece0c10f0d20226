"""Where nothing is recorded (no exporter), a batch's messages get no span each: their trace
context goes on as it came (decision 0036, amended). What a reader of the logs and of the
events written sees is the same as with the spans: each event in its message's trace, the
handler in the batch's trace when there is one, a trace of its own for a message without."""
from __future__ import annotations

import secrets

import pytest
from opentelemetry import trace

from runtime import telemetry
from runtime.cloudevents import CloudEvent
from runtime.inbox import InboxConsumer, Message
from runtime.outbox import Outbox
from runtime.telemetry import context_from_headers


def _message(offset: int, key: str, traceparent: str | None) -> Message:
    headers = (("ce_id", f"e{offset}".encode()),) + ((("traceparent", traceparent.encode()),) if traceparent else ())
    return Message("punte.cases", 0, offset, key.encode(), b"{}", headers, 0)


def _traceparent(trace_id: str | None = None, flags: str = "01") -> str:
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-{flags}"


def _trace_of(headers: dict[str, str]) -> str:
    return headers["traceparent"].split("-")[1]


@pytest.fixture(params=["carried", "spans"])
def batch_traces(request, monkeypatch):
    """Both ways of tracing a batch: the trace ids must not tell them apart."""
    telemetry.configure_tracing("referral")  # once per process, as every service does
    monkeypatch.setattr(telemetry, "_exporting", False if request.param == "carried" else None)
    consumer = InboxConsumer(service="referral", group_id="g", bootstrap="unused", sessions=None,  # type: ignore[arg-type]
                             handler=lambda uow, m: None)
    return consumer._batch_spans


def test_each_event_goes_on_in_its_own_messages_trace(batch_traces):
    parents = {f"case-{i}": _traceparent() for i in range(3)}
    messages = [_message(i, key, parent) for i, (key, parent) in enumerate(parents.items())]
    with batch_traces(messages) as traces:
        outbox = Outbox(session=None)  # type: ignore[arg-type]: emit only collects rows
        outbox.traces = traces
        for key in parents:
            outbox.emit("out", CloudEvent.new("ro.punte.test.v1", "/punte/test", {}), key=key)
        by_position = traces["punte.cases/0/1"]
        current = trace.get_current_span().get_span_context()
    written = [_trace_of(dict(row["headers"])) for row in outbox._rows]
    assert written == [p.split("-")[1] for p in parents.values()]
    assert _trace_of(by_position) == parents["case-1"].split("-")[1]
    assert f"{current.trace_id:032x}" not in written, "several traces: the handler runs in one of its own"


def test_a_batch_of_one_trace_runs_the_handler_in_it(batch_traces):
    trace_id = secrets.token_hex(16)
    messages = [_message(0, "case-a", _traceparent(trace_id)), _message(1, "case-a", _traceparent(trace_id))]
    with batch_traces(messages):
        assert f"{trace.get_current_span().get_span_context().trace_id:032x}" == trace_id


def test_a_message_without_a_trace_starts_its_own(batch_traces):
    messages = [_message(0, "case-a", None), _message(1, "case-b", None), _message(2, "case-c", "00-nonsense-01")]
    with batch_traces(messages) as traces:
        seen = [_trace_of(traces[key]) for key in ("case-a", "case-b", "case-c")]
        again = _trace_of(traces["case-a"])
    assert len(set(seen)) == 3 and "0" * 32 not in seen
    assert again == seen[0], "one message, one trace, however often it is asked for"
    for found in seen:
        context = context_from_headers([("traceparent", f"00-{found}-{'1' * 16}-00".encode())])
        assert trace.get_current_span(context).get_span_context().is_valid


def test_later_messages_of_a_key_win(batch_traces):
    first, later = _traceparent(), _traceparent()
    messages = [_message(0, "case-a", first), _message(1, "case-a", later)]
    with batch_traces(messages) as traces:
        assert _trace_of(traces["case-a"]) == later.split("-")[1]
        assert _trace_of(traces["punte.cases/0/0"]) == first.split("-")[1]
        assert traces.get("case-b") is None and traces.get("", {}) == {}, "no such message: nothing carried"
        assert sorted(traces) == ["case-a", "punte.cases/0/0", "punte.cases/0/1"]
