"""Where runs meet the channel layer: the board for this process, publishing events, dispatching runs.

Run events do not travel as channel-layer messages: a layer drops messages for a full channel, and
a client that reconnects needs what it missed. They go into the run's log on the board, and each
gateway connection that follows the run reads the log from its last `seq` (`follow.py`).

The deployment mode follows the default channel layer, so there is one switch (`REDIS_URL`):

- Redis layer (distributed): runs go to the `agent-runs` channel, served by any number of
  `manage.py runworker agent-runs` processes; the board lives in Redis next to the layer, under the
  layer's prefix.
- In-memory layer (one process): a `channel` protocol app only runs under `runworker`, which would
  be a second process with its own memory, so the gateway process starts the same Channels `Worker`
  over the same `AgentRunConsumer` itself, on its own event loop, the first time it dispatches a run.
"""

import asyncio
import weakref

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from .board import MemoryBoard, RedisBoard

RUNS_CHANNEL = "agent-runs"

_boards: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()
_memory_boards: "weakref.WeakKeyDictionary[object, MemoryBoard]" = weakref.WeakKeyDictionary()
_embedded: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = weakref.WeakKeyDictionary()


def control_group(run_id: str) -> str:
    """The worker consumer executing a run (it listens here for `run.abort`)."""
    return f"runctl.{run_id}"


def distributed(layer=None) -> bool:
    return not isinstance(layer or get_channel_layer(), InMemoryChannelLayer)


def get_board():
    layer = get_channel_layer()
    if not distributed(layer):
        # One board per in-memory layer: the layer and the board hold the same process's runs.
        board = _memory_boards.get(layer)
        if board is None:
            board = _memory_boards[layer] = MemoryBoard(settings.AGENT_RUN_EVENTS_TTL)
        return board
    loop = asyncio.get_running_loop()
    board = _boards.get(loop)
    if board is None:
        # redis.asyncio connections belong to the loop that opened them.
        host = layer.hosts[0]
        board = _boards[loop] = RedisBoard(
            host["address"], layer.prefix, settings.AGENT_RUN_EVENTS_TTL, host.get("max_connections", 2000)
        )
    return board


async def publish(run_id: str, body: dict, *, terminal: str = "", only_if: str = "") -> dict | None:
    """Append an event to the run's log, where its followers pick it up; None if the run had already ended."""
    return await get_board().append(run_id, body, terminal=terminal, only_if=only_if)


async def dispatch(payload: dict) -> None:
    """Hand a run to whichever agent-run consumer is free."""
    layer = get_channel_layer()
    if not distributed(layer):
        _ensure_embedded_worker(layer)
    await layer.send(RUNS_CHANNEL, {"type": "agent.run", "run": payload})


def _ensure_embedded_worker(layer) -> None:
    from channels.routing import ChannelNameRouter
    from channels.worker import Worker

    from .consumer import AgentRunConsumer

    loop = asyncio.get_running_loop()
    task = _embedded.get(loop)
    if task is None or task.done():
        worker = Worker(ChannelNameRouter({RUNS_CHANNEL: AgentRunConsumer.as_asgi()}), [RUNS_CHANNEL], layer)
        _embedded[loop] = loop.create_task(worker.arun(), name="exoclaw-embedded-agent-worker")
