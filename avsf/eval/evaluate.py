"""`evaluate(run_dir, views)`: multi-view testing of a run's final model, and per-class
comparisons between two runs (which classes gain from audio, Fig. A.1 / A.3)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


from avsf.config import ConfigError


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


def evaluate(run_dir: str | Path, views: str | tuple[int, int] | None = None, *, progress: bool = True,
             fuse: bool = True) -> dict[str, Any]:
    """Test the run's final model (checkpoints/last.pt) on `cfg.eval.split` with `views`
    (default: the run's `eval.temporal_views x eval.spatial_views`).

    `fuse`: fold BatchNorm into the convs (avsf.model.fuse; on the CPU also channels-last conv
    weights) before testing: same scores to float rounding, a faster forward on the CPU
    (docs/performance.md, the `avsf` vs `avsf-plain` eval rows).

    Softmax scores are averaged over views (sigmoid + temporal max-pool for multi-label).
    Writes `eval_<T>x<S>.json` (metrics) and `per_class_<T>x<S>.json` into the run folder and
    returns the metrics (numbers only).
    """
    from avsf.train import distributed as D
    from avsf.io import atomic_write_json
    from avsf.train.checkpoint import load_checkpoint
    from avsf.train.loop import _build_model, _numbers_only, load_run_config
    from avsf.eval.inference import evaluate_split, nan_to_none
    from avsf.model.fuse import fuse_for_inference, to_channels_last

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    tv = parse_views(views)
    if tv:
        cfg.eval.temporal_views, cfg.eval.spatial_views = tv
    ckpt = run_dir / "checkpoints" / "last.pt"
    if not ckpt.exists():
        raise ConfigError(f"{run_dir} has no checkpoint to evaluate (checkpoints/last.pt); train it first")
    info = D.setup()
    try:
        state = load_checkpoint(ckpt, map_location=info.device)
        if state.get("state", {}).get("epoch", cfg.train.epochs) < cfg.train.epochs and info.main:
            print(f"avsf eval: note: {run_dir} is not finished (epoch {state['state']['epoch']} of "
                  f"{cfg.train.epochs}); evaluating its last checkpoint", flush=True)
        model = _build_model(cfg).to(info.device)
        model.load_state_dict(state["model"])
        if fuse:
            model = fuse_for_inference(model)
            if info.device.type == "cpu":  # on CUDA, cfg.train.channels_last sets the layout
                to_channels_last(model)
        metrics, per_class, failed = evaluate_split(model, cfg, cfg.eval.split, "test", info, progress=progress,
                                                    desc=f"test {cfg.eval.temporal_views}x{cfg.eval.spatial_views}")
        metrics = _numbers_only({**metrics, "failed_clips": failed, "temporal_views": cfg.eval.temporal_views,
                                 "spatial_views": cfg.eval.spatial_views})
        if info.main:
            tag = f"{cfg.eval.temporal_views}x{cfg.eval.spatial_views}"
            atomic_write_json(run_dir / f"eval_{tag}.json", metrics)
            atomic_write_json(run_dir / f"per_class_{tag}.json", nan_to_none(per_class))
        return metrics
    finally:
        D.teardown(info)


def _per_class(run_dir: Path, views: tuple[int, int] | None) -> dict:
    name = f"per_class_{views[0]}x{views[1]}.json" if views else "per_class.json"
    path = Path(run_dir) / name
    if not path.exists():
        raise ConfigError(f"{path} does not exist (finish the run, or evaluate it with --views first)")
    return json.loads(path.read_text())


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
