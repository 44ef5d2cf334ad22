"""`sessions.list`, `sessions.history` and `sessions.reset` in the gateway's method table.

The methods themselves live in `agents/session_methods.py` (params in, JSON-ready result out); this
module declares their parameters and scopes to the gateway and maps the store's errors once.
"""

from agents.session_methods import METHODS, SCOPES
from agents.store import InvalidInput, SessionNotFound
from exoclaw.gateway.errors import InvalidParams, NotFound
from exoclaw.gateway.registry import Param, registry

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
}


def _handler(name: str):
    method = METHODS[name]

    async def handler(ctx, **params):
        try:
            return await method({k: v for k, v in params.items() if v is not None})
        except InvalidInput as e:
            raise InvalidParams("params", str(e)) from None
        except SessionNotFound as e:
            raise NotFound(str(e), reason="no_session") from None

    handler.__doc__ = method.__doc__
    return handler


for _name in METHODS:
    registry.register(_name, _handler(_name), scope=SCOPES[_name], params=PARAMS[_name])
