"""Self-supervised pretraining (Sec. 6, A.1, A.8): the ROT pretext task and the label-free
"pretext" objective, as plug-ins of avsf.train.objectives (the loop knows neither).

ROT (`train.rot_weight > 0`, needs `model.rot_head`): every clip of a batch is turned by k x 90
degrees, k in 0..3 drawn per clip from the step's generator (keyed by (seed, step): every
variant of a study and a resumed run draw the same turns), all frames of both visual pathways
alike (`avsf.model.pretext.rotate_clip`); the rotation head's `rot_logits` predict k, a four-way
softmax cross-entropy times `train.rot_weight`. Audio is not turned.

"pretext" (`train.objective = "pretext"`): no task loss; the auxiliary losses that are on (AVS,
ROT) are the whole loss, and no label is ever read (the trainer skips its label checks and asks
the data for its label-free mode). Its accuracy is the mean, over the pretext tasks, of how often
each is solved (ROT: the right turn; AVS: the in-sync pair scored above the out-of-sync one):
`pretext_top1` in the train rows (`top1`), validation and result.json, with `rot_top1` and
`avs_top1` beside it. Validation and the final test score the pretext tasks on the split's clips
with fixed turns (keyed by (seed, batch)) and another clip's audio as the negative.
"""

from __future__ import annotations

import copy
import sys
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from avsf.config import Config, ConfigError
from avsf.train.objectives import (
    AUXILIARIES,
    Auxiliary,
    Objective,
    auxiliaries_for,
    batch_size,
    register_auxiliary,
    register_objective,
    zeros_like_batch,
)

Batch = dict[str, Any]
Out = dict[str, Any]

ROTATIONS = 4  # 0, 90, 180, 270 degrees (avsf.model.pretext.ROTATIONS)
ROT_STREAM = 0x524F54
"""Mixed into the step's seed for the turns, so they are independent of AVS's draws from the
same (seed, step)."""
EVAL_STREAM = 0x45564C
"""Mixed into the seed of the turns drawn for validation and testing (keyed by (seed, batch))."""


# ----------------------------------------------------------------------------- ROT
def rotation_targets(clips: int, generator: torch.Generator) -> torch.Tensor:
    """(clips,) int64 turns in 0..3, a function of the generator's seed alone."""
    g = torch.Generator().manual_seed(generator.initial_seed() ^ ROT_STREAM)
    return torch.randint(0, ROTATIONS, (clips,), generator=g)


def with_rotation(batch: Batch, progress: float, cfg: Config, generator: torch.Generator) -> Batch:
    """A shallow copy of `batch` with `slow` and `fast` turned per clip and the turn in
    `rot_target` (ROT's target); the caller's batch is not changed."""
    from avsf.model.pretext import rotate_clip

    k = rotation_targets(batch["slow"].shape[0], generator)
    out = rotate_clip(batch, k)
    out["rot_target"] = k.to(batch["slow"].device)
    return out


def rot_loss(out: Out, batch: Batch, cfg: Config) -> torch.Tensor:
    return cfg.train.rot_weight * F.cross_entropy(out["rot_logits"].float(), batch["rot_target"])


def rot_correct(out: Out, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips whose turn the rotation head names right, and the clips (0, 0 without ROT)."""
    if "rot_target" not in batch or "rot_logits" not in out:
        zero = zeros_like_batch(batch)
        return zero, zero
    with torch.no_grad():
        target = batch["rot_target"]
        right = (out["rot_logits"].argmax(1) == target).sum().double()
        return right, torch.full_like(right, float(target.shape[0]))


register_auxiliary(Auxiliary("rot", enabled=lambda cfg: cfg.train.rot_weight > 0, loss=rot_loss,
                             prepare=with_rotation, correct=rot_correct))


# ----------------------------------------------------------------------------- the objective
def no_task_loss(out: Out, batch: Batch, cfg: Config) -> torch.Tensor:
    """Zero: a pretext run learns from its auxiliary losses alone (and never reads `label`)."""
    return zeros_like_batch(batch).float()


def pretext_accuracy(out: Out, batch: Batch) -> tuple[torch.Tensor, list[tuple[str, torch.Tensor, torch.Tensor]]]:
    """(mean accuracy over the pretext tasks that scored this batch, [(task, right, total)]), on
    the device; the tasks are the registered auxiliaries that measure one (`Auxiliary.correct`)."""
    parts = [(a.name, *a.correct(out, batch)) for a in AUXILIARIES.values() if a.correct is not None]
    if not parts:
        return zeros_like_batch(batch), parts
    right = torch.stack([p[1] for p in parts])
    total = torch.stack([p[2] for p in parts])
    scored = (total > 0).double()
    acc = (right / total.clamp(min=1) * scored).sum() / scored.sum().clamp(min=1)
    return acc, parts


def pretext_correct(out: Out, batch: Batch) -> torch.Tensor:
    """The clips' share the pretext tasks solve, as a clip count (the train rows' `top1`)."""
    acc, _ = pretext_accuracy(out, batch)
    return acc * batch_size(batch)


def check_pretext(cfg: Config) -> None:
    """A pretext run needs at least one pretext loss on."""
    on = [a.name for a in auxiliaries_for(cfg)]
    if not on:
        raise ConfigError(
            "train.objective: 'pretext' is not allowed with no pretext loss on; turn on ROT (model.rot_head = true, "
            "train.rot_weight > 0) and/or AVS (model.pathways = 'avslowfast', model.avs_layers non-empty, "
            "train.avs_weight > 0)")


@contextmanager
def scoring_mode(model: torch.nn.Module):
    """Every layer in evaluation mode (BN running statistics, no dropout, no DropPathway) while
    the model object itself says `training`, so that it still scores the AVS pairs it is given
    (AVSlowFast computes `sync` only then). Leaves the model in evaluation mode."""
    model.eval()
    model.training = True
    try:
        yield
    finally:
        model.eval()


def _eval_generator(cfg: Config, batch_index: int) -> torch.Generator:
    return torch.Generator().manual_seed((cfg.train.seed * 1_000_003 + batch_index) ^ EVAL_STREAM)


@torch.no_grad()
def evaluate_pretext(model: Any, loader: Any, dist_info: Any, cfg: Config, *, precision: str = "fp32",
                     channels_last: bool = False, progress: bool = False, desc: str | None = None,
                     split: str = "", **_: Any) -> Any:
    """`Objective.evaluate` of "pretext": `<task>_top1` for each pretext task that is on and
    `pretext_top1` (their mean) over the clips (views) `loader` yields; no per-class table, no
    predictions. Negatives are another clip's audio (the test-mode loader has no shifted audio)."""
    from tqdm import tqdm

    from avsf import distributed as D
    from avsf.eval.inference import SplitScores, autocast_context, to_device

    vcfg = copy.deepcopy(cfg)
    vcfg.train.avs_hard_fraction = 0.0  # easy negatives only
    aux = auxiliaries_for(vcfg)
    names = [a.name for a in aux if a.correct is not None]
    sums = torch.zeros(2 * len(names) + 1, dtype=torch.float64)
    bar = tqdm(total=len(loader) if hasattr(loader, "__len__") else None, desc=desc or split, unit="batch",
               leave=False, dynamic_ncols=True, disable=not (progress and dist_info.main and sys.stderr.isatty()))
    with scoring_mode(model):
        for j, batch in enumerate(loader):
            batch = to_device(batch, dist_info.device, channels_last)
            for a in aux:
                if a.prepare is not None:
                    batch = a.prepare(batch, 0.0, vcfg, _eval_generator(vcfg, j))
            with autocast_context(dist_info.device, precision):
                out = model(batch)
            measured = {name: (r, t) for name, r, t in pretext_accuracy(out, batch)[1]}
            row = [float(x) for n in names for x in measured[n]] + [float(batch_size(batch))]
            sums += torch.tensor(row, dtype=torch.float64)
            bar.update(1)
    bar.close()
    *totals, clips, failed = D.all_reduce_sum([*sums.tolist(), float(getattr(loader, "failed", 0))], dist_info)
    metrics: dict[str, float] = {}
    for i, name in enumerate(names):
        right, total = totals[2 * i], totals[2 * i + 1]
        metrics[f"{name}_top1"] = right / total if total else float("nan")
    scored = [v for v in metrics.values() if v == v]
    metrics["pretext_top1"] = sum(scored) / len(scored) if scored else float("nan")
    metrics["clips"] = clips
    return SplitScores(metrics, {}, {}, int(failed))


register_objective(Objective("pretext", no_task_loss, pretext_correct, metric="pretext_top1",
                             evaluate=evaluate_pretext, reads_labels=False, check=check_pretext))
