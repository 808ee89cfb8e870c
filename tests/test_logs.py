"""Logs are JSON lines with the fields we chose, and nothing a request carried."""

from __future__ import annotations

import json
import logging
import sys

from opentelemetry.sdk.trace import TracerProvider

from shared.logs import JsonFormatter, current_request_id


def test_a_log_line_is_json_and_drops_exception_messages() -> None:
    formatter = JsonFormatter("participant")
    try:
        raise ValueError("15080551212 is not valid")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, "f", 1, "failed", (), sys.exc_info())
    record.route = "/api/v1/participants"

    line = json.loads(formatter.format(record))

    assert line["component"] == "participant"
    assert line["route"] == "/api/v1/participants"
    assert line["error_type"] == "ValueError"
    assert "15080551212" not in json.dumps(line)


def test_a_log_line_names_the_request_and_the_trace_it_was_written_in() -> None:
    formatter = JsonFormatter("gateway")
    token = current_request_id.set("req-1")
    try:
        with TracerProvider().get_tracer("test").start_as_current_span("request") as span:
            record = logging.LogRecord("x", logging.INFO, "f", 1, "request", (), None)
            line = json.loads(formatter.format(record))
            trace_id = format(span.get_span_context().trace_id, "032x")
    finally:
        current_request_id.reset(token)
    untraced = json.loads(formatter.format(record))

    assert line["request_id"] == "req-1"
    assert line["trace_id"] == trace_id
    assert "trace_id" not in untraced and "request_id" not in untraced
