"""Settings of every role, read once from environment variables (documented in the README)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from kafstash import environment as E
from kafstash.environment import Var
from kafstash.schemas import defaults
from kafstash.schemas.addresses import Allowlist
from kafstash.schemas.topics import Topics
from kafstash.schemas.users import DEV_USERS, User

if TYPE_CHECKING:
    from kafstash.sinks.iceberg.schedule import MaintainSchedule


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _str(env: dict[str, str], var: Var[str]) -> str:
    return env.get(var.name) or var.default


def _int(env: dict[str, str], var: Var[int], default: int | None = None) -> int:
    name = var.name
    raw = env.get(name)
    if raw is None or raw == "":
        return var.default if default is None else default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _bool(env: dict[str, str], var: Var[bool], default: bool | None = None) -> bool:
    name = var.name
    raw = env.get(name, "").strip().lower()
    if not raw:
        return var.default if default is None else default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _float(env: dict[str, str], var: Var[float]) -> float:
    name = var.name
    raw = env.get(name)
    if raw is None or raw == "":
        return var.default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number >= 0, got {raw!r}")
    return value


def _allowlist(env: dict[str, str]) -> Allowlist:
    try:
        return Allowlist.parse(_str(env, E.DESTINATION_ALLOWLIST))
    except ValueError as exc:
        raise ConfigError(f"{E.DESTINATION_ALLOWLIST.name}: {exc}") from exc


def load_users(env: dict[str, str], dev: bool) -> tuple[User, ...]:
    """Users from KAFSTASH_USERS_FILE (a JSON array of User objects) or KAFSTASH_USERS (same JSON).

    Dev mode falls back to the four fixed `qstash dev` users.
    """
    raw: bytes | None = None
    if path := _str(env, E.USERS_FILE):
        raw = Path(path).read_bytes()
    elif inline := _str(env, E.USERS):
        raw = inline.encode()
    if raw is None:
        if dev:
            return DEV_USERS
        raise ConfigError("no users: set KAFSTASH_USERS_FILE or KAFSTASH_USERS (JSON array)")
    try:
        users = msgspec.json.decode(raw, type=tuple[User, ...])
    except msgspec.ValidationError as exc:
        raise ConfigError(f"users: {exc}") from exc
    if len({u.token for u in users}) != len(users) or len({u.user_id for u in users}) != len(users):
        raise ConfigError("users: tokens and user ids must be unique")
    return users


@dataclass(frozen=True)
class Settings:
    dev: bool
    home: Path
    bootstrap: str | None
    topics: Topics
    partitions: int
    replication: int
    api_host: str
    api_port: int
    users: tuple[User, ...]
    dedup_window_ms: int = defaults.DEDUP_WINDOW_MS
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    allow_private_destinations: bool = False
    destination_allowlist: Allowlist = field(default_factory=Allowlist)
    rate_limit: float = 0.0  # requests per second per token; 0 turns the limiter off
    rate_burst: int = 0
    sender_concurrency: int = 256
    sender_call_concurrency: int = 1024
    produce_timeout_s: float = 8.0
    # KAFSTASH_EVENTS_RETENTION (seconds, default one day): how much of the events topic the API
    # keeps in memory for GET /v2/events; it is read back from Kafka on every API start.
    events_retention_ms: int = defaults.EVENTS_RETENTION_MS
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def streams_app_id(self) -> str:
        return f"{self.topics.prefix}-streams"

    @property
    def sender_group(self) -> str:
        return f"{self.topics.prefix}-sender"

    @property
    def archiver_group(self) -> str:
        return f"{self.topics.prefix}-archiver"

    @property
    def require_bootstrap(self) -> str:
        if not self.bootstrap:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is not set")
        return self.bootstrap

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, *, dev: bool | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        is_dev = _bool(env, E.DEV) if dev is None else dev
        home = Path(_str(env, E.HOME)).resolve()
        dedup_s = _int(env, E.DEDUP_WINDOW)
        max_body = _int(env, E.MAX_BODY_BYTES)
        if max_body > defaults.MAX_BODY_BYTES:
            # Bodies travel base64-encoded inside one Kafka record; past this they no longer fit.
            raise ConfigError(f"KAFSTASH_MAX_BODY_BYTES may be at most {defaults.MAX_BODY_BYTES}")
        events_retention_s = _int(env, E.EVENTS_RETENTION)
        if events_retention_s <= 0:
            raise ConfigError("KAFSTASH_EVENTS_RETENTION must be a positive number of seconds")
        rate = _float(env, E.RATE_LIMIT)
        burst = _int(env, E.RATE_BURST, max(1, math.ceil(rate)))
        if rate > 0 and burst < 1:
            raise ConfigError("KAFSTASH_RATE_BURST must be at least 1")
        return cls(
            dev=is_dev,
            home=home,
            bootstrap=env.get(E.BOOTSTRAP.name) or E.BOOTSTRAP.default,
            topics=Topics(_str(env, E.TOPIC_PREFIX)),
            partitions=_int(env, E.PARTITIONS),
            replication=_int(env, E.REPLICATION),
            api_host=_str(env, E.API_HOST),
            api_port=_int(env, E.API_PORT),
            users=load_users(env, is_dev),
            dedup_window_ms=dedup_s * 1000,
            max_body_bytes=max_body,
            allow_private_destinations=_bool(env, E.ALLOW_PRIVATE_DESTINATIONS, is_dev),
            destination_allowlist=_allowlist(env),
            rate_limit=rate,
            rate_burst=burst,
            sender_concurrency=_int(env, E.SENDER_CONCURRENCY),
            sender_call_concurrency=_int(env, E.SENDER_CALL_CONCURRENCY),
            produce_timeout_s=_float(env, E.PRODUCE_TIMEOUT),
            events_retention_ms=events_retention_s * 1000,
        )


def archive_maintenance(env: dict[str, str]) -> MaintainSchedule:
    """The archiver's own maintenance schedule (docs/iceberg.md, "Scheduled maintenance").

    - ``KAFSTASH_ARCHIVE_MAINTAIN_EVERY``: seconds between runs; unset or 0 = off (then run
      ``kafstash archive maintain`` from cron instead).
    - ``KAFSTASH_ARCHIVE_MAINTAIN_MIN_FILES``: rewrite a day once it has this many data files.
    - ``KAFSTASH_ARCHIVE_EXPIRE_AFTER``: seconds of snapshot history kept (time travel); older
      snapshots are expired on each run. Default five days; ``never`` keeps them all.
    """
    from kafstash.sinks.iceberg.schedule import (  # noqa: PLC0415 - the archiver's module, loaded lazily
        MaintainSchedule,
    )

    expire_raw = env.get(E.ARCHIVE_EXPIRE_AFTER.name, "").strip().lower()
    expire = None if expire_raw == "never" else _float(env, E.ARCHIVE_EXPIRE_AFTER)
    min_files = _int(env, E.ARCHIVE_MAINTAIN_MIN_FILES)
    if min_files < 2:
        raise ConfigError(f"{E.ARCHIVE_MAINTAIN_MIN_FILES.name} must be at least 2")
    return MaintainSchedule(
        every_s=_float(env, E.ARCHIVE_MAINTAIN_EVERY),
        expire_after_s=expire,
        min_files=min_files,
    )
