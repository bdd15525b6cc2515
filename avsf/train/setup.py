"""What a run sets up around its steps: threads, determinism, seeds, precision, parameter groups,
the starting weights (`train.init_from`), frozen BN and frozen layers (`train.freeze`), and the
per-epoch resource readings (peak memory)."""

from __future__ import annotations

import fnmatch
import os
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from avsf.config import Config
from avsf.cores import usable_cores
from avsf.distributed import DistInfo

HEAD_KEYS = ("head.*", "*.head.*")
"""The classifier's tensors (avsf's `ClassificationHead` is `.head`; a late ensemble's members
have their own): what `train.freeze = "all-but-head"` trains, and what `train.init_from` may
bring in another shape (a dataset with another class count: it keeps its fresh initialisation)."""


def cpu_threads(cfg: Config, info: DistInfo) -> int:
    """Intra-op threads for this process: `train.num_threads`, or (0) the usable cores
    (avsf.cores) left per process once the loader's worker processes have theirs. On 2 cores
    with 2 loader workers that is 1: a tiny run took 16 s with 1 thread and 60 s with torch's
    default 2 (threads spinning against the decoding workers)."""
    if cfg.train.num_threads > 0:
        return cfg.train.num_threads
    if info.device.type == "cuda":
        return torch.get_num_threads()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", info.world))
    workers = cfg.data.num_threads if cfg.data.num_threads > 1 else 0
    return max(1, usable_cores() // (max(local, 1) * (1 + workers)))


@contextmanager
def determinism(enabled: bool, device: torch.device):
    """Deterministic algorithms (and cuDNN without autotuning) for the duration of a run."""
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_det = torch.backends.cudnn.deterministic
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # On CUDA a few 3D-pooling backward kernels have no deterministic twin: warn there.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        torch.backends.cudnn.deterministic = prev_det


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def bn_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def param_groups(model: nn.Module, cfg: Config) -> list[dict]:
    """Weight decay `weight_decay` everywhere except BN parameters (`weight_decay_bn`)."""
    bn_ids = {id(p) for m in bn_modules(model) for p in m.parameters(recurse=False)}
    bn, other = [], []
    for p in model.parameters():
        if p.requires_grad:
            (bn if id(p) in bn_ids else other).append(p)
    groups = [{"params": other, "weight_decay": cfg.train.weight_decay}]
    if bn:
        groups.append({"params": bn, "weight_decay": cfg.train.weight_decay_bn})
    return groups


def freeze_bn(model: nn.Module) -> None:
    """A.5: BN as fixed affine layers: running statistics used, nothing updated."""
    for m in bn_modules(model):
        m.eval()
        for p in m.parameters(recurse=False):
            p.requires_grad_(False)


def is_head(name: str) -> bool:
    """A parameter or module name of the classifier (HEAD_KEYS; a DDP `module.` prefix is fine)."""
    return any(fnmatch.fnmatchcase(name, k) or fnmatch.fnmatchcase(name + ".", k) for k in HEAD_KEYS)


def freeze_all_but_head(model: nn.Module) -> None:
    """The linear protocol (A.1): every parameter but the classifier's is fixed. Their BN layers
    also keep their running statistics: `set_train_mode` leaves the frozen layers in eval mode."""
    for name, p in model.named_parameters():
        p.requires_grad_(is_head(name))


def apply_freezing(model: nn.Module, cfg: Config) -> None:
    """`train.frozen_bn` (A.5: BN as fixed affine layers) and `train.freeze`, before the optimiser
    takes the parameters that still train."""
    if cfg.train.frozen_bn:
        freeze_bn(model)
    if cfg.train.freeze == "all-but-head":
        freeze_all_but_head(model)


def set_train_mode(model: nn.Module, cfg: Config) -> None:
    """Training mode for what trains. Under the linear protocol the frozen layers compute as in
    evaluation (BN running statistics, no DropPathway: a fixed feature extractor) and only the
    classifier is in training mode (its dropout stays on)."""
    model.train()
    if cfg.train.freeze == "all-but-head":
        model.eval()
        for name, m in model.named_modules():
            if name and is_head(name):
                m.train()
    elif cfg.train.frozen_bn:
        for m in bn_modules(model):
            m.eval()


def _trained_without_labels(source: str) -> bool:
    """Whether `source` (a run folder, or checkpoints/last.pt inside one) is a label-free run,
    whose classifier never trained; unknown (a bare file) counts as no."""
    from avsf.config import ConfigError
    from avsf.run import RunDir
    from avsf.train.objectives import objective_for

    p = Path(source)
    folder = p if p.is_dir() else p.parent.parent if p.parent.name == "checkpoints" else None
    if folder is None or not RunDir(folder).config_path.is_file():
        return False
    try:
        return not objective_for(RunDir(folder).load_config()).reads_labels
    except (ConfigError, KeyError):
        return False  # a folder of another avsf version: loaded as any checkpoint is


def load_init(model: nn.Module, cfg: Config) -> Any:
    """`train.init_from`'s weights into `model` (avsf.weights.load_weights) -> its LoadReport.

    The classifier is left out (kept fresh) under the linear protocol, which trains a new linear
    classifier on the frozen features, and when the source is a label-free (pretext) run, whose
    classifier never trained; otherwise one of another shape stays fresh (another class count)."""
    from avsf.weights import load_weights

    source = cfg.train.init_from
    reason = ("the linear protocol trains a new classifier" if cfg.train.freeze == "all-but-head" else
              "the source is a label-free run: its classifier never trained" if _trained_without_labels(source)
              else "")
    return load_weights(model, source, new_heads=HEAD_KEYS, fresh=HEAD_KEYS if reason else (), fresh_reason=reason)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: the most memory allocated since `reset_peak_memory` (this epoch); CPU: the process's
    peak resident set so far (the kernel keeps no per-epoch peak)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
