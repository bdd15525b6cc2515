"""When a run has stopped improving (PLAN contract 6; docs/training.md "Convergence").

A run is converged when it has more than k = `train.plateau_window` validation evaluations and
the best validation top-1 of the last k beats the best of all before them by at most
`train.plateau_tol` (a fraction: 0.02 = 2 points): the last k evaluations brought no meaningful
gain. With `train.early_stop` the run stops at the first epoch >= `train.min_epochs` where this
holds, and is tested on its final weights (not the best-validation ones), like a run that
trained to the end.
"""

from __future__ import annotations


def plateaued(history: list[float], window: int, tol: float) -> bool:
    """True when `history` (validation top-1 per evaluation, oldest first) has more than
    `window` entries and max(last window) - max(before) <= tol."""
    if window < 1 or len(history) <= window:
        return False
    return max(history[-window:]) - max(history[:-window]) <= tol
