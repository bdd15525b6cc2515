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

from avsf.config import ConfigError


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


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    _atomic(path, "wb", lambda f: f.write(data))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Sorted, indented JSON; NaN/inf are refused (JSON has no such numbers)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=str) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    _atomic(path, "wb", lambda f: torch.save(obj, f))


class UnreadableFile(ConfigError):
    """A file avsf was asked to load is damaged, or holds more than plain data."""


def load_torch_file(path: str | Path, map_location: Any = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`: tensors, numbers, strings and plain containers only,
    so a crafted file cannot run code while it loads. Errors name the file and say what to do."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.is_file():
        raise UnreadableFile(f"{path} does not exist (give a run folder or a checkpoint file)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UnreadableFile(
            f"{path} holds objects other than tensors and plain containers ({first[:200]}); avsf loads "
            f"weights only and never runs code from a file: re-save its state dict (torch.save(model.state_dict()))"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise UnreadableFile(f"{path} cannot be read: it is truncated or damaged ({type(e).__name__}: "
                             f"{str(e)[:200]}); move it away (a run then restarts from scratch)") from None


def atomic_savefig(fig: Any, path: str | Path, **savefig_kwargs: Any) -> None:
    """matplotlib figure -> file; the format comes from the suffix."""
    fmt = Path(path).suffix.lstrip(".")
    _atomic(path, "wb", lambda f: fig.savefig(f, format=fmt, **savefig_kwargs))
