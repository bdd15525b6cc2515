"""Output heads: classification (softmax / sigmoid / verb+noun) and AV synchronisation."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


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
