"""The method table: name → handler, the scope it needs and its parameters.

Each app adds its methods with one decorator in its own `rpc.py`, imported from its
AppConfig.ready() (the gateway itself knows only `ping`, `auth` and `status`):

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

from .errors import InvalidParams

SCOPES = ("chat", "sessions:read", "sessions:write", "metrics", "tools", "admin")

Handler = Callable[..., Awaitable[Any]]
Scope = str | tuple[str, ...] | None


@dataclass(frozen=True)
class Param:
    kind: type | tuple[type, ...]
    required: bool = False
    default: Any = None
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    # Strings must be text (JSON lets a client send a lone surrogate, "\ud800", which no text has);
    # off only where the handler copes with anything, such as a token that is hashed and looked up.
    text: bool = True

    def check(self, name: str, value: Any) -> None:
        if not _is_kind(value, self.kind):
            kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
            raise InvalidParams(name, "must be " + " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds))
        if self.text and isinstance(value, str) and not _is_text(value):
            raise InvalidParams(name, "is not valid Unicode text (it holds a lone surrogate)")
        if self.max_length is not None and len(value) > self.max_length:
            raise InvalidParams(name, f"is longer than {self.max_length}")
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            if self.maximum is None:
                raise InvalidParams(name, f"must be {self.minimum} or more")
            raise InvalidParams(name, f"must be from {self.minimum} to {self.maximum}")


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", dict: "an object", list: "an array"}


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
        p.check(key, value)
        bound[key] = value
    return bound


@dataclass(frozen=True)
class Method:
    name: str
    handler: Handler
    scope: Scope
    params: dict[str, Param] | None = None
    public: bool = False

    def bind(self, params: Any) -> dict:
        return bind_params(self.name, self.params, params)


@dataclass
class Registry:
    methods: dict[str, Method] = field(default_factory=dict)

    def register(
        self,
        name: str,
        handler: Handler,
        *,
        scope: Scope,
        params: dict[str, Param] | None = None,
        public: bool = False,
    ) -> Method:
        """Add `name`, replacing whatever had that name. `scope` None: any authenticated principal; a
        tuple: a principal holding any of them; `public`: callable before authentication too."""
        for s in (scope,) if isinstance(scope, str) else scope or ():
            if s not in SCOPES:
                raise ValueError(f"unknown scope {s!r} for {name}; use one of {', '.join(SCOPES)} or None")
        m = Method(name, handler, scope, params, public)
        self.methods[name] = m
        return m

    def method(self, name: str, *, scope: Scope, params: dict[str, Param] | None = None, public: bool = False):
        def decorator(handler: Handler) -> Handler:
            self.register(name, handler, scope=scope, params=params, public=public)
            return handler

        return decorator

    def get(self, name: str) -> Method | None:
        return self.methods.get(name)


registry = Registry()
method = registry.method

