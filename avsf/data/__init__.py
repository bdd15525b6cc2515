"""Audiovisual data: the built-in synthetic benchmark, dataset preparation, and loaders.

Public API (the trainer and the benches call exactly these):

- ``dataset_info(cfg) -> DatasetInfo`` (generates the synthetic benchmark on first use; reads every
  manifest, so a broken one fails before any work)
- ``build_loader(cfg, split, mode, *, shard_id=0, num_shards=1, epoch=0, with_shifted_audio=False)``
  -> an AVLoader: iterable of batch dicts (docs/architecture.md) with ``len()``, ``iter_from(batch)``
  (exact resume) and the counters ``failed``, ``cpu_fallback_clips``, ``pyav_fallback_clips``.
- Errors: ``ManifestError``, ``TooManyFailedClips``, ``PrepareError`` (avsf.data.errors).
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
from avsf.cores import usable_cores
from avsf.data.errors import ManifestError, PrepareError, TooManyFailedClips
from avsf.data.manifest import Row, read_manifest
from avsf.data.sampling import ClipGeometry, ClipSpec, shard_indices, test_specs, train_spec

log = logging.getLogger("avsf.data")

from avsf.data.synth import VERSION as SYNTH_VERSION  # keys the cache folder: a new generator regenerates

__all__ = ["TooManyFailedClips", "ManifestError", "PrepareError", "DatasetInfo", "dataset_info", "build_loader",
           "AVLoader", "synth_root", "synth_split_options", "load_rows", "say_once", "BuiltinSet", "BUILTIN_SETS",
           "prepared_root"]


@dataclass
class DatasetInfo:
    root: Path
    class_names: list[str]
    groups: dict[str, list[int]] = field(default_factory=dict)
    num_classes: int = 0
    split_sizes: dict[str, int] = field(default_factory=dict)
    multi_label: bool = False
    verb_noun: bool = False
    # verb-noun data (EPIC): the heads' sizes, from classes.json "verbs"/"nouns" (names) or "num_verbs"/
    # "num_nouns" (what the format defines: avsf data prepare --format epic|epic55), else the largest index
    num_verbs: int = 0
    num_nouns: int = 0
    verb_names: list[str] = field(default_factory=list)
    noun_names: list[str] = field(default_factory=list)
    # "classification", or "detection" (classes.json `task`: per-box labels, docs/detection.md)
    task: str = "classification"
    # Per-clip inputs beyond the label (detection: the keyframe's boxes), added to every batch by
    # the loaders: an object with `fields(rows, specs, mode, epoch) -> dict[str, Tensor]`.
    annotations: Any = None
    folds: list[int] = field(default_factory=list)  # the official folds a dataset has (UCF101/HMDB51: 1, 2, 3)
    label_free: bool = False  # data.label_free: labels were not read (sizes only)


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

    def generate(self, out: str | Path, scale: str, seed: int, *, workers: int = 2, progress: bool = False,
                 **options: Any) -> dict:
        """Write the set into `out` (imported here: the generators load numpy and PyAV); `options`
        go to the generator as they are (`synth`: per_class)."""
        import importlib

        module, function = self.generator.split(":")
        return getattr(importlib.import_module(module), function)(out, scale, seed, workers=workers, progress=progress,
                                                                  **options)


BUILTIN_SETS: dict[str, BuiltinSet] = {
    "synth": BuiltinSet("avsf.data.synth:generate", SYNTH_VERSION),
    "synth-detection": BuiltinSet("avsf.data.synth_detection:generate", 1),  # docs/detection.md
    "synth-epic": BuiltinSet("avsf.data.synth_tasks:generate_epic", 1),  # docs/tasks.md
    "synth-charades": BuiltinSet("avsf.data.synth_tasks:generate_charades", 1),
}


def synth_split_options(test_per_class: int) -> dict[str, Any]:
    """The generator options (`BuiltinSet.generate`) that give the benchmark `test_per_class`
    test clips per class; none for 0 (the scale's own count). Only `synth` takes them: the config
    (`data.synth_test_per_class`) and `avsf data synth --test-per-class` refuse the other sets."""
    return {"per_class": {"test": test_per_class}} if test_per_class else {}


def synth_root(cfg: Config) -> Path:
    name = cfg.data.dataset if cfg.data.dataset in BUILTIN_SETS else "synth"
    version = BUILTIN_SETS[name].version
    test = f"-test{cfg.data.synth_test_per_class}" if cfg.data.synth_test_per_class else ""
    return cache_dir(cfg) / f"{name}-{cfg.data.synth_scale}{test}-seed{cfg.data.synth_seed}-v{version}"


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
    name = cfg.data.dataset if cfg.data.dataset in BUILTIN_SETS else "synth"
    root = synth_root(cfg)
    if (root / "classes.json").exists():
        return root
    with _file_lock(root.parent / f".{root.name}.lock"):
        if (root / "classes.json").exists():  # another process finished it while we waited
            return root
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("generating the built-in set %s (%s, seed %d) into %s", name, cfg.data.synth_scale,
                 cfg.data.synth_seed, root)
        BUILTIN_SETS[name].generate(tmp, cfg.data.synth_scale, cfg.data.synth_seed,
                                    workers=workers or min(2, usable_cores()),
                                    **synth_split_options(cfg.data.synth_test_per_class))
        if root.exists():
            shutil.rmtree(root)
        os.rename(tmp, root)
    return root


def dataset_root(cfg: Config) -> Path:
    if cfg.data.dataset in BUILTIN_SETS:
        return ensure_synth(cfg)
    return prepared_root(cfg.data.dataset)


def prepared_root(dataset: str) -> Path:
    """The folder a prepared `data.dataset` names; ConfigError when it holds no manifest (checked
    without reading any video, so a study can check its data before it starts)."""
    root = Path(dataset).expanduser()
    if root.is_file():
        root = root.parent
    if not (root / "manifest.csv").exists() and not (root / "train.csv").exists():
        raise ConfigError(f"data.dataset: '{dataset}' is neither a built-in set ({', '.join(BUILTIN_SETS)}) nor "
                          "a folder holding manifest.csv; run `avsf data prepare MANIFEST --out DIR` and point "
                          "data.dataset at DIR")
    return root


def load_rows(root: Path, split: str, *, fold: int = 0, label_free: bool = False) -> list[Row]:
    """Rows of a split: `<split>.csv` if present, else manifest.csv filtered by its split column;
    [] when neither file exists. With `fold` K (data.fold), manifest.csv filtered by its splitK column;
    such datasets (UCF101, HMDB51) have no val split, so a fold's "val" is its "test" (said once)."""
    if fold:
        rows = read_manifest(root / "manifest.csv", split, split_column=f"split{fold}", label_free=label_free)
        if split == "val" and not rows:
            say_once(("fold-val", str(root), fold), f"{root}: fold {fold} has no val split; validating on its test "
                     "split (UCF101/HMDB51 define only train and test)")
            rows = read_manifest(root / "manifest.csv", "test", split_column=f"split{fold}", label_free=label_free)
        return rows
    if (root / f"{split}.csv").exists():
        return read_manifest(root / f"{split}.csv", label_free=label_free)
    if not (root / "manifest.csv").exists():
        return []
    return read_manifest(root / "manifest.csv", split=split, label_free=label_free)


def _check_fold(cfg: Config, root: Path, folds: list[int]) -> None:
    fold = cfg.data.fold
    if fold and fold not in folds:
        have = f"folds {', '.join(map(str, folds))}" if folds else "no official folds (a split column)"
        raise ConfigError(f"data.fold: {fold} is not allowed for {root}, which has {have}; "
                          f"set data.fold to {' | '.join(map(str, folds)) if folds else 0}")
    if not fold and folds:
        raise ConfigError(f"data.fold: 0 is not allowed for {root}: its splits are its official folds "
                          f"{', '.join(map(str, folds))}; set data.fold (the paper's ablations use fold 1)")


def dataset_info(cfg: Config) -> DatasetInfo:
    """Class names and counts, split sizes and label kinds of the configured dataset. Every manifest
    is read here, so a broken one fails before any work, naming the file and row."""
    root = dataset_root(cfg)
    meta = json.loads((root / "classes.json").read_text()) if (root / "classes.json").exists() else {}
    folds = [int(k) for k in meta.get("folds", [])]
    _check_fold(cfg, root, folds)
    label_free = cfg.data.label_free
    sizes, multi, vn, max_label, max_verb, max_noun = {}, False, False, -1, -1, -1
    for split in ("train", "val", "test"):
        rows = load_rows(root, split, fold=cfg.data.fold, label_free=label_free)
        sizes[split] = len(rows)
        for r in [] if label_free else rows:
            multi |= isinstance(r.label, list)
            vn |= r.verb >= 0 and r.noun >= 0
            labels = r.label if isinstance(r.label, list) else [r.label]
            max_label = max([max_label, *labels])
            max_verb, max_noun = max(max_verb, r.verb), max(max_noun, r.noun)
    names = list(meta.get("classes") or [str(i) for i in range(max_label + 1)])
    verbs = list(meta.get("verbs") or [str(i) for i in range(max(int(meta.get("num_verbs", 0)), max_verb + 1))]) \
        if vn else []
    nouns = list(meta.get("nouns") or [str(i) for i in range(max(int(meta.get("num_nouns", 0)), max_noun + 1))]) \
        if vn else []
    groups = {k: list(v) for k, v in (meta.get("groups") or {}).items()}
    task = str(meta.get("task") or "classification")
    annotations = None
    if task in ANNOTATIONS:  # e.g. detection's boxes.csv, read once per description
        import importlib

        module, function = ANNOTATIONS[task].split(":")
        annotations = getattr(importlib.import_module(module), function)(root, cfg)
    return DatasetInfo(root=root, class_names=names, groups=groups, num_classes=len(names), split_sizes=sizes,
                       multi_label=multi, verb_noun=vn, task=task, annotations=annotations, num_verbs=len(verbs),
                       num_nouns=len(nouns), verb_names=verbs, noun_names=nouns, folds=folds, label_free=label_free)


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
    """Iterable of batches for one split, mode, shard and epoch. `len()` = number of batches.
    Counters of the last pass: `failed` = clips skipped because they could not be read or decoded
    (logged); `cpu_fallback_clips` = clips that data.device=gpu meant for NVDEC but that were decoded
    on the CPU (too small for NVDEC, a codec it lacks, or refused at run time; logged once);
    `pyav_fallback_clips` = clips no DALI decoder took, decoded by PyAV (the reference decoder)."""

    def __init__(self, cfg: Config, split: str, mode: str, *, shard_id: int = 0, num_shards: int = 1, epoch: int = 0,
                 with_shifted_audio: bool = False, info: DatasetInfo | None = None, rows: list[Row] | None = None):
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
        self.cfg, self.split, self.mode, self.epoch = cfg, split, mode, epoch
        self.with_shifted_audio = with_shifted_audio and mode == "train"
        self.info = info or dataset_info(cfg)
        self.label_free = cfg.data.label_free
        self.rows = rows if rows is not None else load_rows(self.info.root, split, fold=cfg.data.fold,
                                                             label_free=self.label_free)
        if split == "train" and cfg.data.label_fraction < 1:  # the labelled subset of an SSL probe
            from avsf.data.subset import labelled_subset

            self.rows = [self.rows[i] for i in labelled_subset(self.rows, cfg.data.label_fraction, cfg.train.seed)]
        if not self.rows:
            raise ManifestError(f"{self.info.root}: split '{split}' has no rows")
        self.g = ClipGeometry.from_config(cfg)
        self.backend, self.device = resolve_backend(cfg)
        self.batch_size = cfg.train.batch_size
        self.indices = shard_indices(len(self.rows), mode, seed=cfg.train.seed, epoch=epoch, shard_id=shard_id,
                                     num_shards=num_shards)
        if mode == "train" and cfg.train.max_train_clips:
            self.indices = self.indices[: cfg.train.max_train_clips]
        self.failed = self.cpu_fallback_clips = self.pyav_fallback_clips = 0
        self._media: dict[int, tuple[int, int, str]] = {}

    # -- planning
    def _size(self, i: int) -> tuple[int, int]:
        return self.media(i)[:2]

    def media(self, i: int) -> tuple[int, int, str]:
        """(height, width, codec) of row i: from the manifest, else probed once (codec "" = unknown)."""
        r = self.rows[i]
        if r.height and r.width:
            return r.height, r.width, r.codec
        if i not in self._media:
            from avsf.data.reference import probe_size

            self._media[i] = (*probe_size(r.path), r.codec)
        return self._media[i]

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

    def _skip(self, path, row: int, err: Exception, total: int) -> None:
        log.warning("skipping %s (row %d): %s", path, row, err)
        self._count_failure(1, total)

    def _batches(self, specs: list) -> list[list]:
        b = self.batch_size
        out = [specs[k:k + b] for k in range(0, len(specs), b)]
        if self.mode == "train" and out and len(out[-1]) < b:
            out.pop()
        return out

    def __iter__(self):
        return self.iter_from(0)

    def iter_from(self, start_batch: int):
        """Batches from position `start_batch` on, exactly those a full pass yields there (exact
        resume): batch k always holds the k-th slice of the planned clips (a clip that fails makes
        its batch smaller, it never shifts the others), so the skipped batches are not decoded.
        Failures inside skipped batches are not counted; those found while planning are."""
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        self.failed = self.cpu_fallback_clips = self.pyav_fallback_clips = 0
        specs = self.specs()
        total = len(specs)
        bad = [s for s in specs if isinstance(s, tuple)]
        for i, e in bad:
            log.warning("skipping %s (row %d): %s", self.rows[i].path, i, e)
        if bad:
            self._count_failure(len(bad), total)
        chunks = self._batches([s for s in specs if not isinstance(s, tuple)])[start_batch:]
        if self.backend == "dali":
            return self._iter_dali(chunks, total)
        return self._iter_reference(chunks, total)

    def _finish(self, batch: dict, kept: list[ClipSpec]) -> dict:
        from avsf.data.reference import label_fields

        if not self.label_free:  # label-free (self-supervised) batches carry no label at all
            labels = [label_fields(self.rows[s.row], self.cfg, self.info.num_classes) for s in kept]
            for k in labels[0]:
                batch[k] = torch.stack([lab[k] for lab in labels])
        batch["index"] = torch.tensor([s.row for s in kept], dtype=torch.int64)
        if self.mode == "test":
            batch["view"] = torch.tensor([s.view for s in kept], dtype=torch.int64)
        if self.info.annotations is not None:
            batch.update(self.info.annotations.fields([self.rows[s.row] for s in kept], kept, self.mode, self.epoch))
        return batch

    # -- DALI
    def _plan_routes(self, chunks: list[list[ClipSpec]]) -> dict[str, list]:
        """Route every clip (avsf.data.dali_loader.decode_route) and group them into per-route parts:
        {route: [[Item, ...] per batch that has clips on that route]}; says once why clips leave the GPU."""
        from avsf.data.dali_loader import Item, decode_route

        parts: dict[str, list] = {"gpu": [], "cpu": [], "pyav": []}
        moved: dict[str, int] = {}
        for chunk in chunks:
            by: dict[str, list] = {"gpu": [], "cpu": [], "pyav": []}
            for pos, s in enumerate(chunk):
                row = self.rows[s.row]
                h, w, codec = self.media(s.row)
                route = decode_route(h, w, codec, self.device)
                if route.reason:
                    moved[route.reason] = moved.get(route.reason, 0) + 1
                by[route.name].append(Item(pos, s, row.path, row.audio))
            for name, items in by.items():
                parts[name].append(items)
        if moved:
            reasons = "; ".join(f"{n} clip(s): {why}" for why, n in sorted(moved.items(), key=lambda kv: -kv[1])[:3])
            say_once(("route", str(self.info.root), self.split, self.device),
                     f"{sum(moved.values())} clip(s) of split '{self.split}' of {self.info.root} cannot be decoded on "
                     f"the {'GPU' if self.device == 'gpu' else 'DALI CPU decoder'} and are decoded on the CPU instead "
                     f"({reasons}); counted in the run's cpu_fallback_clips / pyav_fallback_clips")
        return parts

    def _iter_dali(self, chunks: list[list[ClipSpec]], total: int):
        """GPU-routed clips through an in-process NVDEC stream, the rest through CPU worker processes
        (avsf.data.dali_loader's docstring says why); a batch joins both, in plan order."""
        from concurrent.futures import ThreadPoolExecutor

        from avsf.data.dali_loader import DaliStream
        from avsf.data.decode import CpuDecoder, cpu_loader

        parts = self._plan_routes(chunks)
        decoder = CpuDecoder(self.g, self.cfg, self.rows, mode=self.mode, batch_size=self.batch_size,
                             with_shifted_audio=self.with_shifted_audio)
        cpu_jobs = {j: (parts["cpu"][j], parts["pyav"][j]) for j in range(len(chunks))
                    if parts["cpu"][j] or parts["pyav"][j]}
        # the worker processes fork now, before this process holds any GPU pipeline
        cpu = iter(cpu_loader(list(cpu_jobs.values()), decoder, workers=self.cfg.data.num_threads,
                              pin=torch.cuda.is_available())) if cpu_jobs else None
        with ThreadPoolExecutor(2, thread_name_prefix="avsf-read") as pool:
            gpu = iter(DaliStream([p for p in parts["gpu"] if p], self.g, self.cfg.data, gpu=True, pool=pool,
                                  batch_size=self.batch_size, num_threads=self.cfg.data.num_threads,
                                  with_shifted_audio=self.with_shifted_audio)) if any(parts["gpu"]) else None
            try:
                for j, chunk in enumerate(chunks):
                    batch = self._join(chunk, next(gpu) if parts["gpu"][j] else None,
                                       next(cpu) if j in cpu_jobs else None, decoder, total)
                    if batch is not None:
                        yield batch
            finally:
                if gpu is not None:
                    gpu.close()  # stops the pipeline now, not at the next garbage collection
                decoder.close()
                del cpu  # stops the worker processes

    def _join(self, chunk: list[ClipSpec], res, cpu: dict | None, decoder, total: int) -> dict | None:
        """One batch from its GPU part (a PartResult) and its CPU part (CpuDecoder.decode's dict)."""
        if res is not None and cpu is None and len(res.kept) == len(chunk):
            return self._batch(res.outs, chunk)  # all on the GPU, in order: no copy
        pieces: dict[int, list] = {}
        if res is not None:
            for it, e in res.unreadable:
                self._skip(it.video, it.spec.row, e, total)
            for k, it in enumerate(res.kept):
                pieces[it.pos] = [o[k] for o in res.outs]
            if res.failed:  # NVDEC refused them at run time: the CPU decoder here, then PyAV
                say_once(("runtime-cpu", str(self.info.root)), f"NVDEC refused clip(s) of {self.info.root} at run "
                         f"time (first: {res.failed[0][0].video}: {str(res.failed[0][1]).splitlines()[:1]}); decoding "
                         "them on the CPU, counted in cpu_fallback_clips")
                self._take(decoder.decode([it for it, _ in res.failed], []), pieces, total)
        if cpu is not None:
            if not pieces and cpu["pos"] == list(range(len(chunk))):
                self._count_cpu(cpu)
                return self._batch([self._to_device(o) for o in cpu["outs"]], chunk)  # the common CPU case
            self._take(cpu, pieces, total)
        return self._assemble(chunk, pieces) if pieces else None

    def _take(self, got: dict, pieces: dict, total: int) -> None:
        """A CpuDecoder result into `pieces`: its clips, its counts; its failures logged and counted."""
        for pos, row, path, message in got["failed"]:
            self._skip(path, row, message, total)
        for k, pos in enumerate(got["pos"]):
            pieces[pos] = [o[k] for o in got["outs"]]
        self._count_cpu(got)

    def _count_cpu(self, got: dict) -> None:
        self.pyav_fallback_clips += got["pyav"]
        if self.device == "gpu":
            self.cpu_fallback_clips += got["dali"] + got["pyav"]

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """GPU decode gives CUDA batches; clips decoded on the CPU join them there."""
        return t.to("cuda", non_blocking=True) if self.device == "gpu" else t

    def _assemble(self, chunk: list[ClipSpec], pieces: dict[int, list]) -> dict:
        order = sorted(pieces)
        outs = [torch.stack([self._to_device(pieces[p][k]) for p in order]) for k in range(len(pieces[order[0]]))]
        return self._batch(outs, [chunk[p] for p in order])

    def _batch(self, outs: list[torch.Tensor], kept: list[ClipSpec]) -> dict:
        fast = outs[0]
        batch = {"slow": fast[:, :, :: self.g.alpha_f].contiguous(), "fast": fast, "audio": outs[1].unsqueeze(1)}
        if self.with_shifted_audio:
            batch["audio_shifted"] = outs[2].unsqueeze(1)
        return self._finish(batch, kept)

    # -- reference (PyAV + torchaudio in DataLoader worker processes)
    def _iter_reference(self, chunks: list[list[ClipSpec]], total: int):
        from avsf.data.reference import ClipDataset, collate

        specs = [s for chunk in chunks for s in chunk]
        ds = ClipDataset(self.rows, specs, self.g, self.cfg, mode=self.mode, with_shifted_audio=self.with_shifted_audio)
        planned = {(s.row, s.view): s for s in specs}  # the specs of the clips that decoded (crop, flip: boxes)
        batches, k = [], 0
        for chunk in chunks:
            batches.append(list(range(k, k + len(chunk))))
            k += len(chunk)
        workers = self.cfg.data.num_threads if self.cfg.data.num_threads > 1 else 0
        # its own generator: the workers' seed is not drawn from the global one, whose state an exact
        # resume restores around the loader (the clips are planned, the workers draw nothing random)
        dl = torch.utils.data.DataLoader(ds, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                                         pin_memory=torch.cuda.is_available(), generator=torch.Generator(),
                                         worker_init_fn=_one_thread if workers else None)
        for batch in dl:
            n_failed = batch.pop("_failed")
            if n_failed:
                self._count_failure(n_failed, total)
            if "fast" not in batch:
                continue
            rows, views = batch.pop("_row").tolist(), batch.pop("_view").tolist()
            yield self._finish(batch, [planned[(r, v)] for r, v in zip(rows, views)])


_SAID: set = set()


def say_once(key, message: str) -> None:
    """Log `message` (a warning) the first time `key` is seen in this process: a loader is built per
    epoch, and a run should say a thing once, not every epoch."""
    if key not in _SAID:
        _SAID.add(key)
        log.warning(message)


def _one_thread(_):
    torch.set_num_threads(1)


def build_loader(cfg: Config, split: str, mode: str, *, shard_id: int = 0, num_shards: int = 1, epoch: int = 0,
                 with_shifted_audio: bool = False) -> AVLoader:
    """Batches of `split` in `mode` ("train" | "test") for one shard; see docs/architecture.md."""
    return AVLoader(cfg, split, mode, shard_id=shard_id, num_shards=num_shards, epoch=epoch,
                    with_shifted_audio=with_shifted_audio)
