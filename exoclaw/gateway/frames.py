"""One frame in, at most one frame out: decode, check limits, authorise, call, encode.

Entries of a batch are handled one after another in order, so a batch `[auth, status]` works; the
answer is an array with one response per non-notification entry (none at all if every entry was a
notification).
"""

import logging
import math
from typing import Any

from . import jsonrpc
from .context import Context
from .errors import Forbidden, InternalError, MethodNotFound, RateLimited, RpcError, Unauthorized
from .limits import Limits, TokenBucket
from .registry import Registry, registry as default_registry

logger = logging.getLogger(__name__)


def _rate_limited(wait: float) -> RateLimited:
    return RateLimited("too many requests on this connection", retry_after=math.ceil(wait * 1000) / 1000)


async def call(entry: jsonrpc.Request, ctx: Context, registry: Registry) -> Any:
    m = registry.get(entry.method)
    if m is None:
        raise MethodNotFound(f"no method {entry.method[:100]!r}")
    if not m.public:
        if ctx.principal is None:
            raise Unauthorized("authenticate first: call auth with a token", reason="auth_required")
        if not ctx.principal.allows(m.scope):
            required = m.scope if isinstance(m.scope, str) else " or ".join(m.scope)
            raise Forbidden(f"{m.name} needs the {required} scope", required=required)
    return await m.handler(ctx, **m.bind(entry.params))


async def answer(entry: jsonrpc.Request | jsonrpc.Invalid, ctx: Context, bucket: TokenBucket, registry: Registry) -> str | None:
    """The encoded response to one entry, or None for a notification."""
    wait = bucket.take()
    if isinstance(entry, jsonrpc.Invalid):
        return jsonrpc.encode(jsonrpc.error_response(entry.id, _rate_limited(wait) if wait else entry.error))
    if wait:
        return None if entry.is_notification else jsonrpc.encode(jsonrpc.error_response(entry.id, _rate_limited(wait)))
    try:
        result = await call(entry, ctx, registry)
        if entry.is_notification:
            return None
        return jsonrpc.encode(jsonrpc.result_response(entry.id, result))
    except RpcError as e:
        error = e
    except Exception:
        logger.exception("gateway method %s failed", entry.method)
        error = InternalError()
    return None if entry.is_notification else jsonrpc.encode(jsonrpc.error_response(entry.id, error))


async def handle_frame(
    frame: str | bytes, ctx: Context, limits: Limits, bucket: TokenBucket, registry: Registry = default_registry
) -> str | None:
    try:
        value = jsonrpc.decode(frame, max_bytes=limits.max_frame_bytes, max_depth=limits.max_depth)
        entries, is_batch = jsonrpc.parse(value, max_batch=limits.max_batch)
    except RpcError as e:
        wait = bucket.take()
        return jsonrpc.encode(jsonrpc.error_response(None, _rate_limited(wait) if wait else e))
    answers = [a for a in [await answer(entry, ctx, bucket, registry) for entry in entries] if a is not None]
    if not answers:
        return None
    return "[" + ",".join(answers) + "]" if is_batch else answers[0]
