"""Checks of a config against the dataset it will train on, run before any work or file write
(the config alone is checked by `Config.validate`, the dataset-dependent rules of the config by
`avsf.config.validate_for_dataset`): what the trainer needs beyond those."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avsf.config import Config, ConfigError, validate_for_dataset


def resolve_num_classes(cfg: Config, info: Any) -> None:
    """`model.num_classes = 0` takes the dataset's class count; verb-noun data sets its own
    verb and noun counts."""
    if cfg.model.num_classes <= 0:
        # a label-free dataset may name no classes (no classes.json, labels unread): the head of a
        # label-free run never trains, one output keeps the model whole
        cfg.model.num_classes = int(info.num_classes) or (1 if cfg.data.label_free else 0)
    if getattr(info, "verb_noun", False):
        for attr in ("num_verbs", "num_nouns"):
            n = getattr(info, attr, None)
            if n:
                setattr(cfg.model, attr, int(n))


def check_against_dataset(cfg: Config, info: Any, *, world: int = 1, labels: bool = True) -> None:
    """`avsf.config.validate_for_dataset` (class count, eval split, a batch that fits), then what
    the trainer needs beyond it: clips in the validation split, a batch per process under
    torchrun, every label inside the head, a batch in the labelled subset (`data.label_fraction`).
    ConfigError naming the key or manifest row. `labels=False` (a label-free objective): no label
    is read, so neither of the last two is checked."""
    validate_for_dataset(cfg, info)
    where = getattr(info, "root", None) or cfg.data.dataset
    sizes = dict(getattr(info, "split_sizes", None) or {})
    if sizes and sizes.get("val", 0) <= 0:
        known = ", ".join(f"{k} ({v} clips)" for k, v in sizes.items() if v > 0)
        raise ConfigError(f"validation: split 'val' of {where} has no clips (splits with clips: {known})")
    if sizes and world > 1:
        per_process = min(sizes.get("train", 0) // world, cfg.train.max_train_clips or sizes.get("train", 0))
        if cfg.train.batch_size > per_process:
            raise ConfigError(f"train.batch_size: {cfg.train.batch_size} is not allowed; {where} gives {per_process} "
                              f"training clips to each of {world} processes: use <= {per_process}")
    if labels:
        if cfg.data.label_free:
            raise ConfigError(f"data.label_free: True is not allowed; train.objective = {cfg.train.objective!r} "
                              f"(model.head {cfg.model.head!r}) learns from labels: use false, or a label-free "
                              f"objective (train.objective = 'pretext')")
        check_labels(cfg, info)
        check_label_fraction(cfg, info, world=world)


def check_label_fraction(cfg: Config, info: Any, *, world: int = 1) -> None:
    """The labelled subset of the train split holds at least one batch per process."""
    root = getattr(info, "root", None)
    if root is None or cfg.data.label_fraction >= 1:
        return
    from avsf.data import load_rows
    from avsf.data.subset import labelled_subset

    rows = load_rows(Path(root), "train", fold=cfg.data.fold)
    kept = len(labelled_subset(rows, cfg.data.label_fraction, cfg.train.seed))
    if cfg.train.batch_size * world > kept:
        raise ConfigError(f"data.label_fraction: {cfg.data.label_fraction:g} is not allowed with train.batch_size "
                          f"{cfg.train.batch_size}{f' x {world} processes' if world > 1 else ''}: it keeps {kept} of "
                          f"the {len(rows)} training clips of {root}, less than one batch; raise it or lower the batch")


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
            rows = load_rows(Path(root), split, fold=cfg.data.fold)
        except ValueError:
            continue  # an unreadable or missing split is reported by the split checks / the loader
        for i, row in enumerate(rows):
            problem = _label_problem(row, cfg)
            if problem:
                file = Path(root) / f"{split}.csv"
                file = file if file.exists() else Path(root) / "manifest.csv"
                raise ConfigError(f"{file}: split '{split}', row {i + 1} ({row.path}): {problem}; fix the "
                                  f"manifest or the class count")


def check_init_source(cfg: Config) -> None:
    """`train.init_from` names a checkpoint file or a run folder holding one (checked before the
    run writes anything; whether its tensors fit the model is checked when they load)."""
    from avsf.weights import checkpoint_file

    checkpoint_file(cfg.train.init_from)
