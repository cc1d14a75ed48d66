"""The roles' log lines: ``KAFSTASH_LOG_FORMAT=plain`` (default, for a terminal) or ``json``
(one object per line, for a log shipper).

A JSON line carries ``timestamp`` (UTC, ISO 8601), ``level``, ``role``, ``logger`` and
``message``, plus ``message_id`` / ``schedule_id`` / ``dlq_id`` when a call site passes them in
``extra``; no other ``extra`` key is copied, so nothing a caller attaches by accident leaks. As
a second line of defence the message and any traceback are scrubbed: the configured users'
tokens and signing keys, anything shaped like a JWT (a delivery's signature) or a signing key,
and ``Bearer`` credentials become ``[redacted]``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kafstash import environment as E
from kafstash.config import ConfigError

FORMATS = ("plain", "json")
PLAIN = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
PLAIN_DATEFMT = "%H:%M:%S"

# The only ``extra`` keys a JSON line carries.
FIELDS = ("message_id", "schedule_id", "dlq_id")

REDACTED = "[redacted]"
_PATTERNS = re.compile(
    r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"  # a JWT: an Upstash-Signature
    r"|\bsig_[A-Za-z0-9]{8,}"  # a signing key (schemas/ids.py)
    r"|(?<=Bearer )\S+",  # an Authorization header's credential
    re.IGNORECASE,
)


def log_format(env: dict[str, str]) -> str:
    raw = (env.get(E.LOG_FORMAT.name) or E.LOG_FORMAT.default).strip().lower()
    if raw not in FORMATS:
        raise ConfigError(f"KAFSTASH_LOG_FORMAT must be plain or json, got {raw!r}")
    return raw


class Scrubber:
    """Replaces known secrets and secret-shaped strings."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, known))) if known else None

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        return _PATTERNS.sub(REDACTED, text)


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.role = role
        self.scrub = Scrubber(secrets)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "role": self.role,
            "logger": record.name,
            "message": self.scrub(record.getMessage()),
        }
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = str(value)
        if record.exc_info:
            out["exception"] = self.scrub(self.formatException(record.exc_info))
        elif record.stack_info:
            out["stack"] = self.scrub(self.formatStack(record.stack_info))
        return json.dumps(out, ensure_ascii=False)


def formatter(fmt: str, role: str, secrets: Iterable[str] = ()) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter(role, secrets)
    return logging.Formatter(PLAIN, datefmt=PLAIN_DATEFMT)


def configure(fmt: str, role: str, secrets: Iterable[str] = ()) -> None:
    """The root logger's one handler, in ``fmt``; chatty client libraries at WARNING."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt, role, secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Client libraries are chatty at INFO (every connection, every rebalance step).
    for noisy in ("aiokafka", "faust", "mode", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
