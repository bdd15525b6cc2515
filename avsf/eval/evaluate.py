"""`evaluate(run_dir, views)`: multi-view testing of a run's final model, and per-class
comparisons between two runs (which classes gain from audio, Fig. A.1 / A.3)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from avsf.config import ConfigError
from avsf.factories import Factories
from avsf.run import RunDir, numbers_only


def parse_views(views: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """"10x3" -> (10 temporal, 3 spatial)."""
    if views is None:
        return None
    if isinstance(views, (tuple, list)):
        t, s = views
        return int(t), int(s)
    try:
        t, s = str(views).lower().split("x")
        t, s = int(t), int(s)
    except ValueError:
        raise ConfigError(f"--views wants TEMPORALxSPATIAL, e.g. 10x3; got {views!r}") from None
    if t < 1 or s < 1:
        raise ConfigError(f"--views wants positive counts, got {views!r}")
    return t, s


def _views_tag(cfg, sets: list[str] | None) -> str:
    """eval_<tag>.json: the views, plus a hash of the --set overrides (another dataset, ...) so
    that scores of another setting never overwrite the run's own."""
    tag = f"{cfg.eval.temporal_views}x{cfg.eval.spatial_views}"
    if sets:
        import hashlib

        tag += "-" + hashlib.sha1("\n".join(sorted(sets)).encode()).hexdigest()[:8]
    return tag


def _score(cfg, load_into: Callable[[Any], None], info, factories, *, progress: bool, fuse: bool):
    """Build the model, fill it (`load_into(model)`), optionally fold BN, score `cfg.eval.split`."""
    from avsf.eval.inference import evaluate_split
    from avsf.model.fuse import fuse_for_inference, to_channels_last

    dataset = factories.dataset_info(cfg)
    if cfg.model.num_classes <= 0:
        cfg.model.num_classes = int(dataset.num_classes)
    if cfg.model.head != "verb-noun" and int(dataset.num_classes) > cfg.model.num_classes:
        raise ConfigError(f"{cfg.data.dataset} has {dataset.num_classes} classes, the model's head "
                          f"{cfg.model.num_classes} (model.num_classes); evaluate on data with the model's classes")
    model = factories.model(cfg).to(info.device)
    load_into(model)
    if fuse:
        model = fuse_for_inference(model)
        if info.device.type == "cpu":  # on CUDA, cfg.train.channels_last sets the layout
            to_channels_last(model)
    loader = factories.loader(cfg, cfg.eval.split, "test", shard_id=info.rank, num_shards=info.world)
    return evaluate_split(model, loader, info, dataset=dataset, split=cfg.eval.split, precision=cfg.train.precision,
                          channels_last=cfg.train.channels_last and info.device.type == "cuda",
                          spatial_views=cfg.eval.spatial_views, video_pool=cfg.eval.video_pool, progress=progress,
                          desc=f"test {cfg.eval.temporal_views}x{cfg.eval.spatial_views}")


def _metrics(scores, cfg, sets: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = numbers_only({**scores.metrics, "failed_clips": scores.failed,
                                        "temporal_views": cfg.eval.temporal_views,
                                        "spatial_views": cfg.eval.spatial_views})
    if sets:
        out["set"] = list(sets)
    return out


def evaluate(run_dir: str | Path, views: str | tuple[int, int] | None = None, *, sets: list[str] | None = None,
             progress: bool = True, fuse: bool = True, factories: Factories | None = None) -> dict[str, Any]:
    """Test the run's final model (checkpoints/last.pt) on `cfg.eval.split` with `views`
    (default: the run's `eval.temporal_views x eval.spatial_views`) and `sets` overrides on the
    run's config (e.g. `data.dataset=...`: another dataset).

    `fuse`: fold BatchNorm into the convs (avsf.model.fuse; on the CPU also channels-last conv
    weights) before testing: same scores to float rounding, a faster forward on the CPU
    (docs/performance.md, the `avsf` vs `avsf-plain` eval rows).

    Softmax scores are averaged over views (sigmoid + temporal max-pool for multi-label).
    Writes `eval_<tag>.json` (metrics) and `per_class_<tag>.json` into the run folder (tag:
    `_views_tag`) and returns the metrics (numbers, plus `set` when overrides were given).
    """
    from avsf import distributed as D
    from avsf.config import apply

    run = RunDir(run_dir)
    cfg = run.load_config()
    if cfg.train.objective != "task":  # a pretraining run has no trained classifier to test
        raise ConfigError(f"{run.path} trained train.objective = {cfg.train.objective!r}, not a classifier: avsf eval "
                          f"tests classifiers (its pretext scores are in its result.json); train one from it, e.g. "
                          f"avsf train --init {run.path} --set train.freeze=all-but-head ... (docs/ssl.md)")
    apply(cfg, list(sets or []))
    tv = parse_views(views)
    if tv:
        cfg.eval.temporal_views, cfg.eval.spatial_views = tv
    info = D.setup()
    try:
        state = run.load_checkpoint(map_location=info.device)
        epoch = state.get("state", {}).get("epoch", cfg.train.epochs)
        if epoch < cfg.train.epochs and not run.is_done() and info.main:
            print(f"avsf eval: note: {run.path} is not finished (epoch {epoch} of {cfg.train.epochs}); "
                  f"evaluating its last checkpoint", file=sys.stderr, flush=True)
        scores = _score(cfg, lambda m: m.load_state_dict(state["model"]), info, factories or Factories(),
                        progress=progress, fuse=fuse)
        metrics = _metrics(scores, cfg, sets)
        if info.main:
            tag = _views_tag(cfg, sets)
            run.write_eval(tag, metrics)
            run.write_per_class(scores.per_class, tag)
        return metrics
    finally:
        D.teardown(info)


def evaluate_checkpoint(checkpoint: str | Path, cfg, views: str | tuple[int, int] | None = None, *,
                        progress: bool = True, fuse: bool = True, factories: Factories | None = None) -> dict[str, Any]:
    """Test a bare checkpoint (any layout avsf.weights reads) with the model `cfg` describes;
    every model tensor must come from the file. Writes nothing; returns the metrics."""
    from avsf import distributed as D
    from avsf.weights import WeightsError, load_weights

    tv = parse_views(views)
    if tv:
        cfg.eval.temporal_views, cfg.eval.spatial_views = tv

    def load_into(model) -> None:
        report = load_weights(model, checkpoint)
        if report.missing:
            raise WeightsError(f"{report}\n{checkpoint} lacks {len(report.missing)} of the model's tensors; "
                               f"is --config/--variant the model it was trained as?")
        if progress:
            print(f"avsf eval: {report}", file=sys.stderr, flush=True)

    info = D.setup()
    try:
        return _metrics(_score(cfg, load_into, info, factories or Factories(), progress=progress, fuse=fuse), cfg, None)
    finally:
        D.teardown(info)


def _per_class(run_dir: Path, views: tuple[int, int] | None) -> dict:
    run = RunDir(run_dir)
    tag = f"{views[0]}x{views[1]}" if views else None
    pc = run.read_per_class(tag)
    if pc is None:
        name = f"per_class_{tag}.json" if tag else "per_class.json"
        raise ConfigError(f"{run.file(name)} is missing or damaged (finish the run, or evaluate it with --views first)")
    return pc


def compare_runs(run_a: str | Path, run_b: str | Path, views: str | None = None) -> list[dict[str, Any]]:
    """Per-class accuracy of run A minus run B, largest gain first.

    E.g. A = AVSlowFast, B = SlowFast: the classes that gain from audio (Fig. A.1 / A.3).
    Each row: class, group (synthetic groups, else ""), a, b, diff.
    """
    tv = parse_views(views)
    pa, pb = _per_class(Path(run_a), tv), _per_class(Path(run_b), tv)
    if pa.get("classes") != pb.get("classes"):
        raise ConfigError(f"{run_a} and {run_b} were tested on different class lists; cannot compare per class")
    group_of = {}
    for g, idx in (pa.get("groups") or {}).items():
        for c in idx:
            group_of[c] = g
    rows = []
    for c, (a, b) in enumerate(zip(pa["accuracy"], pb["accuracy"])):
        if a is None or b is None:
            continue
        name = pa["classes"][c] if c < len(pa.get("classes") or []) else str(c)
        rows.append({"class": name, "index": c, "group": group_of.get(c, ""), "a": a, "b": b, "diff": a - b})
    rows.sort(key=lambda r: (-r["diff"], r["index"]))
    return rows


def group_summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean per-class difference by group (and overall)."""
    out: dict[str, list[float]] = {}
    for r in rows:
        out.setdefault(r["group"] or "all", []).append(r["diff"])
        if r["group"]:
            out.setdefault("all", []).append(r["diff"])
    return {g: sum(v) / len(v) for g, v in out.items() if v and not math.isnan(sum(v))}
