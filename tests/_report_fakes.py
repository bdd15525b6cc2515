"""A fake trainer for report tests: the study runner's FakeTrainer plus what the current trainer
writes (predictions.json, contract 3; result.json `converged`, `stopped_epoch`, `provenance`,
contracts 4 and 6), with result numbers computed from the predictions so the two agree."""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from test_study_runner import CLASSES, GROUPS, FakeTrainer, fake_numbers  # noqa: E402


def clip_scores(label: np.ndarray, correct: np.ndarray, n_classes: int) -> np.ndarray:
    """Probability rows whose argmax is the label when `correct`, else the next class."""
    scores = np.full((len(label), n_classes), 0.02)
    top = np.where(correct, label, (label + 1) % n_classes)
    scores[np.arange(len(label)), top] = 0.7
    scores[np.arange(len(label)), np.where(correct, (label + 2) % n_classes, label)] += 0.1
    return np.round(scores / scores.sum(1, keepdims=True), 5)


class PredictingTrainer(FakeTrainer):
    def __init__(self, *, per_class: int = 40, unconverged: tuple[str, ...] = (), commits: dict[str, str] | None = None,
                 dirty: tuple[str, ...] = (), **kw):
        super().__init__(**kw)
        self.per_class, self.unconverged, self.commits, self.dirty = per_class, unconverged, commits or {}, dirty

    def __call__(self, cfg, out_dir, **kw):
        result = super().__call__(cfg, out_dir, **kw)
        out = Path(out_dir)
        if (out / "predictions.json").exists():
            return result
        label = np.repeat(np.arange(len(CLASSES)), self.per_class)
        # a clip's difficulty is shared by every run (same test clips); each run adds its own luck
        difficulty = np.random.default_rng(0).random(len(label))
        luck = np.random.default_rng(zlib.crc32(cfg.name.encode())).random(len(label))
        nums = fake_numbers(cfg)
        p = np.array([nums[f"top1_{next(g for g, m in GROUPS.items() if c in m)}"] for c in label])
        correct = 0.8 * difficulty + 0.2 * luck < p
        scores = clip_scores(label, correct, len(CLASSES))
        (out / "predictions.json").write_text(json.dumps({
            "split": "test", "classes": CLASSES, "index": list(range(len(label))), "label": label.tolist(),
            "scores": scores.tolist()}))
        result["top1"] = float(correct.mean())
        result["top5"] = 1.0
        for g, members in GROUPS.items():
            result[f"top1_{g}"] = float(correct[np.isin(label, members)].mean())
        run = cfg.name.split("/", 1)[1]
        result.update(train_time_s=50.0, test_time_s=10.0)  # one minute per run, all ending together
        result.update(converged=int(run not in self.unconverged), stopped_epoch=cfg.train.epochs,
                      best_epoch=cfg.train.epochs, provenance={
                          "avsf_version": "0.1.0", "git_commit": self.commits.get(run, "abc1234def5678"),
                          "git_dirty": run in self.dirty, "torch": "2.11", "python": "3.11", "host": "test",
                          "created": "2026-11-27T00:00:00Z"})
        (out / "result.json").write_text(json.dumps(result))
        return result
