"""Logs are JSON lines with the fields we chose, and nothing a request carried."""

from __future__ import annotations

import json
import logging
import sys

from shared.logs import JsonFormatter


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
