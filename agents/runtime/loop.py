"""The tool loop: stream a turn from the LLM, run the tools it asks for, feed the results back, repeat.

It is a plain async function over three callables, so tests drive it with the real echo provider and
the real sandbox and nothing from Channels:

- `stream(messages, tools)` yields the providers' common events for one LLM turn;
- `execute(tool, input)` runs one allowed tool and returns a `ToolOutcome`;
- `emit(type, body)` publishes a run event (`delta`, `tool_call`, `tool_result`).

Messages use content blocks (`text`, `tool_use`, `tool_result`). Each completed message goes to
`transcript.persist` before the next step, and the text of a turn still streaming is in
`transcript.partial`, so whoever cancels the loop can keep what was already said.
"""

import asyncio
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

from agents.providers.base import Error, Stop, TextDelta, ToolCallEnd, ToolSpec, Usage

from .tools import Toolbox, ToolOutcome

class LLMFailed(Exception):
    """The provider ended a turn with an error event."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Transcript:
    persist: Callable[[dict], Awaitable[None]]
    partial: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: list[dict] = field(default_factory=list)
    pending: list[ToolCallEnd] = field(default_factory=list)  # tool_use blocks stored without results yet

    async def add(self, message: dict) -> None:
        await self.persist(message)


async def _one_turn(stream: AsyncIterator, emit, transcript: Transcript) -> tuple[str, list[ToolCallEnd], str]:
    text: list[str] = []
    calls: list[ToolCallEnd] = []
    stop = "end_turn"
    transcript.partial = ""
    async for ev in stream:
        if isinstance(ev, TextDelta):
            text.append(ev.text)
            transcript.partial += ev.text
            await emit("delta", {"text": ev.text})
        elif isinstance(ev, ToolCallEnd):
            calls.append(ev)
        elif isinstance(ev, Usage):
            transcript.input_tokens += ev.input_tokens or 0
            transcript.output_tokens += ev.output_tokens or 0
        elif isinstance(ev, Stop):
            stop = ev.reason
        elif isinstance(ev, Error):
            raise LLMFailed(ev.kind, ev.message)
    return "".join(text), calls, stop


async def _run_call(call: ToolCallEnd, toolbox: Toolbox, execute, emit, transcript: Transcript, refuse: str) -> dict:
    tool = toolbox.lookup(call.name)
    await emit("tool_call", {"call_id": call.id, "name": call.name, "input": call.arguments})
    started = time.monotonic()
    if refuse:
        outcome = ToolOutcome(refuse, True, "max_tool_rounds")
    elif tool is None:
        outcome = ToolOutcome(f"There is no tool named {call.name!r} for this agent.", True, "not_allowed")
    elif call.error:
        outcome = ToolOutcome(f"The tool input was rejected: {call.error}", True, "bad_input")
    else:
        outcome = await execute(tool, call.arguments)
    duration = outcome.duration_ms or (time.monotonic() - started) * 1000
    name = call.name
    await emit(
        "tool_result",
        {
            "call_id": call.id,
            "name": name,
            "content": outcome.content,
            "is_error": outcome.is_error,
            "error_kind": outcome.error_kind,
            "duration_ms": round(duration, 3),
        },
    )
    transcript.tool_calls.append(
        {"call_id": call.id, "name": name, "input": call.arguments, "content": outcome.content,
         "is_error": outcome.is_error, "error_kind": outcome.error_kind, "duration_ms": round(duration, 3),
         "http": outcome.http}
    )
    return {"type": "tool_result", "tool_use_id": call.id, "content": outcome.content, "is_error": outcome.is_error}


async def run_tool_loop(
    *,
    messages: list[dict],
    toolbox: Toolbox,
    stream: Callable[[list[dict], tuple[ToolSpec, ...]], AsyncIterator],
    execute: Callable[[object, dict], Awaitable[ToolOutcome]],
    emit: Callable[[str, dict], Awaitable[None]],
    transcript: Transcript,
    max_tool_rounds: int,
) -> str:
    """Run turns until the LLM answers without tools; return the stop reason.

    `messages` is the context (history plus the new user message) and grows as the loop runs. The
    turn after the last allowed tool round still gets its tool calls answered, with errors, so the
    stored history stays valid for the next request, and the loop stops with `max_tool_rounds`.
    """
    specs = toolbox.specs()
    rounds = 0
    while True:
        text, calls, stop = await _one_turn(stream(messages, specs), emit, transcript)
        blocks = ([{"type": "text", "text": text}] if text else []) + [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in calls
        ]
        assistant = {"role": "assistant", "content": blocks}
        messages.append(assistant)
        transcript.partial = ""
        await transcript.add(assistant)
        if not calls:
            return stop
        transcript.pending = calls
        refuse = ""
        if rounds >= max_tool_rounds:
            refuse = f"Not run: this run reached its limit of {max_tool_rounds} tool rounds."
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_run_call(c, toolbox, execute, emit, transcript, refuse)) for c in calls]
        tool_message = {"role": "user", "content": [t.result() for t in tasks]}
        messages.append(tool_message)
        await transcript.add(tool_message)
        transcript.pending = []
        if refuse:
            return "max_tool_rounds"
        rounds += 1
