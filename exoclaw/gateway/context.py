"""What a method handler knows about, and can do with, the connection that called it."""

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .auth import Principal
from .errors import RpcError, TooManyRuns
from .jsonrpc import encode, notification

logger = logging.getLogger(__name__)


class RunSlot:
    """One of a connection's run slots; release() it when the run ends (idempotent)."""

    def __init__(self, ctx: "Context"):
        self._ctx = ctx
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._ctx.runs -= 1


class Context:
    """Per-connection state passed to every handler as its first argument.

    - `principal` (None before authentication), `scopes`, `client` (peer address), `connection_id`
    - `channel_name`: the channel-layer name to send `gateway.notify` messages to this connection
    - `notify(method, params)`: send a notification to this client now
    - `join(group)` / `leave(group)`: receive `gateway.notify` messages sent to a group
    - `claim_run()`: take one of the connection's run slots (raises TooManyRuns), `runs`: slots taken
    - `on_close(callback)`: called (sync or async) when the connection closes
    - `end(error)`: close the connection now, telling the client why (`gateway.closing`)
    """

    def __init__(
        self,
        *,
        connection_id: str,
        channel_name: str,
        client: str,
        max_runs: int,
        send_text: Callable[[str], Awaitable[None]],
        group_add: Callable[[str], Awaitable[None]],
        group_discard: Callable[[str], Awaitable[None]],
        end: Callable[["RpcError"], Awaitable[None]],
    ):
        self.connection_id = connection_id
        self.channel_name = channel_name
        self.client = client
        self.max_runs = max_runs
        self.principal: Principal | None = None
        self.runs = 0
        self.groups: set[str] = set()
        self._send_text = send_text
        self._group_add = group_add
        self._group_discard = group_discard
        self._end = end
        self._on_close: list[Callable[[], Any]] = []

    @property
    def scopes(self) -> frozenset[str]:
        return self.principal.scopes if self.principal else frozenset()

    async def notify(self, method: str, params: Any = None) -> None:
        await self._send_text(encode(notification(method, params)))

    async def join(self, group: str) -> None:
        if group not in self.groups:
            await self._group_add(group)
            self.groups.add(group)

    async def leave(self, group: str) -> None:
        if group in self.groups:
            self.groups.discard(group)
            await self._group_discard(group)

    def claim_run(self) -> RunSlot:
        if self.runs >= self.max_runs:
            raise TooManyRuns(f"this connection already has {self.runs} runs going", limit=self.max_runs)
        self.runs += 1
        return RunSlot(self)

    async def end(self, error: RpcError) -> None:
        """Close the connection as refused (no method works from now on), saying why."""
        self.principal = None
        await self._end(error)

    def on_close(self, callback: Callable[[], Any]) -> None:
        self._on_close.append(callback)

    async def close(self) -> None:
        """Run the on_close callbacks and leave every group; called once by the consumer."""
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("on_close callback of connection %s failed", self.connection_id)
        for group in list(self.groups):
            await self.leave(group)
