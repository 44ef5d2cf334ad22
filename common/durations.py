"""Durations as people type them on the command line: `30d`, `12h`, `2w`, `90m`, `45s`."""

import datetime as dt
import re

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.ASCII)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> dt.timedelta:
    """The timedelta `text` names; ValueError, saying how to write one, for anything else."""
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"not a duration: {text!r} (use a number and a unit s, m, h, d or w, e.g. 30d)")
    try:
        return dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    except OverflowError:
        raise ValueError(f"{text!r} is longer than any date can reach") from None
