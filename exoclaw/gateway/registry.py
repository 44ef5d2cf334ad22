"""The method table: name → handler, the scope it needs and its parameters.

Another module adds or replaces a method with one decorator, typically from its AppConfig.ready():

    from exoclaw.gateway.registry import Param, method

    @method("chat.send", scope="chat", params={"text": Param(str, required=True)})
    async def chat_send(ctx, *, text):
        ...

Handlers are `async def handler(ctx, **params)`; they return a JSON-serialisable result or raise an
`exoclaw.gateway.errors.RpcError`. Anything else they raise is answered as an Internal error.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidParams, NotAvailable

SCOPES = ("chat", "sessions:read", "sessions:write", "admin")
ANY_PARAMS = "any"

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Param:
    kind: type | tuple[type, ...]
    required: bool = False
    default: Any = None
    max_length: int | None = None


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", dict: "an object", list: "an array"}


def _is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def bind_params(name: str, spec: dict[str, Param] | None, params: Any) -> dict:
    """Check `params` against `spec` and return the keyword arguments for the handler."""
    if params is None or params == [] or params == {}:
        params = {}
    elif not isinstance(params, dict):
        raise InvalidParams("params", f"must be an object: {name} takes parameters by name")
    spec = spec or {}
    for key in params:
        if key not in spec:
            known = ", ".join(sorted(spec)) or "none"
            raise InvalidParams(key, f"is not a parameter of {name} (parameters: {known})")
    bound = {}
    for key, p in spec.items():
        if key not in params:
            if p.required:
                raise InvalidParams(key, "is required")
            bound[key] = p.default
            continue
        value = params[key]
        if not _is_kind(value, p.kind):
            kinds = p.kind if isinstance(p.kind, tuple) else (p.kind,)
            raise InvalidParams(key, "must be " + " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds))
        if p.max_length is not None and len(value) > p.max_length:
            raise InvalidParams(key, f"is longer than {p.max_length}")
        bound[key] = value
    return bound


@dataclass(frozen=True)
class Method:
    name: str
    handler: Handler
    scope: str | None
    params: dict[str, Param] | str | None = None
    public: bool = False
    reserved: bool = False

    def bind(self, params: Any) -> dict:
        if self.params == ANY_PARAMS:
            return {}
        return bind_params(self.name, self.params, params)


def _not_available(name: str) -> Handler:
    async def handler(ctx):
        raise NotAvailable(f"{name} is reserved; its implementation is not installed yet", method=name)

    return handler


@dataclass
class Registry:
    methods: dict[str, Method] = field(default_factory=dict)

    def register(
        self,
        name: str,
        handler: Handler,
        *,
        scope: str | None,
        params: dict[str, Param] | str | None = None,
        public: bool = False,
    ) -> Method:
        """Add `name`, replacing whatever had that name. `scope` None: any authenticated principal;
        `public`: callable before authentication too."""
        if scope is not None and scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r} for {name}; use one of {', '.join(SCOPES)} or None")
        m = Method(name, handler, scope, params, public)
        self.methods[name] = m
        return m

    def method(self, name: str, *, scope: str | None, params: dict[str, Param] | str | None = None, public: bool = False):
        def decorator(handler: Handler) -> Handler:
            self.register(name, handler, scope=scope, params=params, public=public)
            return handler

        return decorator

    def reserve(self, name: str, *, scope: str) -> None:
        """Hold `name` for a later part: it answers Not available until someone registers it."""
        if name not in self.methods:
            self.methods[name] = Method(name, _not_available(name), scope, ANY_PARAMS, reserved=True)

    def get(self, name: str) -> Method | None:
        return self.methods.get(name)


registry = Registry()
method = registry.method

for _name, _scope in (
    ("chat.send", "chat"),
    ("chat.abort", "chat"),
    ("chat.subscribe", "chat"),
    ("sessions.list", "sessions:read"),
    ("sessions.history", "sessions:read"),
    ("sessions.reset", "sessions:write"),
):
    registry.reserve(_name, scope=_scope)
