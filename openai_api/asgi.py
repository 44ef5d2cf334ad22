"""The ASGI app behind /v1/ (mounted in exoclaw/asgi.py ahead of Django, as /mcp is): route the
request to its view, and write the view's answer while listening for the client going away.

Not Django's URL table and middleware: they cost about 4 ms a request (each middleware's hooks hop to
a thread and back; docs/benchmarks.md), more than exoclaw's whole path to a run's first token. The
API uses none of them (no cookies, sessions, CSRF or pages): the views check the Host as Django would,
and reach the database only through `database_sync_to_async`, which closes stale connections around
each call, as Django's request signals would."""

import asyncio

from django.conf import settings

from . import views
from .http import Request

PREFIX = "/v1"


def serves(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def resolve(path: str):
    """The view for a path under /v1/, and its arguments."""
    match path.removeprefix(PREFIX + "/").split("/"):
        case ["models"]:
            return views.models, ()
        case ["models", name] if name:
            return views.model, (name,)
        case ["chat", "completions"]:
            return views.chat_completions, ()
        case _:
            # Anything else under /v1/ answers in OpenAI's shape too, not with an HTML page.
            return views.unknown_url, ()


async def _answer(request: Request, send) -> None:
    view, args = resolve(request.path)
    answer = await view(request, *args)
    await answer.write(send)


async def application(scope, receive, send):
    request = Request(scope, receive, settings.OPENAI_COMPAT_MAX_BODY_BYTES)
    listening = asyncio.create_task(request.listen())
    answering = asyncio.create_task(_answer(request, send))
    try:
        await asyncio.wait((listening, answering), return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Whichever is still going: the answer is written, so stop listening; or the client went away,
        # so stop answering (which aborts its run).
        listening.cancel()
        answering.cancel()
    await asyncio.wait((listening, answering))
    # A failure to read the request or to write the answer goes to the server's log.
    failures = [task.exception() for task in (answering, listening) if not task.cancelled()]
    for failure in failures:
        if failure is not None:
            raise failure
