"""Every error the gateway can answer, mapped once to its JSON-RPC code.

Handlers raise these; `frames.handle_frame` turns them into error objects. Anything else a handler raises
becomes an Internal error whose details stay in the server log. Each error carries a stable `reason`
string in `data` that clients may switch on; `message` is for people.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    code: int
    message: str
    meaning: str


PARSE_ERROR = Code(-32700, "Parse error", "The frame is not valid JSON (or not UTF-8, or has a number out of range).")
INVALID_REQUEST = Code(-32600, "Invalid Request", "The JSON is not a valid Request object or batch.")
METHOD_NOT_FOUND = Code(-32601, "Method not found", "No method of that name.")
INVALID_PARAMS = Code(-32602, "Invalid params", "A parameter is missing, unknown or of the wrong type.")
INTERNAL_ERROR = Code(-32603, "Internal error", "The server failed; details are in its log, never in the answer.")
UNAUTHORIZED = Code(-32001, "Unauthorized", "Authenticate first, or the token presented is wrong or expired.")
FORBIDDEN = Code(-32002, "Forbidden", "The principal lacks the scope this method needs.")
RATE_LIMITED = Code(-32003, "Rate limited", "Too many requests or failed logins; retry after data.retry_after s.")
NOT_FOUND = Code(-32004, "Not found", "The thing asked for does not exist.")
SESSION_BUSY = Code(-32005, "Session busy", "The session already has a run and its agent rejects new ones.")
PAYLOAD_TOO_LARGE = Code(-32006, "Payload too large", "The frame is too big, too deeply nested or the batch too long.")
TOO_MANY_RUNS = Code(-32008, "Too many runs", "This connection already has the maximum number of runs going.")

CODES = (
    PARSE_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    INVALID_PARAMS,
    INTERNAL_ERROR,
    UNAUTHORIZED,
    FORBIDDEN,
    RATE_LIMITED,
    NOT_FOUND,
    SESSION_BUSY,
    PAYLOAD_TOO_LARGE,
    TOO_MANY_RUNS,
)


class RpcError(Exception):
    """An error the client is told about. `detail` is a sentence for people; `extra` adds data fields."""

    kind: Code = INTERNAL_ERROR
    reason: str = "internal_error"

    def __init__(self, detail: str = "", *, reason: str | None = None, **extra):
        super().__init__(detail or self.kind.message)
        self.detail = detail
        if reason:
            self.reason = reason
        self.extra = extra

    @property
    def code(self) -> int:
        return self.kind.code

    def to_error(self) -> dict:
        data = {"reason": self.reason, **self.extra}
        if self.detail:
            data["detail"] = self.detail
        message = f"{self.kind.message}: {self.detail}" if self.detail else self.kind.message
        return {"code": self.kind.code, "message": message, "data": data}


class ParseError(RpcError):
    kind, reason = PARSE_ERROR, "parse_error"


class InvalidRequest(RpcError):
    kind, reason = INVALID_REQUEST, "invalid_request"


class MethodNotFound(RpcError):
    kind, reason = METHOD_NOT_FOUND, "method_not_found"


class InvalidParams(RpcError):
    kind, reason = INVALID_PARAMS, "invalid_params"

    def __init__(self, param: str, why: str):
        super().__init__(f"{param!r} {why}", param=param)


class InternalError(RpcError):
    kind, reason = INTERNAL_ERROR, "internal_error"


class Unauthorized(RpcError):
    kind, reason = UNAUTHORIZED, "auth_required"


class Forbidden(RpcError):
    kind, reason = FORBIDDEN, "missing_scope"


class RateLimited(RpcError):
    kind, reason = RATE_LIMITED, "rate_limited"


class NotFound(RpcError):
    kind, reason = NOT_FOUND, "not_found"


class SessionBusy(RpcError):
    kind, reason = SESSION_BUSY, "session_busy"


class PayloadTooLarge(RpcError):
    kind, reason = PAYLOAD_TOO_LARGE, "frame_too_large"


class TooManyRuns(RpcError):
    kind, reason = TOO_MANY_RUNS, "too_many_runs"
