"""Flow control admin: ``/v2/flowControl`` and ``/v2/globalParallelism`` (qstash-api.md §3.10).

A flow-control key is a gate (streams/gate.py) created by the first message that names it; these
routes append FlowControlAdmin commands and read FlowControlInfo from the ``state`` topic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgspec import structs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kafstash.producers.api.errors import ApiError, NotFound, Unavailable
from kafstash.producers.api.filter_fields import (
    FLOW_CONTROL_PIN,
    FLOW_CONTROL_PLAIN,
    FLOW_CONTROL_UNPIN,
    check_query,
)
from kafstash.producers.api.gates import gate_record
from kafstash.producers.kafka_log import LogUnavailable
from kafstash.schemas.defaults import GLOBAL_PARALLELISM_MAX, MAX_FLOW_CONTROL_PERIOD_S
from kafstash.schemas.gates import (
    FLOW_CONTROL_STATE_PREFIX,
    FlowAction,
    FlowControlAdmin,
    FlowControlState,
    flow_control_gate,
    state_key,
)

if TYPE_CHECKING:
    from kafstash.producers.api.context import ApiContext


def flow_control_json(s: FlowControlState) -> dict[str, Any]:
    return {
        "flowControlKey": s.flow_control_key,
        "waitListSize": s.wait_list_size,
        "parallelismMax": s.parallelism_max,
        "parallelismCount": s.parallelism_count,
        "rateMax": s.rate_max,
        "rateCount": s.rate_count,
        "ratePeriod": s.rate_period,
        "ratePeriodStart": s.rate_period_start,
        "isPaused": s.is_paused,
        "isPinnedParallelism": s.is_pinned_parallelism,
        "isPinnedRate": s.is_pinned_rate,
    }


def _query_int(request: Request, name: str, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(f"invalid {name}: must be an integer in {low}..{high}")
    return int(raw)


def _query_flag(request: Request, name: str) -> bool:
    raw = (request.query_params.get(name) or "false").lower()
    if raw not in ("true", "false"):
        raise ApiError(f"invalid {name}: use true or false")
    return raw == "true"


def admin_command(action: FlowAction, request: Request, now_ms: int) -> FlowControlAdmin:
    """The command a flow-control POST asks for (query parameters of pin / unpin checked; an
    unknown one is 400, so ``pin?paralelism=3`` does not reset the rate and pin nothing)."""
    spec = {"pin": FLOW_CONTROL_PIN, "unpin": FLOW_CONTROL_UNPIN}.get(action, FLOW_CONTROL_PLAIN)
    check_query(spec, request.query_params.multi_items())
    if action == "pin":
        return FlowControlAdmin(
            action=action,
            at=now_ms,
            parallelism=_query_int(request, "parallelism", 1, 100_000),
            rate=_query_int(request, "rate", 1, 1_000_000),
            period=_query_int(request, "period", 1, MAX_FLOW_CONTROL_PERIOD_S),
        )
    if action == "unpin":
        return FlowControlAdmin(
            action=action,
            at=now_ms,
            unpin_parallelism=_query_flag(request, "parallelism"),
            unpin_rate=_query_flag(request, "rate"),
        )
    return FlowControlAdmin(action=action, at=now_ms)


def expected_state(
    key: str, old: FlowControlState | None, cmd: FlowControlAdmin
) -> FlowControlState:
    """What the stream worker will publish after ``cmd`` (read-your-writes until it does)."""
    s = old or FlowControlState(
        flow_control_key=key,
        wait_list_size=0,
        parallelism_max=0,
        parallelism_count=0,
        rate_max=0,
        rate_count=0,
        rate_period=1,
        rate_period_start=cmd.at // 1000,
        is_paused=False,
        is_pinned_parallelism=False,
        is_pinned_rate=False,
    )
    s = structs.replace(s, admin_at=cmd.at)
    match cmd.action:
        case "pause" | "resume":
            return structs.replace(s, is_paused=cmd.action == "pause")
        case "pin":
            return structs.replace(
                s,
                parallelism_max=s.parallelism_max if cmd.parallelism is None else cmd.parallelism,
                rate_max=s.rate_max if cmd.rate is None else cmd.rate,
                rate_period=s.rate_period if cmd.period is None else cmd.period,
                is_pinned_parallelism=s.is_pinned_parallelism or cmd.parallelism is not None,
                is_pinned_rate=s.is_pinned_rate or cmd.rate is not None,
                rate_count=0,
                rate_period_start=cmd.at // 1000,
            )
        case "unpin":
            return structs.replace(
                s,
                is_pinned_parallelism=s.is_pinned_parallelism and not cmd.unpin_parallelism,
                is_pinned_rate=s.is_pinned_rate and not cmd.unpin_rate,
            )
        case "resetRate":
            return structs.replace(s, rate_count=0, rate_period_start=cmd.at // 1000)


def routes(api: ApiContext) -> list[Route]:
    def state_of(user_id: str, key: str) -> FlowControlState | None:
        assert api.gate_state
        found = api.gate_state.get(state_key(flow_control_gate(user_id, key)))
        return found if isinstance(found, FlowControlState) else None

    def mine(user_id: str) -> list[FlowControlState]:
        assert api.gate_state
        found = api.gate_state.scan(f"{FLOW_CONTROL_STATE_PREFIX}{user_id}/")
        return [s for _, s in found if isinstance(s, FlowControlState)]

    async def get_one(request: Request) -> Response:
        user = api.user(request)
        s = state_of(user.user_id, request.path_params["key"])
        if s is None:
            raise NotFound("flow control key not found")
        return JSONResponse(flow_control_json(s))

    async def list_all(request: Request) -> Response:
        user = api.user(request)
        search = request.query_params.get("search") or ""
        return JSONResponse(
            [flow_control_json(s) for s in mine(user.user_id) if search in s.flow_control_key]
        )

    async def global_parallelism(request: Request) -> Response:
        user = api.user(request)
        count = sum(s.parallelism_count for s in mine(user.user_id))
        return JSONResponse({"parallelismMax": GLOBAL_PARALLELISM_MAX, "parallelismCount": count})

    def admin(action: FlowAction) -> Any:
        async def handle(request: Request) -> Response:
            user = api.user(request)
            key = request.path_params["key"]
            cmd = admin_command(action, request, api.now_ms())
            gate = flow_control_gate(user.user_id, key)
            assert api.log
            try:
                await api.log.append_many([gate_record(api.config.topics, gate, cmd)])
            except LogUnavailable as exc:
                raise Unavailable("Kafka is unavailable; retry") from exc
            assert api.gate_state
            api.gate_state.put(
                state_key(gate), expected_state(key, state_of(user.user_id, key), cmd)
            )
            return Response(status_code=200)

        return handle

    actions: list[tuple[str, FlowAction]] = [
        ("pause", "pause"),
        ("resume", "resume"),
        ("pin", "pin"),
        ("unpin", "unpin"),
        ("resetRate", "resetRate"),
        # The Feb 2026 changelog names POST .../reset; taken to mean the rate reset.
        ("reset", "resetRate"),
    ]
    return [
        Route("/v2/flowControl", list_all, methods=["GET"]),
        Route("/v2/flowControl/{key}", get_one, methods=["GET"]),
        *(
            Route(f"/v2/flowControl/{{key}}/{path}", admin(action), methods=["POST"])
            for path, action in actions
        ),
        Route("/v2/globalParallelism", global_parallelism, methods=["GET"]),
    ]
