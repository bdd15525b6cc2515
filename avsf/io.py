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


def _atomic(path: str | Path, mode: str, write: Callable[[IO], None]) -> None:
    """Write into a temporary file beside `path`, fsync it, then os.replace it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    _atomic(path, "wb", lambda f: f.write(data))


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
