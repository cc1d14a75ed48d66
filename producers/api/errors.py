"""API errors: every rejection becomes QStash's ``{"error": "..."}`` with its status."""

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class ApiError(Exception):
    """A refused request: ``status`` is the HTTP status, the message is shown to callers."""

    status = 400
    headers: dict[str, str] | None = None

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class Unauthorized(ApiError):
    status = 401


class NotFound(ApiError):
    status = 404


class PayloadTooLarge(ApiError):
    status = 413


class RateLimited(ApiError):
    """Too many requests for this token: QStash's ``Burst-RateLimit-*`` headers say until when."""

    status = 429

    def __init__(self, rate_headers: dict[str, str], retry_after_s: int = 1) -> None:
        super().__init__("too many requests: rate limit exceeded, retry later")
        self.headers = {**rate_headers, "Retry-After": str(max(1, retry_after_s))}


class Unavailable(ApiError):
    """The broker did not acknowledge in time: the outcome is unknown, the caller may retry."""

    status = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def handle_api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, str(exc), exc.headers)
