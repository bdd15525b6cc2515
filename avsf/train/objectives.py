"""What a run is trained on, as plug-ins: the head's task objective and the auxiliary losses.

The trainer never asks which head or which auxiliary task it runs: it takes the objective
registered under `model.head` and every registered auxiliary that `enabled(cfg)` says is on,
and for each step calls `prepare` (the auxiliaries may add inputs, e.g. AVS's audio
negatives), the model, then the losses. A new head (detection) or pretext task (rotation)
is one registration here or in its own module, with no edit of the loop.

An objective's `correct` returns a device tensor (the loop never waits for the device per
step); `metric` names the validation number that decides the best epoch and convergence;
`evaluate` scores a split for validation and the final test (by default the classification
scoring of avsf.eval.inference: per-class table and predictions.json); `reads_labels = False`
marks a label-free objective: the trainer then never reads a label (no label checks, the data's
label-free mode); `check(cfg)` adds the objective's config rules to `Config.validate`.

`model.head` picks the objective (`train.objective = "task"`, the default); `train.objective`
may name another registered one instead, e.g. "pretext" (avsf.train.pretext: label-free
pretraining on the auxiliary losses alone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from avsf.config import Config
from avsf.eval import metrics as M
from avsf.train.detection import box_correct, box_count, box_loss
from avsf.train.losses import avs_enabled, avs_loss, task_loss, with_audio_negative

Batch = dict[str, Any]
Out = dict[str, Any]


def zeros_like_batch(batch: Batch) -> torch.Tensor:
    """A float64 zero on the batch's device (a count of nothing)."""
    device = next(v.device for v in batch.values() if torch.is_tensor(v))
    return torch.zeros((), dtype=torch.float64, device=device)


def batch_size(batch: Batch) -> int:
    """Clips in the batch, from a key every batch has before its labels (a label-free run has none)."""
    for k in ("index", "slow", "audio", "label", "verb"):
        if k in batch:
            return int(batch[k].shape[0])
    raise KeyError("cannot tell the batch size: no label/verb/index/slow/audio in the batch")


def classify(model: Any, loader: Any, dist_info: Any, cfg: Config, **kw: Any) -> Any:
    """The default `Objective.evaluate`: avsf.eval.inference.evaluate_split (video-level
    classification metrics, per-class table, predictions.json's record)."""
    from avsf.eval.inference import evaluate_split

    return evaluate_split(model, loader, dist_info, **kw)


@dataclass(frozen=True)
class Objective:
    name: str
    loss: Callable[[Out, Batch, Config], torch.Tensor]
    correct: Callable[[Out, Batch], torch.Tensor]
    size: Callable[[Batch], int | torch.Tensor] = batch_size  # what `correct` counts (clips, boxes)
    metric: str = "top1"
    # (model, loader, dist_info, cfg, *, dataset, split, precision, channels_last, spatial_views,
    #  progress, desc) -> avsf.eval.inference.SplitScores
    evaluate: Callable[..., Any] = classify
    reads_labels: bool = True
    check: Callable[[Config], None] | None = None  # raises ConfigError naming the key


@dataclass(frozen=True)
class Auxiliary:
    name: str  # its loss is logged as f"{name}_loss" in metrics.jsonl's train rows
    enabled: Callable[[Config], bool]
    loss: Callable[[Out, Batch, Config], torch.Tensor | None]
    # (batch, progress in [0, 1], cfg, a generator keyed by (seed, step)) -> the batch the model sees
    prepare: Callable[[Batch, float, Config, torch.Generator], Batch] | None = None
    needs_shifted_audio: bool = False  # asks the loader for `audio_shifted`
    # (out, batch) -> (right, total) device tensors: how often the pretext task is solved
    # (a label-free objective's accuracy); None: the auxiliary has no such measure
    correct: Callable[[Out, Batch], tuple[torch.Tensor, torch.Tensor]] | None = None


OBJECTIVES: dict[str, Objective] = {}
AUXILIARIES: dict[str, Auxiliary] = {}


def register_objective(obj: Objective) -> Objective:
    if obj.name in OBJECTIVES:
        raise ValueError(f"objective '{obj.name}' is registered twice")
    OBJECTIVES[obj.name] = obj
    return obj


def register_auxiliary(aux: Auxiliary) -> Auxiliary:
    if aux.name in AUXILIARIES:
        raise ValueError(f"auxiliary loss '{aux.name}' is registered twice")
    AUXILIARIES[aux.name] = aux
    return aux


def objective_for(cfg: Config) -> Objective:
    """`train.objective`'s objective; "task" is the one registered under `model.head`."""
    name, key = (cfg.model.head, "model.head") if cfg.train.objective == "task" else (cfg.train.objective,
                                                                                     "train.objective")
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise KeyError(f"{key} '{name}' has no training objective registered "
                       f"(registered: {', '.join(sorted(OBJECTIVES))})") from None


def auxiliaries_for(cfg: Config) -> list[Auxiliary]:
    """The auxiliary losses on in this run. None under `train.freeze = "all-but-head"` (the
    linear protocol): with every layer but the classifier frozen they would train nothing."""
    if cfg.train.freeze != "none":
        return []
    return [a for a in AUXILIARIES.values() if a.enabled(cfg)]


# ----------------------------------------------------------------------------- the built-ins
def _top1_correct(out: Out, batch: Batch) -> torch.Tensor:
    """Clips whose top-1 class is right; multi-label: whose top-1 class is one of their labels."""
    with torch.no_grad():
        logits, label = out["logits"].float(), batch["label"]
        if label.dim() == 2:
            top = logits.argmax(1, keepdim=True)
            return (label.gather(1, top) > 0.5).sum()
        return M.topk_correct(logits, label, 1).sum()


def _action_correct(out: Out, batch: Batch) -> torch.Tensor:
    """Clips whose verb and noun are both right (EPIC's action top-1)."""
    with torch.no_grad():
        v = M.topk_correct(out["verb_logits"].float(), batch["verb"], 1)
        n = M.topk_correct(out["noun_logits"].float(), batch["noun"], 1)
        return (v & n).sum()


register_objective(Objective("softmax", task_loss, _top1_correct))
register_objective(Objective("sigmoid", task_loss, _top1_correct))
register_objective(Objective("verb-noun", task_loss, _action_correct))
# detection (avsf.train.detection): per-box sigmoid BCE; validated on frame-level mAP
register_objective(Objective("detection", box_loss, box_correct, size=box_count, metric="mAP"))


def _avs_correct(out: Out, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs the AVS heads order right (in-sync scored above out-of-sync), over every junction."""
    with torch.no_grad():
        scores = list((out.get("sync") or {}).values())
        if not scores:
            zero = zeros_like_batch(batch)
            return zero, zero
        s = torch.cat([x.float() for x in scores])
        return (s[:, 0] > s[:, 1]).sum().double(), s.new_tensor(float(s.shape[0]), dtype=torch.float64)


register_auxiliary(Auxiliary(
    "avs", enabled=avs_enabled, loss=lambda out, batch, cfg: avs_loss(out.get("sync"), cfg),
    prepare=with_audio_negative, needs_shifted_audio=True, correct=_avs_correct,
))

# Plug-ins that live in their own modules register on import (after the registries exist).
from avsf.train import pretext  # noqa: E402,F401  ROT and the label-free "pretext" objective
