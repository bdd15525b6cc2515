"""Output heads: classification (softmax / sigmoid / verb+noun), per-box detection, rotation
(the ROT pretext task) and AV synchronisation."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import roi_align

DETECTION_STRIDE = 16
"""Input pixels per feature-map cell of the detection backbone (res5 undilated: 32)."""
ROI_RESOLUTION = 7  # PySlowFast's AVA configs (POOLER_RESOLUTION)


class ClassificationHead(nn.Module):
    """Concatenated pooled pathway features -> dropout -> fc (one fc per task for verb-noun)."""

    def __init__(self, dim_in: int, *, kind: str, num_classes: int, num_verbs: int, num_nouns: int, dropout: float):
        super().__init__()
        self.kind = kind
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if kind == "verb-noun":
            self.verb = nn.Linear(dim_in, num_verbs)
            self.noun = nn.Linear(dim_in, num_nouns)
        else:
            self.fc = nn.Linear(dim_in, num_classes)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.dropout(features)
        if self.kind == "verb-noun":
            verb, noun = self.verb(x), self.noun(x)
            return {"logits": torch.cat([verb, noun], dim=1), "verb_logits": verb, "noun_logits": noun}
        return {"logits": self.fc(x)}


class DetectionHead(nn.Module):
    """Per-box action classifier for AVA-style detection (Sec. 5, A.7; PySlowFast ResNetRoIHead).

    Each visual pathway's final map is averaged over time, RoIAlign-ed (7x7, aligned corners)
    at every valid person box of the keyframe and max-pooled to one vector per box; the
    pathways' vectors and the clip's pooled audio (as in classification) are concatenated,
    then dropout and one fc per class (sigmoid in the loss / at test).

    Boxes are (B, K, 4) x1, y1, x2, y2 in input pixels with a (B, K) bool `box_mask`. Output:
    `box_logits` (N, C) for the N valid boxes in (batch, k) order and `box_index` (N,) with
    the flat index b * K + k of each, so `box_labels.flatten(0, 1)[box_index]` are its labels.
    """

    def __init__(self, dims_visual: list[int], dim_audio: int, *, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(sum(dims_visual) + dim_audio, num_classes)

    def forward(self, maps: list[torch.Tensor], audio: torch.Tensor | None, boxes: torch.Tensor,
                box_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        k = box_mask.shape[1]
        index = box_mask.flatten().nonzero().squeeze(1)
        clip = index // k
        rois = torch.cat([clip[:, None].to(boxes.dtype), boxes.flatten(0, 1)[index]], dim=1)
        features = []
        for m in maps:
            frame = m.mean(dim=2)  # temporal pooling
            pooled = roi_align(frame, rois.to(frame.dtype), output_size=ROI_RESOLUTION,
                               spatial_scale=1.0 / DETECTION_STRIDE, sampling_ratio=0, aligned=True)
            features.append(pooled.amax(dim=(2, 3)))
        if audio is not None:
            features.append(audio[clip])
        return {"box_logits": self.fc(self.dropout(torch.cat(features, dim=1))), "box_index": index}


class SyncHead(nn.Module):
    """Hierarchical AV synchronisation at one junction (Sec. 3.5).

    Pooled visual and audio features are projected to `dim`. "contrastive" (authors' code):
    L2-normalised, scaled by 0.5, score = minus squared distance. "bce" (the paper's text,
    "classify whether a pair is in sync"): a linear classifier on the concatenated pair.
    Returns (B, 2): column 0 the in-sync pair, column 1 the out-of-sync pair.
    """

    def __init__(self, dim_visual: int, dim_audio: int, *, dim: int, mode: str):
        super().__init__()
        self.mode = mode
        self.visual = nn.Linear(dim_visual, dim)
        self.audio = nn.Linear(dim_audio, dim)
        self.classifier = nn.Linear(2 * dim, 1) if mode == "bce" else None

    def score(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        if self.classifier is not None:
            return self.classifier(torch.cat([v, a], dim=1)).squeeze(1)
        return -(v - a).pow(2).sum(dim=1)

    def forward(self, visual: torch.Tensor, audio_pos: torch.Tensor, audio_neg: torch.Tensor) -> torch.Tensor:
        v, ap, an = self.visual(visual), self.audio(audio_pos), self.audio(audio_neg)
        if self.classifier is None:
            v, ap, an = (0.5 * F.normalize(t, dim=1) for t in (v, ap, an))
        return torch.stack([self.score(v, ap), self.score(v, an)], dim=1)
