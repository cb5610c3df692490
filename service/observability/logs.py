"""Structured logs: one JSON object per line, one schema for every function.

    {"time": "2026-11-23T17:04:33.123Z", "level": "INFO", "function": "trainer", "logger": "fermion.trainer",
     "message": "...", "request_id": "...", "job_id": "...", "trace_id": "...", "tenant": "..."}

The ids come from context variables (`bind`) set where a request or job begins, so every line
written while it runs carries them; absent ones are left out. Third-party chatter (ONNX Runtime's
quantiser logs on the root logger, botocore, nats) goes to a `thirdparty.<package>` logger and is
kept only at WARNING and above.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

FIELDS = ("request_id", "job_id", "trace_id", "tenant")
_context: dict[str, ContextVar[str | None]] = {name: ContextVar(name, default=None) for name in FIELDS}
NOISY = ("onnxruntime", "onnx", "onnxscript", "onnx_ir", "torch", "botocore", "boto3", "urllib3", "nats", "asyncio")


def bind(**values: str | None) -> None:
    """Set context fields (request_id, job_id, trace_id, tenant) for the rest of this task."""
    for name, value in values.items():
        _context[name].set(value)


@contextlib.contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """Context fields for the duration of a block (a job's handling), restored after."""
    tokens = [(_context[name], _context[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current(name: str) -> str | None:
    """A context field's value here."""
    return _context[name].get()


class JsonFormatter(logging.Formatter):
    """A record as one JSON line in the schema above (plus `extra=` fields a caller passes)."""

    def __init__(self, function: str) -> None:
        super().__init__()
        self.function = function

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "function": self.function,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None) or _context[name].get()
            if value:
                line[name] = value
        if fields := getattr(record, "fields", None):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class ThirdParty(logging.Filter):
    """Renames records that libraries log on the root logger to `thirdparty.<package>`; keeps WARNING and up."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root" and "-packages" in record.pathname:
            package = record.pathname.split("-packages/", 1)[1].split("/", 1)[0]
            record.name = f"thirdparty.{package}"
            return record.levelno >= logging.WARNING
        return True


def configure(function: str, *, level: str = "INFO", json_lines: bool = True) -> None:
    """The process's logging: one handler on stderr, JSON (or text) lines, libraries at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter(function))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ThirdParty())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own lines in the same schema
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # ours (fermion.access) has the route and the ids
