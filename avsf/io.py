"""Atomic file writes: a run killed at any instant leaves the old file or the new one, never half.

Every finished result, checkpoint, study record and report file goes through here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (os.umask would set it
    for a moment, a race with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic(path: str | Path, mode: str, write: Callable[[IO], None]) -> None:
    """Write into a temporary file beside `path`, fsync it, then os.replace it into place.

    mkstemp creates the file 0600; it gets the mode a plain open() would have given it
    (0666 less the umask), so a group sharing a disk can read results and checkpoints.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    _atomic(path, "w", lambda f: f.write(text))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Sorted, indented JSON; NaN/inf are refused (JSON has no such numbers)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=str) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    _atomic(path, "wb", lambda f: torch.save(obj, f))


def atomic_savefig(fig: Any, path: str | Path, **savefig_kwargs: Any) -> None:
    """matplotlib figure -> file; the format comes from the suffix."""
    fmt = Path(path).suffix.lstrip(".")
    _atomic(path, "wb", lambda f: fig.savefig(f, format=fmt, **savefig_kwargs))
