"""What produced a result: the code (avsf version, git commit, uncommitted changes), the
libraries, the machine and the time. result.json carries it as `provenance`; reports reuse it.

    {"avsf_version", "git_commit", "git_dirty", "torch", "python", "host", "created"}

`git_commit` / `git_dirty` are None when avsf does not run from a git checkout (an installed
wheel) or git is missing. `git_dirty` looks at the files that make numbers (CODE_PATHS), not at
docs or at reports/: regenerating a committed report rewrites its own files, which must not
mark the new report as coming from modified code.
"""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _git(*args: str) -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


CODE_PATHS = ("avsf", "studies", "bench", "pyproject.toml", "noxfile.py")
"""Paths (from the repository root) whose uncommitted changes make `git_dirty` true."""


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """avsf version, git commit and dirty flag of the code this process runs (read once)."""
    from avsf import __version__

    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS) if commit else None
    return {
        "avsf_version": __version__,
        "git_commit": commit.strip() if commit else None,
        "git_dirty": bool(status.strip()) if status is not None else None,
    }


def provenance() -> dict[str, Any]:
    """The full record, `created` now (UTC)."""
    import torch

    return {
        **code_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
