"""Repository-wide pytest setup: CPU-only, quiet, deterministic thread counts."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
