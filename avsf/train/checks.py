"""Checks of a config against the dataset it will train on, run before any work or file write
(the config alone is checked by `Config.validate`): class counts, labels inside the head,
splits that exist, a batch that fits the training split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avsf.config import Config, ConfigError


def resolve_num_classes(cfg: Config, info: Any) -> None:
    """`model.num_classes = 0` takes the dataset's class count; verb-noun data sets its own
    verb and noun counts."""
    if cfg.model.num_classes <= 0:
        cfg.model.num_classes = int(info.num_classes)
    if getattr(info, "verb_noun", False):
        for attr in ("num_verbs", "num_nouns"):
            n = getattr(info, attr, None)
            if n:
                setattr(cfg.model, attr, int(n))


def _split_sizes(info: Any) -> dict[str, int]:
    return dict(getattr(info, "split_sizes", None) or {})


def check_against_dataset(cfg: Config, info: Any, *, world: int = 1) -> None:
    """ConfigError naming the key, the value and what the dataset allows (see the module docstring)."""
    where = getattr(info, "root", None) or cfg.data.dataset
    sizes = _split_sizes(info)
    if sizes:
        for split, key in (("train", "the training split"), ("val", "validation"), (cfg.eval.split, "eval.split")):
            if sizes.get(split, 0) <= 0:
                known = ", ".join(f"{k} ({v} clips)" for k, v in sizes.items() if v > 0)
                raise ConfigError(f"{key}: split '{split}' of {where} has no clips (splits with clips: {known})")
        per_process = sizes["train"] // max(world, 1)
        if cfg.train.max_train_clips > 0:
            per_process = min(per_process, cfg.train.max_train_clips)
        if cfg.train.batch_size > per_process:
            raise ConfigError(
                f"train.batch_size: {cfg.train.batch_size} is larger than the {per_process} training clips "
                f"per process ({where}, {world} process(es)); use at most {per_process}")
    if cfg.model.head != "verb-noun" and cfg.model.num_classes < int(info.num_classes):
        raise ConfigError(
            f"model.num_classes: {cfg.model.num_classes} is below the {info.num_classes} classes of {where}; "
            f"set it to 0 (take the dataset's count) or at least {info.num_classes}")
    check_labels(cfg, info)


def _label_problem(row: Any, cfg: Config) -> str | None:
    m = cfg.model
    if row.verb >= 0 and row.noun >= 0:
        if row.verb >= m.num_verbs or row.noun >= m.num_nouns:
            return (f"verb {row.verb} / noun {row.noun} outside the head's {m.num_verbs} verbs / "
                    f"{m.num_nouns} nouns")
        return None
    labels = row.label if isinstance(row.label, list) else [row.label]
    bad = [lab for lab in labels if not 0 <= lab < m.num_classes]
    return f"label {bad[0]} outside the head's classes 0..{m.num_classes - 1} (model.num_classes)" if bad else None


def check_labels(cfg: Config, info: Any) -> None:
    """Every label of the splits the run reads fits the head; else an error naming the manifest
    file and row. Needs a prepared dataset folder (`info.root`); descriptions without one skip."""
    root = getattr(info, "root", None)
    if root is None:
        return
    from avsf.data import load_rows

    for split in dict.fromkeys(("train", "val", cfg.eval.split)):
        try:
            rows = load_rows(Path(root), split)
        except ValueError:
            continue  # an unreadable or missing split is reported by the split checks / the loader
        for i, row in enumerate(rows):
            problem = _label_problem(row, cfg)
            if problem:
                file = Path(root) / f"{split}.csv"
                file = file if file.exists() else Path(root) / "manifest.csv"
                raise ConfigError(f"{file}: split '{split}', row {i + 1} ({row.path}): {problem}; fix the "
                                  f"manifest or the class count")
