"""Hierarchical audiovisual synchronisation (AVS, Sec. 3.5): which pairs count, and the loss.

The model scores each (visual, audio) pair at its AVS junctions (`SyncHead`); this module
decides which clips of a batch take part (`sync_mask`) and turns the scores into the loss
(`sync_loss`, called by the trainer's `avsf.train.losses.avs_loss`).

Two forms of the contrastive loss (Korbar et al. 2018), `model.avs_loss_form`:
- "authors" (the authors' code): with d the L2 distance of the normalised embeddings,
  sum(d_pos^2 + max(0, margin - d_neg)^2) / 2N per junction, summed over the junctions.
- "avsf" (this project's first reading): mean(d_pos^2) + mean(max(0, margin - d_neg^2)^2)
  per junction (the hinge on the squared distance), averaged over the junctions.
`model.avs_loss = "bce"` (the text's "classify whether a pair is in sync") ignores the form:
BCE with logits, in-sync = 1, averaged over the junctions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avsf.config import ModelConfig


def sync_mask(audio: torch.Tensor, negative: torch.Tensor, *, silence_var: float, duplicate_cos: float) -> torch.Tensor:
    """(B,) bool: clips that take part in AVS.

    Out: clips whose audio or negative audio is near-silent (variance of the log-mel input
    below `silence_var`: a flat spectrogram is "in sync" with any video), and pairs whose
    negative is a near-duplicate of the positive (cosine similarity above `duplicate_cos`,
    e.g. the same clip twice in a batch: the labels would contradict each other). The
    authors' code masks the same two cases with 0.01 and 0.99999.
    """
    pos, neg = audio.flatten(1).float(), negative.flatten(1).float()
    audible = (pos.var(dim=1) >= silence_var) & (neg.var(dim=1) >= silence_var)
    distinct = F.cosine_similarity(pos, neg, dim=1).clamp(-1.0, 1.0) <= duplicate_cos  # rounding can exceed 1
    return audible & distinct


def _contrastive(scores: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    sq_pos, sq_neg = -scores[:, 0], -scores[:, 1]  # squared distances (SyncHead's score is minus it)
    if cfg.avs_loss_form == "authors":
        d_neg = sq_neg.clamp(min=1e-12).sqrt()  # clamp: the root's gradient is infinite at 0
        return (sq_pos.sum() + torch.clamp(cfg.avs_margin - d_neg, min=0).pow(2).sum()) / (2 * scores.shape[0])
    return sq_pos.mean() + torch.clamp(cfg.avs_margin - sq_neg, min=0).pow(2).mean()


def _bce(scores: torch.Tensor) -> torch.Tensor:
    target = torch.zeros_like(scores)
    target[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(scores, target)


def sync_loss(sync: dict[str, torch.Tensor] | None, cfg: ModelConfig) -> torch.Tensor | None:
    """The AVS loss of one forward (before `train.avs_weight`); None when no junction scored.

    `sync[j]` is (N, 2), one row per clip kept by the mask: column 0 scores the in-sync pair,
    column 1 the out-of-sync pair. A junction whose rows were all masked adds zero (still
    connected to the graph, so every rank of a distributed run sees the same parameters used).
    """
    if not sync:
        return None
    losses = []
    for scores in sync.values():
        scores = scores.float()
        if scores.shape[0] == 0:
            losses.append(scores.sum() * 0.0)
        elif cfg.avs_loss == "bce":
            losses.append(_bce(scores))
        else:
            losses.append(_contrastive(scores, cfg))
    stacked = torch.stack(losses)
    summed = cfg.avs_loss == "contrastive" and cfg.avs_loss_form == "authors"
    return stacked.sum() if summed else stacked.mean()


__all__ = ["sync_loss", "sync_mask"]
