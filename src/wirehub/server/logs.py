"""Logging set-up for ``wirehub serve``: text or one JSON object per line.

wirehub's log calls attach what they are about as ``extra`` fields: ``peer``
(a peer id), ``client`` (the client's address), ``room``, ``event``, and in
the access log of handshakes (logger ``wirehub.access``, at INFO) ``path``,
``status`` and ``duration_ms``. ``JsonFormatter`` writes every such field,
your own ``extra`` ones included, next to the time, level, logger and
message. Turn the access log off with
``logging.getLogger("wirehub.access").setLevel(logging.WARNING)``
(``wirehub serve --no-access-log``).
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, Literal

__all__ = ["ACCESS_LOGGER", "JsonFormatter", "configure_logging"]

ACCESS_LOGGER = "wirehub.access"

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has: anything else on a record came from ``extra``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON.

    ``{"time": "2024-05-01T12:00:00.123+00:00", "level": "INFO", "logger":
    "wirehub.access", "message": "...", "pid": 4242, ...extra fields,
    "exception": "Traceback ..."}``; values JSON cannot hold are written
    with ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    level: str = "info", log_format: Literal["text", "json"] = "text", *, access_log: bool = True
) -> None:
    """Send every log record of ``level`` and above to stderr, as text or JSON lines."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])  # no-op if already set up
    if not access_log:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
