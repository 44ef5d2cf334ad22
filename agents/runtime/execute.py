"""Executing one run: load its context and tools, run the tool loop, persist, publish its events.

Every completed message is stored before the next event that depends on it, and always before
`done`. A run that ends early (abort, LLM error, a crash) stores the partial assistant text with a
marker (`interrupted`), answers tool calls left without results, and records the outcome on the run.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

from agents.models import Agent
from agents.providers import get_provider, request_for
from common import metrics
from common.logcontext import log_context

from . import persist
from .board import publish
from .loop import LLMFailed, Transcript, run_tool_loop
from .tools import load_toolbox, make_executor

log = logging.getLogger(__name__)


class RunEnded(Exception):
    """The board refused an event: another process ended this run (its lease lapsed, or an abort won)."""


@dataclass
class RunControl:
    aborted: bool = False


def ms_since(wall_start: float) -> float:
    return round((time.time() - wall_start) * 1000, 3)


def make_stream(agent: Agent):
    provider = get_provider(agent)

    def stream(messages: list[dict], specs):
        # A copy: the loop appends to its list while the provider may still hold the request.
        return provider.stream(request_for(agent, list(messages), specs))

    return stream


async def _close_interrupted(store, transcript: Transcript, marker: str, why: str) -> None:
    if transcript.partial:
        await store({"role": "assistant", "content": [{"type": "text", "text": transcript.partial}]}, marker)
        transcript.partial = ""
    if transcript.pending:
        results = [
            {"type": "tool_result", "tool_use_id": c.id, "content": why, "is_error": True} for c in transcript.pending
        ]
        await store({"role": "user", "content": results}, marker)
        transcript.pending = []


def count_run(payload: dict, outcome: str, first_delta_ms: float | None = None) -> None:
    """Count a run that ended (`done`, `aborted`, `error` or `lost`) in the metrics."""
    metrics.RUNS.labels(agent=payload["agent"], outcome=outcome).inc()
    metrics.RUN_DURATION.observe(max(time.time() - payload["accepted_at"], 0.0))
    if first_delta_ms is not None:
        metrics.RUN_FIRST_DELTA.observe(first_delta_ms / 1000)


def _usage(t: Transcript) -> dict:
    return {"input_tokens": t.input_tokens, "output_tokens": t.output_tokens}


async def execute_run(payload: dict, control: RunControl) -> None:
    """Run the tool loop for a claimed run; the run's outcome is stored and published however it ends.
    The caller frees the session afterwards."""
    run_id = payload["run_id"]
    log_context(run_id=run_id, session_key=payload["session_key"])
    first_delta_ms = None
    begun: asyncio.Future | None = None

    async def settled() -> None:
        """Wait for the run's first writes; their failure, if any, was already raised to the loop."""
        if begun is not None:
            await asyncio.wait({begun})
            if not begun.cancelled() and begun.exception() is not None:
                log.error("run %s: storing its start failed: %s", run_id, begun.exception())

    async def store(message: dict, interrupted: str | None = None) -> None:
        if begun is not None:
            await begun
        await persist.add_message(payload, message, interrupted=interrupted)

    transcript = Transcript(persist=store)

    async def emit(kind: str, body: dict) -> None:
        nonlocal first_delta_ms
        if kind == "delta" and first_delta_ms is None:
            first_delta_ms = ms_since(payload["accepted_at"])
        if await publish(run_id, {"type": kind, **body}) is None:
            raise RunEnded(run_id)

    async def finish(status: str, body: dict, error: str | None = None) -> None:
        await settled()
        await persist.finish_run(
            payload, status, stop_reason=body.get("stop_reason"), usage=_usage(transcript), error=error,
            tool_calls=transcript.tool_calls,
        )
        if await publish(run_id, body, terminal=status) is not None:
            count_run(payload, status, first_delta_ms)

    async def store_after_failure(message: dict, interrupted: str) -> None:
        await settled()
        await persist.add_message(payload, message, interrupted=interrupted)

    try:
        agent = Agent.from_snapshot(payload["agent_snapshot"])
        # Both come before the LLM request and neither needs the other: the store read and the
        # tools' query (a thread hop) overlap.
        (system, context), toolbox = await asyncio.gather(
            persist.context_for(payload, agent.context_messages), load_toolbox(list(agent.tools or []))
        )
        if system:
            agent.system_prompt = "\n\n".join([p for p in [agent.system_prompt, *system] if p.strip()])
        user = {"role": "user", "content": [{"type": "text", "text": payload["text"]}]}
        # Written while the LLM is asked rather than before: the first delta does not wait for two
        # durable writes. Every later write waits for these, so the history keeps its order (and
        # the context read above cannot see the new user message twice).
        begun = asyncio.ensure_future(persist.begin_run(payload, user))
        stop = await run_tool_loop(
            messages=context + [user],
            toolbox=toolbox,
            stream=make_stream(agent),
            execute=make_executor(agent.name),
            emit=emit,
            transcript=transcript,
            max_tool_rounds=agent.max_tool_rounds,
        )
        timings = {"first_delta_ms": first_delta_ms, "total_ms": ms_since(payload["accepted_at"])}
        await finish("done", {"type": "done", "stop_reason": stop, "usage": _usage(transcript), "timings": timings})
    except asyncio.CancelledError:
        if not control.aborted:
            raise
        await _close_interrupted(store_after_failure, transcript, "aborted", "Cancelled: the run was aborted.")
        timings = {"first_delta_ms": first_delta_ms, "total_ms": ms_since(payload["accepted_at"])}
        await finish("aborted", {"type": "done", "stop_reason": "aborted", "usage": _usage(transcript), "timings": timings})
    except RunEnded:
        log.warning("run %s was ended by another process; this worker stops executing it", run_id)
    except LLMFailed as e:
        await _close_interrupted(store_after_failure, transcript, "error", f"Not run: the LLM request failed ({e.reason}).")
        await finish("error", {"type": "error", "reason": e.reason, "message": e.message}, error=f"{e.reason}: {e.message}")
    except Exception:
        log.exception("run %s failed", run_id)
        await _close_interrupted(store_after_failure, transcript, "error", "Not run: the run failed.")
        message = "The run failed inside exoclaw; the server log has the details."
        await finish("error", {"type": "error", "reason": "internal_error", "message": message}, error=message)
