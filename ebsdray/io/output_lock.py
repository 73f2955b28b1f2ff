"""One writer per output directory: an OS-level lock held for the whole job.

``flock`` on ``output_dir/.ebsdray.lock``: a second job (another process, here or on a host that
shares the file system with working ``flock``) is refused with a message naming the holder
(host, pid, start time); the lock dies with its process, so a job that crashed or was killed
leaves nothing to clean up and the next job simply takes over.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".ebsdray.lock"


class OutputDirBusy(RuntimeError):
    """Another running job holds the output directory."""


class OutputLock:
    """An exclusive lock on ``output_dir`` (created if missing); release with :meth:`release`."""

    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        self._fd: int | None = None
        self.output_dir = Path(output_dir).expanduser().resolve()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputDirBusy(
                f"{self.output_dir} is in use by another running job ({holder}); wait for it to "
                "finish, stop it, or choose another output_dir"
            ) from None
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the directory up (idempotent; process exit does the same)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # a store dropped without release still frees its directory
        self.release()
