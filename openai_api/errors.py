"""Every error the API answers, in OpenAI's shape, mapped once.

OpenAI clients read the HTTP status first (the official SDKs raise `AuthenticationError` for 401,
`PermissionDeniedError` for 403, `NotFoundError` for 404, `RateLimitError` for 429 ...) and then
`{"error": {"message", "type", "param", "code"}}`. Views raise `ApiError`s; `mapped()` turns the run
service's `ServiceError`s and refused tokens into them; anything else is a server fault (500) whose
details stay in the server log.
"""

import contextlib
import math

from agents.runtime import service
from exoclaw.tokens import TokenRefused

from .http import JsonAnswer

# How long a client should wait before trying a busy conversation again (its run may take longer;
# the answer is 429 again then).
BUSY_RETRY_AFTER = 2


class ApiError(Exception):
    """An error the client is told about: its HTTP status, OpenAI's `type`, a stable `code`, the
    request `param` it concerns, and headers to add (Retry-After)."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.retry_after = None if retry_after is None else max(1, math.ceil(retry_after))

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, headers: dict[str, str] | None = None) -> JsonAnswer:
        headers = dict(headers or {})
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return JsonAnswer(self.body(), self.status, headers)


TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def invalid(param: str | None, message: str, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def model_not_found(model: str) -> ApiError:
    return ApiError(404, f"The model {model!r} does not exist or is not enabled.", param="model",
                    code="model_not_found")


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key")


@contextlib.contextmanager
def mapped():
    """The run service's errors and refused tokens as the API's."""
    try:
        yield
    except TokenRefused as e:
        raise unauthorized(f"The API token was refused: {e}.") from None
    except service.InvalidInput as e:
        raise invalid("messages", f"The request's messages are not usable: {e}.") from None
    except service.SessionBusy:
        raise ApiError(429, "This conversation is still answering a request and its agent takes one at a "
                       "time. Retry after the previous answer ends.", code="session_busy",
                       retry_after=BUSY_RETRY_AFTER) from None
    except service.Forbidden as e:
        code = "model_not_permitted" if e.extra.get("permission") == "agent" else "forbidden"
        raise ApiError(403, f"{e}.", code=code, param="model" if code == "model_not_permitted" else None) from None
    except service.NotFound as e:
        if e.reason == "no_agent":
            raise ApiError(404, f"{e}.", param="model", code="model_not_found") from None
        raise ApiError(404, f"{e}.", code=e.reason) from None
