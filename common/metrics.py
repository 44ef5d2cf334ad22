"""The Prometheus metrics every exoclaw process keeps, and their text exposition for `GET /metrics`.

A leaf like the rest of `common`: the runtime, the sandbox, the providers, the gateway and the webhooks
each increment what they know; none of them knows about the others' metrics.

    from common import metrics
    metrics.RUNS.labels(agent="helper", outcome="done").inc()

Several processes (gateways and `runworker agent-runs` workers) count into one exposition through
prometheus-client's multiprocess mode: each process writes its values to memory-mapped files in
`PROMETHEUS_MULTIPROC_DIR` (settings.py turns it on, by default as `$EXOCLAW_VAR_DIR/metrics`,
whenever `REDIS_URL` makes the deployment distributed), and `/metrics` on any process of the host sums
them. Without it, each process reports its own values (one process serves everything then).
docs/deploy.md ("Metrics") says what that means for a deployment.
"""

import atexit
import os
import re
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import disable_created_metrics, generate_latest, multiprocess

# `_created` series double every counter's lines and are not written in multiprocess mode anyway.
disable_created_metrics()

_SECONDS_OF_A_RUN = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_SECONDS_OF_A_TOOL = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

RUNS = Counter(
    "exoclaw_runs", "Runs that ended, by agent and outcome (done, aborted, error, lost).", ["agent", "outcome"]
)
RUN_FIRST_DELTA = Histogram(
    "exoclaw_run_first_delta_seconds", "From accepting a run to its first streamed text.", buckets=_SECONDS_OF_A_RUN
)
RUN_DURATION = Histogram(
    "exoclaw_run_duration_seconds", "From accepting a run to its end.", buckets=_SECONDS_OF_A_RUN
)
TOOL_CALLS = Counter(
    "exoclaw_tool_calls",
    "Tool calls run in the sandbox, by plugin and outcome (ok, error: the plugin reported one, or the "
    "sandbox's error kind: timeout, out_of_memory, cancelled, host_denied, …).",
    ["plugin", "outcome"],
)
TOOL_CALL_SECONDS = Histogram(
    "exoclaw_tool_call_seconds", "How long a tool call took in the sandbox.", buckets=_SECONDS_OF_A_TOOL
)
LLM_REQUESTS = Counter(
    "exoclaw_llm_requests",
    "Requests to LLM providers, by provider and status: the HTTP status code, or the error kind when no "
    "answer came (timeout, connection); the offline echo provider counts each turn as ok.",
    ["provider", "status"],
)
GATEWAY_CONNECTIONS = Gauge(
    "exoclaw_gateway_connections", "Open WebSocket connections to the gateway.", multiprocess_mode="livesum"
)
WEBHOOK_EVENTS = Counter(
    "exoclaw_webhook_events",
    "Webhook requests by channel and how the ingress answered them (accepted, duplicate, skipped, "
    "unauthorized, payload_too_large, malformed, adapter_failed, not_found: channel is then 'unknown').",
    ["channel", "status"],
)


def multiprocess_dir() -> str:
    """The directory the processes of this host share their values in, or "" (each process alone)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


_LIVE_GAUGE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_processes(path: str) -> list[int]:
    """Drop the live gauges (open connections) of processes that are gone, killed ones included, so
    they stop counting; their counters and histograms stay, as Prometheus expects of a counter."""
    pids = {int(m.group(1)) for f in Path(path).glob("gauge_live*.db") if (m := _LIVE_GAUGE.match(f.name))}
    gone = sorted(pid for pid in pids if not _alive(pid))
    for pid in gone:
        multiprocess.mark_process_dead(pid, path)
    return gone


if multiprocess_dir():
    atexit.register(multiprocess.mark_process_dead, os.getpid(), multiprocess_dir())


def exposition() -> tuple[bytes, str]:
    """(body, content type) of every metric in the Prometheus text format."""
    path = multiprocess_dir()
    if not path:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    forget_dead_processes(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)
    return generate_latest(registry), CONTENT_TYPE_LATEST
