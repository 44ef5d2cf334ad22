"""What `doctor` reports (exoclaw/doctor.py): one finding, with a stable id, a severity and the fix.

Each app keeps the checks of its own rows next to it (`sandbox/doctor.py`, `webhooks/doctor.py`) and
returns these; exoclaw/doctor.py adds the deployment's settings and runs them all.
"""

from dataclasses import asdict, dataclass

from common.commands import invoked_as_exoclaw

HIGH, MEDIUM, LOW = "high", "medium", "low"
SEVERITIES = (HIGH, MEDIUM, LOW)


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str
    message: str
    fix: str

    def as_json(self) -> dict:
        return asdict(self)


def command(args: str) -> str:
    """A command line for a fix, as the user runs our commands: `exoclaw …` or `.venv/bin/python manage.py …`."""
    return f"{'exoclaw' if invoked_as_exoclaw() else '.venv/bin/python manage.py'} {args}"
