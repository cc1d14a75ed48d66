"""``Upstash-Callback-*`` / ``Upstash-Failure-Callback-*``: how a message's callbacks are sent.

Two SDK dialects reach us (qstash-api.md §4, §6):

- JS passes ``Upstash-Callback-Forward-<H>`` through unchanged: header ``<H>`` of the callback;
- Python turns ``callback_headers={"X": ...}`` into ``Upstash-Callback-X``, so any ``<X>`` that
  is not an option (Method, Timeout, Retries, Retry-Delay, Delay) is forwarded as ``<X>`` too;
- the workflow SDKs send ``Upstash-Callback-Workflow-RunId`` and expect the callback to arrive
  with ``Upstash-Workflow-RunId``: ``Workflow-*`` becomes ``Upstash-Workflow-*``.

Everything here is pure; the URLs' SSRF check (DNS) is done by the caller like a destination's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.workflow_headers import parse_workflow
from kafstash.producers.durations import parse_duration_ms
from kafstash.schemas import defaults
from kafstash.schemas import headers as h
from kafstash.schemas.message import CallbackOptions
from kafstash.schemas.retry_delay import InvalidRetryDelay, parse_retry_delay

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_OPTIONS = frozenset({"method", "timeout", "retries", "retry-delay", "delay"})
_FORWARD = "forward-"
_WORKFLOW = "workflow-"
CALLBACK_PREFIX = h.CALLBACK + "-"
FAILURE_CALLBACK_PREFIX = h.FAILURE_CALLBACK + "-"


@dataclass(frozen=True, slots=True)
class Callbacks:
    callback: str | None = None
    callback_options: CallbackOptions | None = None
    failure_callback: str | None = None
    failure_callback_options: CallbackOptions | None = None


def _canonical(name: str) -> str:
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def _check_url(raw: str, header: str) -> str:
    url = raw.strip()
    if not url.startswith(("http://", "https://")):
        raise ApiError(f"invalid {header} header: must be an absolute http(s) URL")
    return url


def _split(
    pairs: list[tuple[str, str]], prefix: str
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Options (first value wins) and the callback's own headers among ``prefix``-ed pairs."""
    values: dict[str, str] = {}
    header: dict[str, list[str]] = {}
    for low, value in pairs:
        if not low.startswith(prefix):
            continue
        rest = low[len(prefix) :]
        if rest in _OPTIONS:
            values.setdefault(rest, value.strip())
            continue
        if rest.startswith(_FORWARD):
            rest = rest[len(_FORWARD) :]
        elif rest.startswith(_WORKFLOW):
            rest = "upstash-" + rest
        if rest and rest not in h.HOP_BY_HOP:
            header.setdefault(_canonical(rest), []).append(value)
    return values, header


def _durations(values: dict[str, str], err: Callable[[str, str], ApiError]) -> dict[str, int]:
    out: dict[str, int] = {}
    for opt in ("timeout", "delay"):
        if opt in values:
            try:
                out[opt] = parse_duration_ms(values[opt])
            except ValueError as exc:
                raise err(opt, str(exc)) from None
    if out.get("timeout") == 0:
        raise err("timeout", "must be positive")
    if out.get("delay", 0) > defaults.MAX_DELAY_MS:
        raise err("delay", "longer than the maximum of 365 days")
    return out


def parse_options(pairs: list[tuple[str, str]], prefix: str, label: str) -> CallbackOptions:
    """The options among lower-cased ``pairs`` starting with ``prefix`` (``upstash-callback-``)."""
    values, header = _split(pairs, prefix)

    def err(opt: str, why: str) -> ApiError:
        return ApiError(f"invalid {label}-{_canonical(opt)} header: {why}")

    method = values.get("method", "POST").upper()
    if method not in _METHODS:
        raise err("method", f"{method!r} is not an HTTP method")
    retries: int | None = None
    if "retries" in values:
        try:
            retries = int(values["retries"])
        except ValueError:
            raise err("retries", "not an integer") from None
        if not 0 <= retries <= defaults.MAX_RETRIES:
            raise err("retries", f"must be 0..{defaults.MAX_RETRIES}")
    expr = values.get("retry-delay")
    if expr is not None:
        try:
            parse_retry_delay(expr)
        except InvalidRetryDelay as exc:
            raise err("retry-delay", str(exc)) from None
    durations = _durations(values, err)
    timeout = durations.get("timeout")
    first: dict[str, str] = {}
    for low, value in pairs:
        first.setdefault(low, value)
    return CallbackOptions(
        method=method,
        header=header,
        retries=retries,
        retry_delay_expression=expr,
        timeout_ms=None if timeout is None else min(timeout, defaults.DEFAULT_TIMEOUT_MS),
        delay_ms=durations.get("delay"),
        workflow=parse_workflow(first.get, prefix + "workflow-"),
    )


def parse_callbacks(pairs: list[tuple[str, str]]) -> Callbacks:
    """Both callbacks of a publish, from its (lower-case name, value) header pairs."""
    first: dict[str, str] = {}
    for low, value in pairs:
        first.setdefault(low, value)
    out: dict[str, object] = {}
    for url_header, prefix, label, key in (
        (h.CALLBACK, CALLBACK_PREFIX, "Upstash-Callback", "callback"),
        (
            h.FAILURE_CALLBACK,
            FAILURE_CALLBACK_PREFIX,
            "Upstash-Failure-Callback",
            "failure_callback",
        ),
    ):
        raw = first.get(url_header)
        if raw is None or not raw.strip():
            continue  # options without a URL configure nothing
        out[key] = _check_url(raw, label)
        out[f"{key}_options"] = parse_options(pairs, prefix, label)
    return Callbacks(**out)  # type: ignore[arg-type]
