"""Process-wide counters that `status` reports. The agent runtime calls run_started/run_finished."""

import time
from dataclasses import dataclass

STARTED = time.monotonic()


@dataclass
class Counters:
    connections: int = 0
    active_runs: int = 0


counters = Counters()


def uptime() -> float:
    return time.monotonic() - STARTED


def run_started() -> None:
    counters.active_runs += 1


def run_finished() -> None:
    counters.active_runs = max(0, counters.active_runs - 1)
