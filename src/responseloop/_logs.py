"""How ``responseloop serve`` writes its log: one level for the library's loggers and
uvicorn's, as text or as one JSON object per line.

The library itself only ever adds a ``NullHandler`` (a library must not configure the
host's logging); this module is what the command line does instead, for a process it owns.

Above DEBUG an exception attached to a record is shown by its type alone: its message and
traceback may quote a tool's arguments, a prompt or a DSN, and only an operator who asked
for DEBUG gets them.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, Literal

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "configure_logging"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
"""The ``--log-level`` choices (uvicorn's; ``trace`` is uvicorn's level below DEBUG)."""

LOG_FORMATS = ("text", "json")

# The loggers serve configures: the library's and uvicorn's.
_LOGGERS = ("responseloop", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
_TRACE = 5

# What every LogRecord has; anything else on a record is an ``extra`` field.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message", "taskName"}
)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _time(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Redacting(logging.Formatter):
    """Shows an attached exception in full only when ``details`` is on (DEBUG)."""

    def __init__(self, *, details: bool) -> None:
        super().__init__()
        self.details = details

    def exception_text(self, record: logging.LogRecord) -> str | None:
        if not record.exc_info or record.exc_info[0] is None:
            return None
        if self.details:
            return self.formatException(record.exc_info)
        return record.exc_info[0].__name__


class TextFormatter(_Redacting):
    """``TIME LEVEL LOGGER: MESSAGE key=value …`` (the record's extra fields), one line
    unless a traceback follows it at DEBUG."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if extras:
            line = f"{line} [{extras}]"
        exception = self.exception_text(record)
        if exception is None:
            return line
        return f"{line}\n{exception}" if self.details else f"{line} ({exception})"


class JsonFormatter(_Redacting):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, the
    record's extra fields (``response_id``, ``step_id``, ``tool``, …) and, when an
    exception is attached, ``exception`` (its type; its traceback at DEBUG)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        exception = self.exception_text(record)
        if exception is not None:
            entry["exception"] = exception
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: Literal["text", "json"] = "text") -> None:
    """Send the ``responseloop`` and ``uvicorn`` loggers to stderr at ``level``, in
    ``log_format``; every other library's records (a database driver's, say) go the same
    way from WARNING up, so that a JSON log stays one object per line."""
    logging.addLevelName(_TRACE, "TRACE")
    number = _TRACE if level == "trace" else logging.getLevelNamesMapping()[level.upper()]
    details = number <= logging.DEBUG
    formatter = (
        JsonFormatter(details=details) if log_format == "json" else TextFormatter(details=details)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        # uvicorn.error and the others propagate to "uvicorn": only the parents get the handler.
        parent = name in ("responseloop", "uvicorn")
        logger.handlers = [handler] if parent else []
        logger.setLevel(number)
        logger.propagate = not parent
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(number, logging.WARNING))
