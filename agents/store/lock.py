"""One process per embedded store: SurrealKV takes no lock itself, and two processes on one path each
silently see only their own writes."""

import fcntl
import os
from pathlib import Path

from .errors import StoreLocked


class EmbeddedLock:
    """An exclusive `flock` on `<data path>.lock`, held while the store is open.

    flock conflicts between open file descriptions, so a second opener in the same process is refused
    too, and the kernel drops the lock when the holder dies: no stale lock files after a crash.
    """

    def __init__(self, data_path: str):
        self.path = Path(f"{data_path.rstrip('/')}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreLocked(
                f"The session store {self.path.with_suffix('')} is already open in another process (pid {holder}). "
                "The embedded SurrealKV engine serves one process only; for several processes run a SurrealDB "
                "server and set SURREALDB_URL=ws://HOST:PORT (with SURREALDB_USER and SURREALDB_PASS)."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
