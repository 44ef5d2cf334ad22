"""`sessions.list`, `sessions.history`, `sessions.reset` and `sessions.follow` in the gateway's method table.

The methods themselves live in `agents/session_methods.py` (params in, JSON-ready result out); this
module declares their parameters and scopes to the gateway and maps the store's errors once. It also
holds the session's group: `sessions.follow` joins a connection to it, and `chat.send` announces each
new run there (`announce_run`), so a follower learns of runs that start after it asked.
"""

from agents.session_methods import METHODS, SCOPES
from agents.store import InvalidInput, SessionNotFound
from exoclaw.gateway.errors import InvalidParams, NotFound
from exoclaw.gateway.notify import group_name, notify_group
from exoclaw.gateway.registry import Param, registry

RUN_NOTIFICATION = "sessions.run"

FIELD = 128
PARAMS = {
    "sessions.list": {
        "agent": Param(str, max_length=50),
        "channel": Param(str, max_length=FIELD),
        "peer": Param(str, max_length=FIELD),
        "q": Param(str, max_length=200),
        "limit": Param(int),
        "cursor": Param(str, max_length=100),
    },
    "sessions.history": {
        "session_key": Param(str, required=True, max_length=600),
        "limit": Param(int),
        "before_seq": Param(int),
    },
    "sessions.reset": {"session_key": Param(str, required=True, max_length=600)},
    "sessions.follow": {"session_key": Param(str, required=True, max_length=600)},
}


def session_group(session_key: str) -> str:
    return group_name("session", session_key)


async def announce_run(*, session_key: str, session_id: str, run_id: str, agent: str, queued: bool) -> None:
    """Tell the connections following this session (`sessions.follow`) that a run was accepted."""
    await notify_group(session_group(session_key), RUN_NOTIFICATION, {
        "session_key": session_key, "session_id": session_id, "run_id": run_id, "agent": agent, "queued": queued,
    })


def _handler(name: str):
    method = METHODS[name]

    async def handler(ctx, **params):
        given = {k: v for k, v in params.items() if v is not None}
        try:
            if name == "sessions.follow":
                return await method(given, join=lambda key: ctx.join(session_group(key)))
            return await method(given)
        except InvalidInput as e:
            raise InvalidParams("params", str(e)) from None
        except SessionNotFound as e:
            raise NotFound(str(e), reason="no_session") from None

    handler.__doc__ = method.__doc__
    return handler


for _name in METHODS:
    registry.register(_name, _handler(_name), scope=SCOPES[_name], params=PARAMS[_name])
