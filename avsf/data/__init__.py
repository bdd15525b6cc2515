"""Audiovisual data: the built-in synthetic benchmark, dataset preparation, and loaders.

Public API (the trainer and the benches call exactly these):

- ``dataset_info(cfg) -> DatasetInfo`` (generates the synthetic benchmark on first use)
- ``build_loader(cfg, split, mode, *, shard_id=0, num_shards=1, epoch=0, with_shifted_audio=False)``
  -> an iterable of batch dicts (docs/architecture.md), with ``len()`` and ``failed``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from avsf.config import Config, ConfigError
from avsf.data.manifest import ManifestError, Row, read_manifest
from avsf.data.sampling import ClipGeometry, ClipSpec, shard_indices, test_specs, train_spec

log = logging.getLogger("avsf.data")

SYNTH_VERSION = 1  # bump when the generator's output changes; keys the cache folder

__all__ = ["TooManyFailedClips", "DatasetInfo", "dataset_info", "build_loader", "AVLoader", "ManifestError", "synth_root", "load_rows"]


class TooManyFailedClips(RuntimeError):
    """More clips failed to decode than `data.max_failure_share` allows."""


@dataclass
class DatasetInfo:
    root: Path
    class_names: list[str]
    groups: dict[str, list[int]] = field(default_factory=dict)
    num_classes: int = 0
    split_sizes: dict[str, int] = field(default_factory=dict)
    multi_label: bool = False
    verb_noun: bool = False
    # "classification", or "detection" (classes.json `task`: per-box labels, docs/detection.md)
    task: str = "classification"
    # Per-clip inputs beyond the label (detection: the keyframe's boxes), added to every batch by
    # the loaders: an object with `fields(rows, specs, mode, epoch) -> dict[str, Tensor]`.
    annotations: Any = None


# ----------------------------------------------------------------------------- synth cache
def cache_dir(cfg: Config) -> Path:
    base = cfg.data.cache_dir or os.environ.get("AVSF_CACHE") or str(Path.home() / ".cache" / "avsf")
    return Path(base).expanduser()


@dataclass(frozen=True)
class BuiltinSet:
    """A generated data set that `data.dataset = <name>` selects: `generator` ("module:function",
    imported on first use) writes it with (out, scale, seed, workers=...); `version` keys the cache
    folder (bump it when the output changes)."""

    generator: str
    version: int


BUILTIN_SETS: dict[str, BuiltinSet] = {
    "synth": BuiltinSet("avsf.data.synth:generate", SYNTH_VERSION),
    "synth-detection": BuiltinSet("avsf.data.synth_detection:generate", 1),  # docs/detection.md
}


def synth_root(cfg: Config) -> Path:
    name = cfg.data.dataset if cfg.data.dataset in BUILTIN_SETS else "synth"
    version = BUILTIN_SETS[name].version
    return cache_dir(cfg) / f"{name}-{cfg.data.synth_scale}-seed{cfg.data.synth_seed}-v{version}"


@contextmanager
def _file_lock(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_synth(cfg: Config, *, workers: int | None = None) -> Path:
    """The synthetic benchmark's folder (or another built-in set's), generated on first use
    (atomic, one process at a time)."""
    import importlib

    root = synth_root(cfg)
    if (root / "classes.json").exists():
        return root
    with _file_lock(root.parent / f".{root.name}.lock"):
        if (root / "classes.json").exists():  # another process finished it while we waited
            return root
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("generating the synthetic benchmark (%s, seed %d) into %s", cfg.data.synth_scale,
                 cfg.data.synth_seed, root)
        module, function = BUILTIN_SETS.get(cfg.data.dataset, BUILTIN_SETS["synth"]).generator.split(":")
        generate = getattr(importlib.import_module(module), function)
        generate(tmp, cfg.data.synth_scale, cfg.data.synth_seed, workers=workers or max(1, min(2, os.cpu_count() or 1)))
        if root.exists():
            shutil.rmtree(root)
        os.rename(tmp, root)
    return root


def dataset_root(cfg: Config) -> Path:
    if cfg.data.dataset in BUILTIN_SETS:
        return ensure_synth(cfg)
    root = Path(cfg.data.dataset).expanduser()
    if root.is_file():
        root = root.parent
    if not (root / "manifest.csv").exists() and not (root / "train.csv").exists():
        raise ConfigError(f"data.dataset '{cfg.data.dataset}' has no manifest.csv; "
                          "run `avsf data prepare MANIFEST --out DIR` and point data.dataset at DIR")
    return root


def load_rows(root: Path, split: str) -> list[Row]:
    """Rows of a split: `<split>.csv` if present, else manifest.csv (filtered by its split column)."""
    if (root / f"{split}.csv").exists():
        return read_manifest(root / f"{split}.csv")
    return read_manifest(root / "manifest.csv", split=split)


def dataset_info(cfg: Config) -> DatasetInfo:
    root = dataset_root(cfg)
    meta = json.loads((root / "classes.json").read_text()) if (root / "classes.json").exists() else {}
    sizes, multi, vn, max_label = {}, False, False, -1
    for split in ("train", "val", "test"):
        try:
            rows = load_rows(root, split)
        except ManifestError:
            rows = []
        sizes[split] = len(rows)
        for r in rows:
            multi |= isinstance(r.label, list)
            vn |= r.verb >= 0 and r.noun >= 0
            labels = r.label if isinstance(r.label, list) else [r.label]
            max_label = max([max_label, *labels])
    names = list(meta.get("classes") or [str(i) for i in range(max_label + 1)])
    groups = {k: list(v) for k, v in (meta.get("groups") or {}).items()}
    task = str(meta.get("task") or "classification")
    annotations = None
    if task in ANNOTATIONS:  # e.g. detection's boxes.csv, read once per description
        import importlib

        module, function = ANNOTATIONS[task].split(":")
        annotations = getattr(importlib.import_module(module), function)(root, cfg)
    return DatasetInfo(root=root, class_names=names, groups=groups, num_classes=len(names), split_sizes=sizes,
                       multi_label=multi, verb_noun=vn, task=task, annotations=annotations)


ANNOTATIONS: dict[str, str] = {"detection": "avsf.data.detection:load_annotations"}
"""Task (classes.json `task`) -> "module:function" that reads the data set's per-clip
annotations beyond the label, (root, cfg) -> an object with `fields` (see DatasetInfo)."""


# ----------------------------------------------------------------------------- loader
def resolve_backend(cfg: Config) -> tuple[str, str]:
    """(loader, device) after resolving "auto"."""
    from avsf.data.dali_loader import dali_available, dali_gpu_available

    loader = cfg.data.loader
    if loader == "auto":
        loader = "dali" if dali_available() else "reference"
    elif loader == "dali" and not dali_available():
        raise ConfigError("data.loader = 'dali' but nvidia-dali is not importable; install nvidia-dali-cuda130 "
                          "or set data.loader=reference")
    device = cfg.data.device
    if loader == "reference":
        return loader, "cpu"
    if device == "auto":
        device = "gpu" if dali_gpu_available() else "cpu"
    elif device == "gpu" and not dali_gpu_available():
        raise ConfigError("data.device = 'gpu' but CUDA or DALI's GPU operators are not usable; set data.device=cpu")
    return loader, device


class AVLoader:
    """Iterable of batches for one split, mode, shard and epoch. `len()` = number of batches;
    `failed` = clips skipped because they could not be decoded (logged)."""

    def __init__(self, cfg: Config, split: str, mode: str, *, shard_id: int = 0, num_shards: int = 1, epoch: int = 0,
                 with_shifted_audio: bool = False, info: DatasetInfo | None = None, rows: list[Row] | None = None):
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
        self.cfg, self.split, self.mode, self.epoch = cfg, split, mode, epoch
        self.with_shifted_audio = with_shifted_audio and mode == "train"
        self.info = info or dataset_info(cfg)
        self.rows = rows if rows is not None else load_rows(self.info.root, split)
        if not self.rows:
            raise ManifestError(f"{self.info.root}: split '{split}' has no rows")
        self.g = ClipGeometry.from_config(cfg)
        self.backend, self.device = resolve_backend(cfg)
        self.batch_size = cfg.train.batch_size
        self.indices = shard_indices(len(self.rows), mode, seed=cfg.train.seed, epoch=epoch, shard_id=shard_id,
                                     num_shards=num_shards)
        if mode == "train" and cfg.train.max_train_clips:
            self.indices = self.indices[: cfg.train.max_train_clips]
        self.failed = 0
        self._sizes: dict[int, tuple[int, int]] = {}

    # -- planning
    def _size(self, i: int) -> tuple[int, int]:
        r = self.rows[i]
        if r.height and r.width:
            return r.height, r.width
        if i not in self._sizes:
            from avsf.data.reference import probe_size

            self._sizes[i] = probe_size(r.path)
        return self._sizes[i]

    def num_views(self) -> int:
        return self.cfg.eval.temporal_views * self.cfg.eval.spatial_views if self.mode == "test" else 1

    def __len__(self) -> int:
        n = len(self.indices) * self.num_views()
        return n // self.batch_size if self.mode == "train" else -(-n // self.batch_size)

    def specs(self) -> list[ClipSpec | tuple[int, Exception]]:
        out: list = []
        for i in self.indices:
            try:
                hw = self._size(i)
            except Exception as e:
                out.append((i, e))
                continue
            if self.mode == "train":
                out.append(train_spec(self.cfg, self.g, self.rows[i], i, hw, epoch=self.epoch,
                                      with_shifted_audio=self.with_shifted_audio))
            else:
                out.extend(test_specs(self.cfg, self.g, self.rows[i], i, hw))
        return out

    def _count_failure(self, n: int, total: int) -> None:
        self.failed += n
        limit = self.cfg.data.max_failure_share * max(total, 1)
        if self.failed > limit:
            raise TooManyFailedClips(f"{self.failed} of {total} clips in split '{self.split}' of {self.info.root} could not "
                               f"be decoded (more than data.max_failure_share={self.cfg.data.max_failure_share}); "
                               "run `avsf data prepare` on the source videos, or raise the share")

    def _batches(self, specs: list) -> list[list]:
        b = self.batch_size
        out = [specs[k:k + b] for k in range(0, len(specs), b)]
        if self.mode == "train" and out and len(out[-1]) < b:
            out.pop()
        return out

    def __iter__(self):
        self.failed = 0
        specs = self.specs()
        total = len(specs)
        bad = [s for s in specs if isinstance(s, tuple)]
        for i, e in bad:
            log.warning("skipping %s (row %d): %s", self.rows[i].path, i, e)
        if bad:
            self._count_failure(len(bad), total)
        specs = [s for s in specs if not isinstance(s, tuple)]
        if self.backend == "dali":
            yield from self._iter_dali(specs, total)
        else:
            yield from self._iter_reference(specs, total)

    def _finish(self, batch: dict, kept: list[ClipSpec]) -> dict:
        from avsf.data.reference import label_fields

        labels = [label_fields(self.rows[s.row], self.cfg, self.info.num_classes) for s in kept]
        for k in labels[0]:
            batch[k] = torch.stack([lab[k] for lab in labels])
        batch["index"] = torch.tensor([s.row for s in kept], dtype=torch.int64)
        if self.mode == "test":
            batch["view"] = torch.tensor([s.view for s in kept], dtype=torch.int64)
        if self.info.annotations is not None:
            batch.update(self.info.annotations.fields([self.rows[s.row] for s in kept], kept, self.mode, self.epoch))
        return batch

    def _iter_dali(self, specs: list[ClipSpec], total: int):
        from avsf.data.dali_loader import DaliRunner

        runner = DaliRunner(self.g, self.cfg.data, batch_size=self.batch_size, num_threads=self.cfg.data.num_threads,
                            gpu=self.device == "gpu", with_shifted_audio=self.with_shifted_audio)
        for chunk in self._batches(specs):
            items, used = [], []
            for s in chunk:
                row = self.rows[s.row]
                try:
                    v = _read_bytes(row.path)
                    a = _read_bytes(row.audio) if row.audio is not None else None
                    if a is None:
                        raise FileNotFoundError(f"{row.path}: no audio sidecar in the manifest")
                except OSError as e:
                    log.warning("skipping %s (row %d): %s", row.path, s.row, e)
                    self._count_failure(1, total)
                    continue
                items.append((s, v, a))
                used.append(s)
            outs, kept = runner.run(items)
            if len(kept) < len(items):
                self._count_failure(len(items) - len(kept), total)
            if not kept:
                continue
            kept_specs = [used[k] for k in kept]
            fast = outs[0]
            batch = {"slow": fast[:, :, :: self.g.alpha_f].contiguous(), "fast": fast,
                     "audio": outs[1].unsqueeze(1)}
            if self.with_shifted_audio:
                batch["audio_shifted"] = outs[2].unsqueeze(1)
            yield self._finish(batch, kept_specs)

    def _iter_reference(self, specs: list[ClipSpec], total: int):
        from avsf.data.reference import ClipDataset, collate

        ds = ClipDataset(self.rows, specs, self.g, self.cfg, mode=self.mode, with_shifted_audio=self.with_shifted_audio)
        planned = {(s.row, s.view): s for s in specs}  # the specs of the clips that decoded (crop, flip: boxes)
        batches = self._batches(list(range(len(specs))))
        workers = self.cfg.data.num_threads if self.cfg.data.num_threads > 1 else 0
        dl = torch.utils.data.DataLoader(ds, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                                         worker_init_fn=_one_thread if workers else None)
        for batch in dl:
            n_failed = batch.pop("_failed")
            if n_failed:
                self._count_failure(n_failed, total)
            if "fast" not in batch:
                continue
            rows, views = batch.pop("_row").tolist(), batch.pop("_view").tolist()
            yield self._finish(batch, [planned[(r, v)] for r, v in zip(rows, views)])


def _one_thread(_):
    torch.set_num_threads(1)


def _read_bytes(path):  # -> numpy.ndarray of uint8
    import numpy as np

    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise OSError(f"{path} is empty")
    return data


def build_loader(cfg: Config, split: str, mode: str, *, shard_id: int = 0, num_shards: int = 1, epoch: int = 0,
                 with_shifted_audio: bool = False) -> AVLoader:
    """Batches of `split` in `mode` ("train" | "test") for one shard; see docs/architecture.md."""
    return AVLoader(cfg, split, mode, shard_id=shard_id, num_shards=num_shards, epoch=epoch,
                    with_shifted_audio=with_shifted_audio)
