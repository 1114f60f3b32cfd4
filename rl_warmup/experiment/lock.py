"""One process at a time in a run directory (or a comparison's output directory).

A lock is a file created atomically (``O_EXCL``) holding the owner's host name and pid. A second
process finds it and stops with a message naming the owner; a lock left by a process that no
longer runs (killed, out of memory) is taken over with a warning. On another host the owner's
liveness cannot be checked, so such a lock is respected: the message says which file to delete.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path
from types import TracebackType


class LockedError(RuntimeError):
    """Another live process holds the lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class DirectoryLock:
    """``with DirectoryLock(directory / ".lock", "run"):`` holds the lock for the block.

    :param path: the lock file (its directory is created).
    :param what: what is locked, for the messages (e.g. ``"the run"``).
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self.owned = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:  # just created and not yet written, or damaged
                    try:
                        fresh = time.time() - self.path.stat().st_mtime < 10
                    except FileNotFoundError:
                        continue
                    if fresh:
                        raise LockedError(f"{self.what} is being locked by another process ({self.path})") from None
                    owner = {}
                host, pid = owner.get("host"), owner.get("pid")
                if isinstance(pid, int) and host == me["host"] and pid == me["pid"]:
                    raise LockedError(f"{self.what} is already locked by this process ({self.path})") from None
                if isinstance(pid, int) and host == me["host"] and _alive(pid):
                    raise LockedError(
                        f"{self.what} is in use by process {pid} on this machine ({self.path}); wait for it to "
                        "finish or stop it, then run the command again"
                    ) from None
                if isinstance(pid, int) and host is not None and host != me["host"]:
                    raise LockedError(
                        f"{self.what} is in use by process {pid} on host {host} ({self.path}); if that process "
                        "is gone, delete the lock file and run the command again"
                    ) from None
                warnings.warn(
                    f"taking over {self.path}: the process that held it ({owner or 'unknown'}) no longer runs",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.owned = True
            return
        raise LockedError(f"could not lock {self.what} ({self.path}): another process keeps taking it")

    def _owner(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def release(self) -> None:
        if self.owned:
            self.path.unlink(missing_ok=True)
            self.owned = False

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
