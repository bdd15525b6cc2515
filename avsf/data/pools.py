"""The start method for avsf's worker processes (synthetic-set generation, prepare).

Never "fork": a forked child inherits every lock another thread of the parent held at that instant
(a decoder's, an OpenMP pool's, a progress bar's monitor thread's) and waits on it forever. A long
parent (the test session, a study worker that has trained) has such threads, and CI once hung for
80 minutes in a forked synthetic-set worker. "forkserver" forks from a fresh single-threaded server,
so children start clean and cheaply; "spawn" where the platform has no forkserver.
"""

from __future__ import annotations

import multiprocessing as mp


def worker_context() -> mp.context.BaseContext:
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")
