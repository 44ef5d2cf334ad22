"""Pushing JSON-RPC notifications to gateway connections from anywhere in the project.

Every connection listens on its own channel (`ctx.channel_name`), on its connection group
(`connection_group(ctx.connection_id)`; clients learn their id from `status`) and on any group it joined
with `ctx.join(group)`. A channel-layer message of type `gateway.notify` reaching it is sent to the client
as `{"jsonrpc": "2.0", "method": ..., "params": ...}`. This works across processes when the channel
layer is Redis.
"""

import hashlib

from channels.layers import get_channel_layer

MESSAGE_TYPE = "gateway.notify"


def notify_message(method: str, params=None) -> dict:
    return {"type": MESSAGE_TYPE, "method": method, "params": params}


def group_name(kind: str, key: str) -> str:
    """A valid channel-layer group name for any key (session keys contain ':' and may be long)."""
    return f"exoclaw.{kind}.{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def connection_group(connection_id: str) -> str:
    return f"exoclaw.connection.{connection_id}"


async def notify_connection(connection_id: str, method: str, params=None) -> None:
    await notify_group(connection_group(connection_id), method, params)


async def notify_channel(channel_name: str, method: str, params=None) -> None:
    await get_channel_layer().send(channel_name, notify_message(method, params))


async def notify_group(group: str, method: str, params=None) -> None:
    await get_channel_layer().group_send(group, notify_message(method, params))
