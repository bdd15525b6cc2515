"""A labelled subset of a training split: SSL probes learn from few labels (`data.label_fraction`).

`labelled_subset(rows, fraction, seed)` keeps, per class, the first ceil(fraction x n) clips of
a permutation drawn from `seed` (at least one clip per class), in manifest order. The draw is a
function of (rows, seed) alone, and subsets are nested: for one seed, a smaller fraction keeps
part of what a larger one keeps, so a label-count sweep changes one thing at a time.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np


def class_key(row: Any) -> Hashable:
    """The class a row is stratified by: its label, its label set (multi-label), its verb and
    noun (verb-noun rows)."""
    if getattr(row, "verb", -1) >= 0 and getattr(row, "noun", -1) >= 0:
        return ("verb-noun", row.verb, row.noun)
    label = row.label
    return tuple(sorted(label)) if isinstance(label, list) else label


def labelled_subset(rows: Sequence[Any], fraction: float, seed: int) -> list[int]:
    """Indices into `rows` (ascending) of the clips kept; every row when `fraction` >= 1."""
    if fraction >= 1:
        return list(range(len(rows)))
    if not 0 < fraction:
        raise ValueError(f"labelled_subset: fraction must be in (0, 1], got {fraction}")
    by_class: dict[Hashable, list[int]] = {}
    for i, row in enumerate(rows):
        by_class.setdefault(class_key(row), []).append(i)
    rng = np.random.default_rng(seed)
    kept: list[int] = []
    for key in sorted(by_class, key=repr):  # a fixed class order: the draw depends on the seed alone
        members = by_class[key]
        order = rng.permutation(len(members))
        n = max(1, math.ceil(fraction * len(members) - 1e-9))  # 10% of 60 is 6, not 7 (float rounding)
        kept += [members[j] for j in order[:n]]
    return sorted(kept)
