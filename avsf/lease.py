"""A claim on a file that outlives no worker: flock for one machine, a heartbeat lease for many.

    lease = Lease.acquire(folder / ".claim", ttl_s=600)   # None: another live worker holds it
    with lease:                                            # heartbeat runs; released (file removed) on exit
        ...

Two signals decide whether a claim is held, so that a dead worker never blocks a run:
- flock on the file: the kernel drops it when the holding process dies, so on one machine a
  crashed or killed worker's claim is free at once.
- the lease written into the file (host, pid, worker, heartbeat time), refreshed every ttl/4 by a
  daemon thread: workers on other machines sharing the folder over NFS see a claim as live while
  its heartbeat is younger than ttl. A remote worker that died leaves a lease that goes stale
  after ttl; it may also leave its flock behind (NFS keeps a crashed client's lock until that
  client comes back), so a stale lease is taken over even when the flock cannot be had.
Clocks of the machines must agree to well within ttl (NTP); the default ttl is 10 minutes.
A takeover on another machine waits `SETTLE_S` and reads the lease again, so that of two workers
taking over the same stale lease at once, the one whose write was overwritten backs off.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable

TTL_S = 600.0
SETTLE_S = 0.5


def _read(f: IO[str]) -> dict[str, Any] | None:
    f.seek(0)
    try:
        lease = json.loads(f.read() or "null")
    except json.JSONDecodeError:
        return None  # being rewritten: treated as live unless the file's mtime is stale
    return lease if isinstance(lease, dict) else None


def _age(lease: dict[str, Any] | None, f: IO[str]) -> float:
    """Seconds since the holder's last heartbeat (the file's mtime when the lease is unreadable)."""
    beat = lease.get("heartbeat") if lease else None
    if not isinstance(beat, (int, float)):
        beat = os.fstat(f.fileno()).st_mtime
    return time.time() - float(beat)


def _peek(path: str | Path, look: Callable[[dict[str, Any] | None, IO[str]], Any]) -> Any:
    """`look(lease, file)` on the claim file at `path` without taking it; None when there is none."""
    try:
        with open(path) as f:
            return look(_read(f), f)
    except OSError:
        return None


class Lease:
    """A held claim; see the module docstring. Use as a context manager (or call release())."""

    def __init__(self, path: Path, f: IO[str], ttl_s: float, worker: str, locked: bool):
        self.path, self.f, self.ttl_s, self.worker, self.locked = path, f, ttl_s, worker, locked
        self.host, self.since = socket.gethostname(), time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking it
    @classmethod
    def acquire(cls, path: str | Path, *, ttl_s: float = TTL_S, worker: str = "") -> Lease | None:
        path = Path(path)
        while True:
            f = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o666), "r+")  # not "a+": writes would append
            locked = _try_flock(f)
            if locked and not _same_file(f, path):  # its holder released (removed) it meanwhile
                f.close()
                continue
            lease = _read(f)
            new = os.fstat(f.fileno()).st_size == 0
            here = lease is not None and lease.get("host") == socket.gethostname()
            stale = not new and _age(lease, f) > ttl_s
            # Locked: no live holder on this machine (a lease of this host is a dead worker's).
            # Not locked: a live local holder, or a dead remote one whose NFS lock lingers: only
            # its stale lease frees it.
            free = (new or here or stale) if locked else stale
            if not free:
                f.close()
                return None
            claim = cls(path, f, ttl_s, worker, locked)
            claim._write()
            if not (here and locked) and not claim._still_mine():
                claim.f.close()
                return None
            claim._start()
            return claim

    @staticmethod
    def holder(path: str | Path) -> str:
        """Who holds the claim at `path`, in words (for log lines)."""
        lease = _peek(path, lambda lease, f: lease)
        if not lease:
            return "another worker"
        return f"{lease.get('worker') or 'a worker'} (pid {lease.get('pid')} on {lease.get('host')})"

    @staticmethod
    def is_live(path: str | Path) -> bool:
        """A claim is at `path` and not stale by `acquire`'s rule (its heartbeat, or the file's
        mtime, within the lease's ttl). For estimates only: whether a claim can be taken is
        decided by taking it."""
        def live(lease: dict[str, Any] | None, f: IO[str]) -> bool:
            ttl = lease.get("ttl_s") if lease else None
            return _age(lease, f) <= (float(ttl) if isinstance(ttl, (int, float)) else TTL_S)

        return bool(_peek(path, live))

    # -- keeping it
    def _write(self) -> None:
        data = json.dumps({"host": self.host, "pid": os.getpid(), "worker": self.worker, "since": self.since,
                           "heartbeat": time.time(), "ttl_s": self.ttl_s})
        # Overwrite, then cut: a reader never sees an empty file (only, rarely, a torn one).
        self.f.seek(0)
        self.f.write(data)
        self.f.truncate()
        self.f.flush()
        os.fsync(self.f.fileno())

    def _still_mine(self) -> bool:
        """After a takeover without a local lock: did another machine's worker write after us?"""
        time.sleep(SETTLE_S)
        try:
            with open(self.path) as f:  # a fresh open: NFS revalidates the file on open
                lease = _read(f)
        except OSError:
            return False
        return bool(lease) and lease.get("host") == self.host and lease.get("pid") == os.getpid()

    def _start(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.ttl_s / 4):
                try:
                    self._write()
                except (OSError, ValueError):  # the file was closed by release(): stop
                    return

        self._thread = threading.Thread(target=beat, name=f"lease-{self.path.parent.name}", daemon=True)
        self._thread.start()

    # -- giving it back
    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if _same_file(self.f, self.path):
                self.path.unlink()  # while still holding the lock: a waiter sees the file gone
        except OSError:
            pass
        self.f.close()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _try_flock(f: IO[str]) -> bool:
    import fcntl

    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _same_file(f: IO[str], path: Path) -> bool:
    try:
        return os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
