"""Which workflow runs a ``/v2/workflows/runs`` cancel or a ``/v2/workflows/events`` read means.

Parsed once, before anything is read or changed (issue 14): the fields are checked against the
endpoint's declared list (filter_fields.py), and every value is validated up front, so a
malformed ``fromDate`` is 400 whether or not some run would have been compared with it, and a
``workflowUrlExactMatch`` other than true/false is 400 rather than a silent prefix match.
Values of one filter are OR-ed (repeated keys), different filters AND-ed.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from kafstash.producers.api import filter_fields
from kafstash.producers.api.errors import ApiError
from kafstash.schemas.workflow import RunState

STATES = frozenset({"RUN_STARTED", "RUN_SUCCESS", "RUN_FAILED", "RUN_CANCELED"})


@dataclass(frozen=True)
class RunQuery:
    """A parsed run filter; an empty set means "not filtered on this"."""

    run_ids: frozenset[str] = frozenset()
    urls: tuple[str, ...] = ()
    exact_url: bool = False
    states: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    callers: frozenset[str] = frozenset()
    flow_control_keys: frozenset[str] = frozenset()
    hosts: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()
    message_ids: frozenset[str] = frozenset()
    from_date: int | None = None
    to_date: int | None = None
    created_at: int | None = None
    count: int | None = None
    cursor: tuple[int, str] | None = None


def _values(pairs: list[tuple[str, str]], key: str) -> list[str]:
    return [v.strip() for k, v in pairs if k == key and v.strip()]


def _millis(pairs: list[tuple[str, str]], key: str) -> int | None:
    values = _values(pairs, key)
    if not values:
        return None
    try:
        return int(values[0])
    except ValueError:
        raise ApiError(f"invalid {key}: {values[0]!r} is not a Unix time in milliseconds") from None


def _exact(pairs: list[tuple[str, str]]) -> bool:
    values = [v.lower() for v in _values(pairs, "workflowUrlExactMatch")]
    for value in values:
        if value not in ("true", "false"):
            raise ApiError(f"invalid workflowUrlExactMatch: {value!r}, use true or false")
    return values[:1] == ["true"]


def _cursor(pairs: list[tuple[str, str]]) -> tuple[int, str] | None:
    cursors = _values(pairs, "cursor")
    if not cursors:
        return None
    at, _, run_id = cursors[0].partition("_")
    if not (at.isascii() and at.isdigit() and run_id):
        raise ApiError("invalid cursor")
    return int(at), run_id


def parse(spec: filter_fields.FieldSpec, pairs: list[tuple[str, str]]) -> RunQuery:
    """The RunQuery of ``pairs`` for an endpoint declared by ``spec``; ApiError(400) otherwise."""
    count = filter_fields.checked(spec, pairs)
    states = frozenset(_values(pairs, "state"))
    if any(v != "workflowRunId" for v in _values(pairs, "groupBy")):
        raise ApiError("invalid groupBy: only workflowRunId is supported")
    if bad := sorted(states - STATES):
        raise ApiError(f"invalid state: {bad[0]!r} is not one of " + ", ".join(sorted(STATES)))
    return RunQuery(
        run_ids=frozenset(_values(pairs, "workflowRunIds") + _values(pairs, "workflowRunId")),
        urls=tuple(_values(pairs, "workflowUrl")),
        exact_url=_exact(pairs),
        states=states,
        labels=frozenset(_values(pairs, "label")),
        callers=frozenset(_values(pairs, "callerIp")),
        flow_control_keys=frozenset(_values(pairs, "flowControlKey")),
        hosts=frozenset(_values(pairs, "host")),
        paths=frozenset(_values(pairs, "path")),
        message_ids=frozenset(_values(pairs, "messageId")),
        from_date=_millis(pairs, "fromDate"),
        to_date=_millis(pairs, "toDate"),
        created_at=_millis(pairs, "workflowCreatedAt"),
        count=count,
        cursor=_cursor(pairs),
    )


def _url_matches(run: RunState, q: RunQuery) -> bool:
    if not q.urls:
        return True
    if q.exact_url:
        return run.url in q.urls
    return any(run.url.startswith(url) for url in q.urls)


def matches(run: RunState, q: RunQuery) -> bool:  # noqa: PLR0911 - one return per filter
    if q.run_ids and run.run_id not in q.run_ids:
        return False
    if q.states and run.state not in q.states:
        return False
    if not _url_matches(run, q):
        return False
    if q.labels and not q.labels & set(run.labels):
        return False
    if (q.from_date is not None and run.created_at < q.from_date) or (
        q.to_date is not None and run.created_at > q.to_date
    ):
        return False
    if q.created_at is not None and run.created_at != q.created_at:
        return False
    if q.callers and run.caller_ip not in q.callers:
        return False
    key = run.flow_control.key if run.flow_control is not None else None
    if q.flow_control_keys and key not in q.flow_control_keys:
        return False
    parts = urlsplit(run.url)
    if (q.hosts and parts.hostname not in q.hosts) or (q.paths and parts.path not in q.paths):
        return False
    return not q.message_ids or any(e.message_id in q.message_ids for e in run.history)
