"""`/v1/models` and `/v1/chat/completions`: thin async views around the run service.

A chat completion is one run (`service.start`, then `service.events`), exactly as the gateway's
`chat.send`: routing aside (the model names the agent), the session, its history, the busy policy,
the tools in the sandbox and what is stored are the same. A client that goes away before the run ends
(closes the stream, or drops the connection while waiting for a whole answer) aborts the run: its
answer's task is cancelled (`asgi.py`), which closes the run's events (`_follow`).
"""

import asyncio
import functools
import logging
import time
import uuid
from contextlib import aclosing

from channels.db import database_sync_to_async
from django.conf import settings

from agents.lookup import enabled_agent
from agents.models import Agent
from agents.runtime import service
from exoclaw.proxies import allowed_host
from routing.resolver import Message

from . import responses
from .access import caller
from .errors import ApiError, mapped, model_not_found
from .http import EventStream, JsonAnswer, Request
from .request import conversation_id, loads, parse_chat

log = logging.getLogger(__name__)

CONVERSATION_HEADER = "X-Exoclaw-Conversation"
# The API's conversations live in this channel of the token's own namespace: agent:<model>:openai:
# token%3A<name>:<conversation id>, or a fresh `req-…` peer for each self-contained request.
CHANNEL = "openai"
REQUEST_PEER = "req-"

_aborting: set[asyncio.Task] = set()


def endpoint(*methods: str):
    """An API view: only for a Host in ALLOWED_HOSTS (as Django checks it), only `methods` (any, if none
    are named), and every error in OpenAI's shape; an unexpected one is a 500 whose details stay in the log."""

    def decorate(view):
        @functools.wraps(view)
        async def handle(request: Request, *args):
            try:
                if not allowed_host(request.host):
                    log.warning("Invalid Host %r for %s", request.host, request.path)
                    raise ApiError(400, "The Host header names no host this server answers for (ALLOWED_HOSTS).",
                                   code="host_not_allowed")
                if methods and request.method not in methods:
                    raise ApiError(405, f"{request.method} is not allowed here; use {' or '.join(methods)}.",
                                   code="method_not_allowed")
                with mapped():
                    return await view(request, *args)
            except ApiError as e:
                return e.response({"Allow": ", ".join(methods)} if e.status == 405 else None)
            except Exception:
                log.exception("%s %s failed", request.method, request.path)
                return ApiError(500, "The server failed; its log has the details.").response()

        return handle

    return decorate


def _model(name: str, created) -> dict:
    return {"id": name, "object": "model", "created": int(created.timestamp()), "owned_by": "exoclaw"}


@database_sync_to_async
def _enabled_agents() -> list[tuple[str, object]]:
    return list(Agent.objects.filter(enabled=True).order_by("name").values_list("name", "created"))


@endpoint("GET")
async def models(request):
    """The enabled agents this token may name, as OpenAI's model list."""
    who = await caller(request)
    data = [_model(name, created) for name, created in await _enabled_agents() if who.may_use(name)]
    return JsonAnswer({"object": "list", "data": data})


@endpoint("GET")
async def model(request, model: str):
    who = await caller(request)
    agent = await enabled_agent(model)
    if agent is None or not who.may_use(model):
        raise model_not_found(model)
    return JsonAnswer(_model(agent.name, agent.created))


@endpoint()
async def unknown_url(request):
    raise ApiError(404, f"Unknown URL: {request.method} {request.path}. This server has GET /v1/models and "
                   "POST /v1/chat/completions.", code="unknown_url")


async def _body(request: Request) -> bytes:
    body = await request.body()
    if body is None:
        raise ApiError(413, f"The request body is larger than {settings.OPENAI_COMPAT_MAX_BODY_BYTES} bytes.",
                       code="request_too_large")
    return body


@endpoint("POST")
async def chat_completions(request):
    who = await caller(request)
    chat = parse_chat(loads(await _body(request)))
    conversation = conversation_id(request.headers.get(CONVERSATION_HEADER.lower()))
    if await enabled_agent(chat.model) is None:
        raise model_not_found(chat.model)
    if conversation:
        # The conversation's stored history is the context; only the last user message is new.
        route, context = Message(channel=CHANNEL, peer=conversation), None
    else:
        # Self-contained: the request's messages are the context, recorded in a session of its own.
        route, context = Message(channel=CHANNEL, peer=REQUEST_PEER + uuid.uuid4().hex), chat.context
    started = await service.start(who.origin, chat.text, route=route, agent=chat.model, context=context)
    created = int(time.time())
    headers = {"X-Exoclaw-Run-Id": started.run_id, "X-Exoclaw-Session-Key": started.session_key}
    if conversation:
        headers[CONVERSATION_HEADER] = conversation
    events = _follow(who.origin, started)
    if chat.stream:
        return EventStream(_sse(events, started.run_id, chat.model, created, chat.include_usage), headers)
    return await _whole(events, started.run_id, chat.model, created, headers)


async def _follow(origin: service.Origin, started: service.Started):
    """The run's events; if the reader stops before the run's last one (its client went away), the
    run is aborted."""
    ended = False
    try:
        async for event in service.events(origin, started.run_id, admitted=started.admitted):
            ended = event["type"] in ("done", "error")
            yield event
    finally:
        if not ended:
            _abort_soon(origin, started.run_id)


def _abort_soon(origin: service.Origin, run_id: str) -> None:
    # A task of its own: the request's task is being cancelled or closed, and the abort must not be.
    task = asyncio.get_running_loop().create_task(_abort(origin, run_id), name=f"openai-abort-{run_id}")
    _aborting.add(task)
    task.add_done_callback(_aborting.discard)


async def _abort(origin: service.Origin, run_id: str) -> None:
    try:
        if await service.abort(origin, run_id):
            log.info("run %s aborted: its API client went away", run_id)
    except Exception:
        log.exception("aborting run %s after its API client went away failed", run_id)


async def _whole(events, run_id: str, model: str, created: int, headers: dict) -> JsonAnswer:
    text = []
    async with aclosing(events):
        async for event in events:
            if event["type"] == "delta":
                text.append(event["text"])
            elif event["type"] == "done":
                return JsonAnswer(responses.completion(run_id, model, created, "".join(text), event),
                                  headers=headers)
            elif event["type"] == "error":
                status, code, message = responses.run_failed(event)
                raise ApiError(status, message, code=code)
    raise ApiError(500, f"Run {run_id} ended without an ending.")


async def _sse(events, run_id: str, model: str, created: int, include_usage: bool):
    def chunk(**fields) -> bytes:
        return responses.sse(responses.chunk(run_id, model, created, with_usage=include_usage, **fields))

    async with aclosing(events):
        yield chunk(delta={"role": "assistant", "content": ""})
        async for event in events:
            if event["type"] == "delta":
                yield chunk(delta={"content": event["text"]})
            elif event["type"] == "done":
                yield chunk(finish=responses.finish_reason(event.get("stop_reason")))
                if include_usage:
                    yield responses.sse(responses.chunk(run_id, model, created, run_usage=event.get("usage") or {}))
            elif event["type"] == "error":
                # The status line went out with the first chunk: the error travels in the stream, as
                # OpenAI's does, and the stream ends without [DONE].
                status, code, message = responses.run_failed(event)
                yield responses.sse(ApiError(status, message, code=code).body())
                return
        yield responses.DONE
