"""``JsonFormatter``: one JSON object per log record (``wirehub serve --log-format json``)."""

from __future__ import annotations

import json
import logging
import sys

from wirehub.server.logs import JsonFormatter


def test_json_formatter_writes_extra_fields_and_the_traceback() -> None:
    """A record becomes one JSON line with its extra fields and the exception text."""
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "wirehub.hub",
            logging.ERROR,
            __file__,
            1,
            "handler %r failed",
            ("chat",),
            sys.exc_info(),
        )
    record.peer = "p1"
    record.room = "lobby"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "handler 'chat' failed"
    assert (entry["level"], entry["logger"], entry["peer"], entry["room"]) == (
        "ERROR",
        "wirehub.hub",
        "p1",
        "lobby",
    )
    assert "ValueError: boom" in entry["exception"]
    assert entry["time"].endswith("+00:00")
