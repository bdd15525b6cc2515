"""How many CPU cores this process may use: one notion for every split of the machine (the
trainer's automatic intra-op threads, the study workers' `--workers auto` and their thread share).
Torch-free, so the CLI and the study runner can ask without importing torch."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, as in a
    container or under taskset), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
