"""The training loop: `train(cfg, out_dir)` -> result dict (see docs/training.md).

One code path for every variant and scale: SGD with momentum, warm-up + half-period cosine
(A.4), BN statistics per device batch (or frozen BN, A.5), task loss + AVS curriculum
(Sec. 3.5), per-epoch validation, atomic checkpoints and exact resumes, DDP under torchrun,
multi-view testing at the end.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from avsf.config import Config, ConfigError, config_from_dict
from avsf.eval import inference as I
from avsf.eval import metrics as M
from avsf.io import atomic_torch_save, atomic_write_json, atomic_write_text
from avsf.model.fuse import to_channels_last
from avsf.train import checkpoint as C
from avsf.train import distributed as D
from avsf.train.losses import avs_enabled, avs_loss, task_loss, with_audio_negative
from avsf.train.schedule import lr_at, set_lr

KILL_ENV = "AVSF_DEBUG_KILL_AT_STEP"
"""Test hook: SIGKILL this process right after global step N (1-based) has been taken."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TooManyFailedClips(RuntimeError):
    """More clips failed to decode than `data.max_failure_share` allows."""


# Indirections so tests can substitute a toy model / loader.
def _build_model(cfg: Config) -> nn.Module:
    from avsf.model import build_model

    return build_model(cfg.model)


def _build_loader(cfg: Config, split: str, mode: str, **kw):
    from avsf.data import build_loader

    return build_loader(cfg, split, mode, **kw)


def _dataset_info(cfg: Config):
    from avsf.data import dataset_info

    return dataset_info(cfg)


def _count_flops(cfg: Config) -> dict[str, float]:
    from avsf.flops import count

    rep = count(cfg.model, input_size=cfg.data.test_crop_size)
    return {"gflops": float(rep.gflops), "params_m": float(rep.params_m)}


# ---------------------------------------------------------------------------------------
def resolve_num_classes(cfg: Config, info) -> None:
    if cfg.model.num_classes <= 0:
        cfg.model.num_classes = int(info.num_classes)
    if getattr(info, "verb_noun", False):
        for attr, key in (("num_verbs", "num_verbs"), ("num_nouns", "num_nouns")):
            n = getattr(info, key, None)
            if n:
                setattr(cfg.model, attr, int(n))


def _json_roundtrip(d: dict) -> dict:
    return json.loads(json.dumps(d, sort_keys=True))


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k}")
    return keys


def cpu_threads(cfg: Config, info: D.DistInfo) -> int:
    """Intra-op threads for this process: `train.num_threads`, or (0) the cores left per process
    once the loader's worker processes have theirs. On 2 cores with 2 loader workers that is 1:
    a tiny run took 16 s with 1 thread and 60 s with torch's default 2 (threads spinning
    against the decoding workers)."""
    if cfg.train.num_threads > 0:
        return cfg.train.num_threads
    if info.device.type == "cuda":
        return torch.get_num_threads()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", info.world))
    workers = cfg.data.num_threads if cfg.data.num_threads > 1 else 0
    return max(1, (os.cpu_count() or 1) // (max(local, 1) * (1 + workers)))


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


def set_train_mode(model: nn.Module, cfg: Config) -> None:
    model.train()
    if cfg.train.frozen_bn:
        for m in bn_modules(model):
            m.eval()


def load_init_weights(model: nn.Module, path: str) -> None:
    """Fine-tuning start point: a run folder, or a checkpoint file. Tensors whose shape
    differs (e.g. a classifier for another class count) keep their fresh initialisation."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoints" / "last.pt"
    if not p.exists():
        raise ConfigError(f"train.init_from: {p} does not exist (give a run folder or a .pt checkpoint)")
    state = C.load_checkpoint(p)
    state = state.get("model", state)
    own = model.state_dict()
    keep = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(keep, strict=False)


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
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _step_generator(cfg: Config, step: int) -> torch.Generator:
    """A generator that depends only on (seed, step): resumes draw the same AVS negatives."""
    return torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + step)


def _batch_size(batch: dict) -> int:
    for k in ("label", "verb", "index", "slow", "audio"):
        if k in batch:
            return int(batch[k].shape[0])
    raise KeyError("cannot tell the batch size: no label/index/slow/audio in the batch")


def _train_correct(out: dict, batch: dict) -> float:
    with torch.no_grad():
        if "verb_logits" in out:
            v = M.topk_correct(out["verb_logits"].float(), batch["verb"], 1)
            n = M.topk_correct(out["noun_logits"].float(), batch["noun"], 1)
            return float((v & n).sum())
        logits, label = out["logits"].float(), batch["label"]
        if label.dim() == 2:
            top = logits.argmax(1, keepdim=True)
            return float((label.gather(1, top) > 0.5).sum())
        return float(M.topk_correct(logits, label, 1).sum())


def _mine(states: list, info: D.DistInfo) -> dict:
    """This process's RNG state from a checkpoint's per-rank list (same world size), else rank 0's."""
    return states[info.rank] if len(states) == info.world else states[0]


def _numbers_only(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, (int, float)) and not (isinstance(v, float) and (v != v or v in (float("inf"), float("-inf")))):
            out[k] = v
    return out


def _log(msg: str, info: D.DistInfo, progress: bool) -> None:
    if progress and info.main:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
def train(
    cfg: Config,
    out_dir: str | Path,
    *,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `cfg` into run folder `out_dir`, resuming it if it holds a checkpoint.

    Returns the result dict (also written to `out_dir/result.json`). A finished run (its
    result.json exists) is returned as is. `on_epoch(epoch, metrics)` runs on rank 0 after each
    epoch's validation and checkpoint; an exception it raises stops the run (no result.json)
    and is re-raised.
    """
    out_dir = Path(out_dir)
    result_path = out_dir / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    info = D.setup()
    threads = torch.get_num_threads()
    torch.set_num_threads(cpu_threads(cfg, info))
    try:
        with determinism(cfg.train.deterministic, info.device):
            return _train(copy.deepcopy(cfg), out_dir, info, on_epoch, progress)
    finally:
        torch.set_num_threads(threads)
        D.teardown(info)


def _prepare_run_folder(cfg: Config, out_dir: Path, info: D.DistInfo) -> None:
    cfg_path = out_dir / "config.json"
    want = _json_roundtrip(cfg.to_dict())
    if cfg_path.exists():
        have = json.loads(cfg_path.read_text())
        diff = [k for k in _diff_keys(have, want) if k != "name"]
        if diff:
            raise ConfigError(
                f"{out_dir} already holds a run with another config (differs in: {', '.join(diff[:8])}"
                f"{' ...' if len(diff) > 8 else ''}); resume it with the same settings or use a new --out"
            )
    elif info.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cfg_path, want)


def _train(cfg: Config, out_dir: Path, info: D.DistInfo, on_epoch, progress: bool) -> dict:
    from tqdm import tqdm

    cfg.validate()  # a config built in code (not by build_config) is checked here too
    if cfg.train.precision == "bf16" and info.device.type != "cuda":
        _log("avsf train: train.precision=bf16 needs CUDA; running fp32 on the CPU", info, progress)

    # Dataset first (rank 0 generates the synthetic data, the others wait).
    if info.main:
        ds = _dataset_info(cfg)
    D.barrier(info)
    if not info.main:
        ds = _dataset_info(cfg)
    resolve_num_classes(cfg, ds)
    _prepare_run_folder(cfg, out_dir, info)
    D.barrier(info)

    device = info.device
    cuda = device.type == "cuda"
    channels_last = cfg.train.channels_last and cuda
    seed_everything(cfg.train.seed)
    model = _build_model(cfg).to(device)
    if channels_last:
        to_channels_last(model, video_only=True)
    if cfg.train.init_from:
        load_init_weights(model, cfg.train.init_from)
    if cfg.train.frozen_bn:
        freeze_bn(model)
    optimizer = torch.optim.SGD(param_groups(model, cfg), lr=cfg.train.warmup_start_lr, momentum=cfg.train.momentum)

    # ---- resume -------------------------------------------------------------------------
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    metrics_path = out_dir / "metrics.jsonl"
    state: dict[str, Any] = {
        "epoch": 0, "batch": 0, "step": 0, "metric_lines": 0, "best_val": None, "best_epoch": 0,
        "train_time_s": 0.0, "failed_clips": 0, "epoch_stats": None, "last_val": {},
    }
    resumed = None
    if ckpt_path.exists():
        resumed = C.load_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        state.update(resumed["state"])
        if info.main:
            rows = C.read_jsonl(metrics_path)[: state["metric_lines"]]
            atomic_write_text(metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        _log(f"avsf train: resuming {out_dir} at epoch {state['epoch'] + 1}, step {state['step']}", info, progress)
    elif info.main and metrics_path.exists():
        metrics_path.unlink()  # lines of a run killed before its first checkpoint
    D.barrier(info)

    seed_everything(cfg.train.seed + 7919 * info.rank)
    net: nn.Module = model
    if info.active:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None, find_unused_parameters=True
        )

    avs_on = avs_enabled(cfg)
    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
    tty = sys.stderr.isatty()

    epochs = cfg.train.epochs
    for epoch in range(state["epoch"], epochs):
        t0 = time.perf_counter()
        skip = state["batch"] if resumed is not None and state["epoch"] == epoch else 0
        if resumed is not None:  # exact resume: every process's generators as they were
            C.set_rng_state(_mine(resumed["epoch_start_rng"] if skip else resumed["rng"], info))
        epoch_start_rng = C.rng_state()
        loader = _build_loader(cfg, "train", "train", shard_id=info.rank, num_shards=info.world,
                               epoch=epoch, with_shifted_audio=avs_on)
        iters = len(loader)
        if cfg.train.max_train_clips > 0:
            per_step = cfg.train.batch_size * info.world
            iters = min(iters, max(1, -(-cfg.train.max_train_clips // per_step)))
        if iters == 0:
            raise RuntimeError("the training loader is empty: the train split has fewer clips than one batch")
        stats = dict(state["epoch_stats"]) if skip and state["epoch_stats"] else {
            "loss": 0.0, "avs": 0.0, "correct": 0.0, "count": 0.0, "seen_batches": 0.0}

        set_train_mode(net, cfg)
        it = iter(loader)
        for _ in range(skip):  # the loader position of a mid-epoch checkpoint
            next(it)
        if skip:
            C.set_rng_state(_mine(resumed["rng"], info))
        bar = tqdm(total=iters, initial=skip, desc=f"epoch {epoch + 1}/{epochs}", unit="it", dynamic_ncols=True,
                   leave=False, disable=not (progress and info.main and tty))
        lr = lr_at(cfg.train, epoch + skip / iters)
        for i in range(skip, iters):
            try:
                batch = next(it)
            except StopIteration:
                break
            step = epoch * iters + i
            lr = lr_at(cfg.train, epoch + i / iters)
            set_lr(optimizer, lr)
            batch = I.to_device(batch, device, channels_last)
            if avs_on:
                batch = with_audio_negative(batch, (epoch + i / iters) / epochs, cfg, _step_generator(cfg, step))
            with I.autocast_context(device, cfg.train.precision):
                out = net(batch)
            loss = task_loss(out, batch, cfg)
            aux = avs_loss(out.get("sync"), cfg) if avs_on else None
            if aux is not None:
                loss = loss + aux
            bad = not torch.isfinite(loss.detach()).all().item()
            if info.active:
                bad = D.any_true(bad, info)
            if bad:
                bar.close()
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} (iteration {i + 1} of "
                    f"{iters}); stopped. The last good checkpoint ({ckpt_path}) is kept; lower train.base_lr "
                    f"or check the data, then run the same command again to resume from it."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = _batch_size(batch)
            stats["loss"] += float(loss.detach()) * n
            stats["avs"] += float(aux.detach()) * n if aux is not None else 0.0
            stats["correct"] += _train_correct(out, batch)
            stats["count"] += n
            stats["seen_batches"] += 1
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{lr:.4g}", refresh=False)
            bar.update(1)
            global_step = step + 1
            if kill_at and global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            every = cfg.train.checkpoint_every_steps
            if every > 0 and global_step % every == 0 and i + 1 < iters:
                mid = dict(state, epoch=epoch, batch=i + 1, step=global_step, epoch_stats=dict(stats),
                           train_time_s=state["train_time_s"] + time.perf_counter() - t0)
                starts, rngs = D.gather_objects(epoch_start_rng, info), D.gather_objects(C.rng_state(), info)
                if info.main:
                    atomic_torch_save(ckpt_path, {
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": mid,
                        "config": cfg.to_dict(), "epoch_start_rng": starts, "rng": rngs,
                    })
                D.barrier(info)
        bar.close()

        # ---- epoch end: broken clips, train metrics, validation ---------------------------
        failed = float(getattr(loader, "failed", 0))
        tot = D.all_reduce_sum([stats["loss"], stats["avs"], stats["correct"], stats["count"], failed], info)
        loss_sum, avs_sum, correct, count, failed = tot
        seen = count + failed
        if seen and failed / seen > cfg.data.max_failure_share:
            raise TooManyFailedClips(
                f"epoch {epoch + 1}: {int(failed)} of {int(seen)} training clips could not be decoded "
                f"({failed / seen:.1%} > data.max_failure_share={cfg.data.max_failure_share}); "
                f"check the dataset (avsf data check) or raise data.max_failure_share"
            )
        state["failed_clips"] += int(failed)
        train_row = {
            "epoch": epoch + 1, "step": (epoch + 1) * iters, "split": "train",
            "loss": loss_sum / max(count, 1), "top1": correct / max(count, 1),
            "train_error": 1.0 - correct / max(count, 1), "lr": lr, "clips": int(count),
            "failed_clips": int(failed),
        }
        if avs_on:
            train_row["avs_loss"] = avs_sum / max(count, 1)
        val_row = None
        if (epoch + 1) % max(cfg.train.eval_every_epochs, 1) == 0 or epoch + 1 == epochs:
            vm, _, vfailed = I.evaluate_split(model, cfg, "val", "val", info, progress=progress and tty,
                                              desc=f"val {epoch + 1}/{epochs}")
            state["failed_clips"] += vfailed
            val_row = {"epoch": epoch + 1, "step": (epoch + 1) * iters, "split": "val", **vm}
            state["last_val"] = vm
            if state["best_val"] is None or vm["top1"] > state["best_val"]:
                state["best_val"], state["best_epoch"] = vm["top1"], epoch + 1
        elapsed = time.perf_counter() - t0
        state["train_time_s"] += elapsed
        train_row["time_s"] = elapsed
        if info.main:
            C.append_jsonl(metrics_path, train_row)
            if val_row is not None:
                val_row["time_s"] = elapsed
                C.append_jsonl(metrics_path, val_row)
        state.update(epoch=epoch + 1, batch=0, step=(epoch + 1) * iters, epoch_stats=None,
                     metric_lines=state["metric_lines"] + 1 + (val_row is not None))
        resumed = None
        rngs = D.gather_objects(C.rng_state(), info)
        ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": dict(state),
                "config": cfg.to_dict(), "rng": rngs}
        if info.main:
            atomic_torch_save(ckpt_path, ckpt)
        D.barrier(info)
        msg = (f"epoch {epoch + 1}/{epochs}: loss {train_row['loss']:.4f}, train error {train_row['train_error']:.3f}"
               + (f", val top-1 {val_row['top1']:.3f}" if val_row else "") + f" ({elapsed:.1f} s)")
        _log(msg, info, progress)

        # ---- the caller's hook (pruning): rank 0 decides, every rank stops --------------
        stop_exc = None
        if on_epoch is not None and info.main:
            try:
                on_epoch(epoch + 1, {**train_row, **({f"val_{k}": v for k, v in val_row.items()} if val_row else {}),
                                     "val_top1": (val_row or {}).get("top1", float("nan"))})
            except BaseException as e:  # noqa: BLE001 - re-raised below
                stop_exc = e
        if D.broadcast_object(stop_exc is not None, info):
            if stop_exc is not None:
                raise stop_exc
            raise RuntimeError("stopped by rank 0's on_epoch hook")

    # ---- multi-view test, result ----------------------------------------------------------
    t0 = time.perf_counter()
    tm, per_class, tfailed = I.evaluate_split(model, cfg, cfg.eval.split, "test", info, progress=progress and tty,
                                              desc=f"test {cfg.eval.temporal_views}x{cfg.eval.spatial_views}")
    state["failed_clips"] += tfailed
    result: dict[str, Any] = dict(tm)
    result.update({
        "val_top1": state["last_val"].get("top1", float("nan")),
        "best_val_top1": state["best_val"] if state["best_val"] is not None else float("nan"),
        "best_epoch": state["best_epoch"],
        "epochs": epochs,
        "train_time_s": state["train_time_s"],
        "test_time_s": time.perf_counter() - t0,
        "failed_clips": state["failed_clips"],
        "num_classes": cfg.model.num_classes,
    })
    try:
        result.update(_count_flops(cfg))
    except Exception as e:  # noqa: BLE001 - a FLOP counter problem must not lose a trained run
        _log(f"avsf train: could not count FLOPs ({e}); gflops left out of result.json", info, progress)
        result["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    result = _numbers_only(result)
    if info.main:
        atomic_write_json(out_dir / "per_class.json", I.nan_to_none(per_class))
        atomic_write_json(out_dir / "result.json", result)
        _log(f"avsf train: done; test top-1 {result.get('top1', float('nan')):.4f} -> {out_dir / 'result.json'}", info, progress)
    D.barrier(info)
    return result


def load_run_config(run_dir: str | Path) -> Config:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run folder (no config.json)")
    return config_from_dict(json.loads(path.read_text()))
