"""Training losses: the task loss (CE / BCE / verb+noun CE) and the AVS auxiliary loss.

All functions read the model's output dict and the batch dict of docs/architecture.md and
never modify either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avsf.config import Config
from avsf.model.sync import sync_loss


def _task_loss_one(logits_out: dict, batch: dict, cfg: Config) -> torch.Tensor:
    head = cfg.model.head
    if head == "verb-noun":
        return F.cross_entropy(logits_out["verb_logits"].float(), batch["verb"]) + F.cross_entropy(
            logits_out["noun_logits"].float(), batch["noun"]
        )
    logits = logits_out["logits"].float()
    label = batch["label"]
    if head == "sigmoid" or label.dim() == 2:
        return F.binary_cross_entropy_with_logits(logits, label.float())
    return F.cross_entropy(logits, label)


def task_loss(out: dict, batch: dict, cfg: Config) -> torch.Tensor:
    """Softmax CE (single label), per-class sigmoid BCE (multi-label), verb CE + noun CE.

    A late ensemble (`member_logits`) trains each member on its own loss; the losses are summed.
    """
    members = out.get("member_logits")
    if members:
        if cfg.model.head == "verb-noun":
            raise ValueError("late-ensemble with a verb-noun head is not supported")
        return sum(_task_loss_one({"logits": m}, batch, cfg) for m in members)
    return _task_loss_one(out, batch, cfg)


def avs_loss(sync: dict, cfg: Config) -> torch.Tensor | None:
    """Audiovisual-synchronisation loss of the junctions present, times avs_weight; None when
    no junction produced a score. The form (`model.avs_loss`, `model.avs_loss_form`) lives
    with the model: avsf.model.sync.sync_loss."""
    loss = sync_loss(sync, cfg.model)
    return None if loss is None else cfg.train.avs_weight * loss


def avs_enabled(cfg: Config) -> bool:
    """AVS needs both modalities in one network and at least one AVS junction."""
    return bool(cfg.model.avs_layers) and cfg.model.pathways == "avslowfast" and cfg.train.avs_weight > 0


def hard_negative_mask(batch_size: int, progress: float, cfg: Config, generator: torch.Generator) -> torch.Tensor:
    """Which samples get a hard negative: none before `avs_hard_start` of training, then a
    random `avs_hard_fraction` of them (the curriculum of Sec. 3.5 / A.8)."""
    if progress < cfg.train.avs_hard_start or cfg.train.avs_hard_fraction <= 0:
        return torch.zeros(batch_size, dtype=torch.bool)
    return torch.rand(batch_size, generator=generator) < cfg.train.avs_hard_fraction


def with_audio_negative(batch: dict, progress: float, cfg: Config, generator: torch.Generator) -> dict:
    """A shallow copy of `batch` with `audio_negative` added.

    Easy negative: another clip's audio (the batch rolled by one). Hard negative: the same
    clip's audio shifted by >= 0.5 s (`audio_shifted`, asked from the loader).
    """
    audio = batch["audio"]
    easy = torch.roll(audio, shifts=1, dims=0)
    mask = hard_negative_mask(audio.shape[0], progress, cfg, generator)
    out = dict(batch)
    if mask.any():
        if "audio_shifted" not in batch:
            raise KeyError("AVS hard negatives need 'audio_shifted' in the batch (with_shifted_audio=True)")
        m = mask.to(audio.device).view(-1, *([1] * (audio.dim() - 1)))
        out["audio_negative"] = torch.where(m, batch["audio_shifted"], easy)
    else:
        out["audio_negative"] = easy
    return out
