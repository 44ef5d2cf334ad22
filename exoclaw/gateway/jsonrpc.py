"""JSON-RPC 2.0 envelopes: decode a frame, split it into requests, build and encode responses.

Pure functions with no Django or Channels imports; `frames.py` and the tests call them directly.
Follows https://www.jsonrpc.org/specification: a request without an `id` member is a notification
and is never answered; an invalid request is answered even without an id (with `"id": null`).
"""

import json
import math
from dataclasses import dataclass
from typing import Any

from common.jsondepth import deeper_than

from .errors import InvalidRequest, ParseError, PayloadTooLarge, RpcError

NO_ID = type("NoId", (), {"__repr__": lambda self: "NO_ID"})()
MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})


@dataclass(frozen=True)
class Request:
    method: str
    params: Any
    id: Any = NO_ID

    @property
    def is_notification(self) -> bool:
        return self.id is NO_ID


@dataclass(frozen=True)
class Invalid:
    """An entry that is not a valid Request object; always answered, with its id when it had a valid one."""

    id: Any
    error: RpcError


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ParseError("number out of range", reason="number_out_of_range")
    return value


def _reject_constant(name: str):
    raise ParseError(f"{name} is not JSON", reason="parse_error")


_decoder = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant)
# ASCII output: a lone surrogate that arrived in a string can be echoed back without breaking UTF-8.
_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def decode(frame: str | bytes, *, max_bytes: int, max_depth: int) -> Any:
    """One WebSocket frame → a JSON value. Raises ParseError or PayloadTooLarge."""
    if isinstance(frame, bytes):
        if len(frame) > max_bytes:
            raise PayloadTooLarge(f"frame is larger than {max_bytes} bytes", limit=max_bytes)
        try:
            frame = frame.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("frame is not UTF-8", reason="not_utf8") from None
    # A str's UTF-8 size lies between len and 4×len, so most frames need no encoding to be measured.
    elif len(frame) * 4 > max_bytes and (len(frame) > max_bytes or len(frame.encode("utf-8", "surrogatepass")) > max_bytes):
        raise PayloadTooLarge(f"frame is larger than {max_bytes} bytes", limit=max_bytes)
    try:
        value = _decoder.decode(frame)
    except RpcError:
        raise
    except RecursionError:
        raise PayloadTooLarge(f"nested deeper than {max_depth} levels", reason="too_deep", limit=max_depth) from None
    except json.JSONDecodeError as e:
        raise ParseError(f"{e.msg} at position {e.pos}") from None
    except ValueError:
        # int() refuses numbers with more digits than sys.get_int_max_str_digits().
        raise ParseError("number out of range", reason="number_out_of_range") from None
    if frame.count("[") + frame.count("{") > max_depth and deeper_than(value, max_depth):
        raise PayloadTooLarge(f"nested deeper than {max_depth} levels", reason="too_deep", limit=max_depth)
    return value


def valid_id(value: Any) -> bool:
    return value is None or isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def parse_entry(obj: Any) -> Request | Invalid:
    if not isinstance(obj, dict):
        return Invalid(None, InvalidRequest("a request must be a JSON object"))
    rid = obj.get("id", NO_ID)
    if rid is not NO_ID and not valid_id(rid):
        return Invalid(None, InvalidRequest("id must be a string, a number or null"))
    answer_id = None if rid is NO_ID else rid
    if obj.get("jsonrpc") != "2.0":
        return Invalid(answer_id, InvalidRequest('jsonrpc must be exactly "2.0"'))
    if not isinstance(obj.get("method"), str):
        return Invalid(answer_id, InvalidRequest("method must be a string"))
    params = obj.get("params")
    if "params" in obj and not isinstance(params, (dict, list)):
        return Invalid(answer_id, InvalidRequest("params must be an object or an array"))
    unknown = sorted(set(obj) - MEMBERS)
    if unknown:
        return Invalid(answer_id, InvalidRequest(f"unknown member {unknown[0]!r}", reason="unknown_member"))
    return Request(obj["method"], params, rid)


def parse(value: Any, *, max_batch: int) -> tuple[list[Request | Invalid], bool]:
    """A decoded frame → (entries, is_batch). Raises for a frame that gets one error as a whole."""
    if not isinstance(value, list):
        return [parse_entry(value)], False
    if not value:
        raise InvalidRequest("empty batch", reason="empty_batch")
    if len(value) > max_batch:
        raise PayloadTooLarge(f"batch has more than {max_batch} entries", reason="batch_too_long", limit=max_batch)
    return [parse_entry(v) for v in value], True


def result_response(rid: Any, result: Any) -> dict:
    return {"jsonrpc": "2.0", "result": result, "id": rid}


def error_response(rid: Any, error: RpcError) -> dict:
    return {"jsonrpc": "2.0", "error": error.to_error(), "id": rid}


def notification(method: str, params: Any = None) -> dict:
    message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def encode(message: Any) -> str:
    return _encoder.encode(message)
