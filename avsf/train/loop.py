"""The training loop: `train(cfg, out_dir)` -> result dict (see docs/training.md).

One code path for every variant and scale: SGD with momentum, warm-up + half-period cosine
(A.4), BN statistics per device batch (or frozen BN, A.5), task loss + AVS curriculum
(Sec. 3.5), per-epoch validation, atomic checkpoints and exact resumes, DDP under torchrun,
multi-view testing at the end. Every file of the run folder goes through avsf.run.RunDir; the
model, loaders and dataset description come from `factories` (avsf.factories.Factories).
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from avsf import distributed as D
from avsf.config import Config, ConfigError
from avsf.data import TooManyFailedClips
from avsf.eval import inference as I
from avsf.factories import Factories
from avsf.provenance import provenance
from avsf.run import RunDir, RunFolderError, RunLocked, numbers_only
from avsf.train import checkpoint as C
from avsf.train.checks import check_against_dataset, check_init_source, resolve_num_classes
from avsf.train.convergence import plateaued
from avsf.train.epoch import EpochClock, EpochSums
from avsf.train.objectives import auxiliaries_for, objective_for
from avsf.train.precise_bn import recompute as recompute_bn
from avsf.train.schedule import lr_at, set_lr
from avsf.train.setup import (
    apply_freezing,
    cpu_threads,
    determinism,
    load_init,
    param_groups,
    seed_everything,
    set_train_mode,
)

__all__ = ["train", "TrainingDiverged", "TooManyFailedClips", "resolve_num_classes"]


FALLBACK_KEYS = ("cpu_fallback_clips", "pyav_fallback_clips")
"""Training clips a loader decoded on the CPU (DALI) or with PyAV because the GPU decoder could
not take them (too small for NVDEC, a codec it lacks): counted per epoch and per run."""

SYNC_EVERY = 20
"""Steps between the host's reads of the running loss (progress bar, divergence check)."""


class TrainingDiverged(RuntimeError):
    """The loss or the weights blew up; the last good checkpoint is kept."""


def _log(msg: str, info: D.DistInfo, progress: bool) -> None:
    if progress and info.main:
        print(msg, file=sys.stderr, flush=True)


def _step_generator(cfg: Config, step: int) -> torch.Generator:
    """A generator that depends only on (seed, step): every variant of a study, and a resume,
    draw the same AVS negatives."""
    return torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + step)


# ---------------------------------------------------------------------------------------
def train(
    cfg: Config,
    out_dir: str | Path,
    *,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: bool = True,
    factories: Factories | None = None,
    resume_with: list[str] | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train `cfg` into run folder `out_dir`, resuming it if it holds a checkpoint.

    Returns the result dict (also written to `out_dir/result.json`). A finished run of the same
    config is returned as is; a folder holding a run of another config is refused
    (avsf.run.RunConfigMismatch) before anything else. `on_epoch(epoch, metrics)` runs on rank 0
    after each epoch's validation and checkpoint; an exception it raises stops the run (no
    result.json) and is re-raised. `factories` builds the model, loaders and dataset description.
    `resume_with` ("train.base_lr=0.01", ... or a dict): resume the unfinished run from its last
    checkpoint with these optimisation keys changed (`avsf.run.RESUME_KEYS`), recorded in config.json.
    """
    cfg.validate()  # a config built in code (not by build_config) is checked here too
    run = RunDir(out_dir)
    cfg = run.config_for(cfg)
    changes = _changes(resume_with)
    if changes:
        if run.is_done():
            raise RunFolderError(f"{run.path} is finished (result.json); --resume-with applies to an unfinished run")
        if not run.has_checkpoint():
            raise RunFolderError(f"{run.path} holds no checkpoint to resume; it accepts a changed config as it is: "
                                 f"run it again with --set KEY=VALUE instead of --resume-with")
    else:
        done = run.read_result()
        if done is not None:
            return done
    info = D.setup()
    threads = torch.get_num_threads()
    try:
        with _exclusive(run, info):
            if changes:
                cfg = _record_resume_with(run, changes, info)
            torch.set_num_threads(cpu_threads(cfg, info))
            with determinism(cfg.train.deterministic, info.device):
                return _Trainer(copy.deepcopy(cfg), run, info, factories or Factories(), on_epoch, progress).run()
    finally:
        torch.set_num_threads(threads)
        D.teardown(info)


def _changes(resume_with: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    if not resume_with:
        return {}
    if isinstance(resume_with, dict):
        return dict(resume_with)
    from avsf.config import parse_override

    return dict(parse_override(text) for text in resume_with)


def _record_resume_with(run: RunDir, changes: dict[str, Any], info: D.DistInfo) -> Config:
    """Rank 0 records the changes in config.json (with the checkpoint's epoch and step); every
    rank then runs the changed config."""
    if info.main:
        state = run.load_checkpoint()["state"]
        run.record_resume_with(changes, epoch=int(state["epoch"]), step=int(state["step"]))
    D.barrier(info)
    return run.load_config()


@contextmanager
def _exclusive(run: RunDir, info: D.DistInfo) -> Iterator[None]:
    """Rank 0 holds the folder's lock for the whole run; every rank stops when it cannot."""
    with ExitStack() as stack:
        err: RunFolderError | None = None
        if info.main:
            try:
                stack.enter_context(run.lock())
            except RunFolderError as e:
                err = e
        said = D.broadcast_object(str(err) if err else None, info)
        if err is not None:
            raise err
        if said:
            raise RunLocked(said)
        yield


class _Board:
    """train.tensorboard: the per-epoch scalars of metrics.jsonl's rows, through
    torch.utils.tensorboard, into the run folder's tb/. Accuracies stay fractions, as in the rows."""

    TRAIN = ("loss", "lr", "top1", "train_error", "clips_per_s", "data_wait_share", "peak_mem_mb")

    def __init__(self, folder: Path, start_epoch: int):
        self.folder, self.start = folder, start_epoch

    def __enter__(self) -> _Board:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a resumed run drops the scalars a killed run wrote after its checkpoint
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=self.start + 1 if self.start else None)
        return self

    def write(self, epoch: int, train_row: dict[str, Any], val_row: dict[str, Any] | None) -> None:
        for k, v in train_row.items():
            if k in self.TRAIN or k.endswith("_loss"):  # auxiliary losses: avs_loss, ...
                self.writer.add_scalar(f"train/{k}", v, epoch)
        for k, v in (val_row or {}).items():
            if k not in ("epoch", "step", "split", "time_s") and isinstance(v, (int, float)):
                self.writer.add_scalar(f"val/{k}", v, epoch)
        self.writer.flush()

    def __exit__(self, *exc: Any) -> None:
        self.writer.close()


class _Trainer:
    """One run: `run()` = prepare, build, epochs (train, validate, record), test."""

    def __init__(self, cfg: Config, run: RunDir, info: D.DistInfo, factories: Factories,
                 on_epoch: Callable[[int, dict], None] | None, progress: bool):
        self.cfg, self.run_dir, self.info, self.f = cfg, run, info, factories
        self.on_epoch, self.progress = on_epoch, progress
        self.tty = sys.stderr.isatty()
        self.device = info.device
        self.channels_last = cfg.train.channels_last and self.device.type == "cuda"
        self.objective = objective_for(cfg)
        self.aux = auxiliaries_for(cfg)
        self.state: dict[str, Any] = {
            "epoch": 0, "batch": 0, "step": 0, "metric_lines": 0, "best_val": None, "best_epoch": 0,
            "train_time_s": 0.0, "failed_clips": 0, "epoch_stats": None, "last_val": {},
            "val_history": [], "converged": False, "stopped_early": False,
        }
        self.resumed: dict[str, Any] | None = None
        self.good: tuple[int, int] | None = None  # (epoch, step) of the checkpoint on disk
        self.board: _Board | None = None

    def log(self, msg: str) -> None:
        _log(msg, self.info, self.progress)

    def run(self) -> dict[str, Any]:
        self.prepare()
        self.build()
        with ExitStack() as stack:
            if self.cfg.train.tensorboard and self.info.main:
                self.board = stack.enter_context(_Board(self.run_dir.tensorboard_dir, self.state["epoch"]))
            for epoch in range(self.state["epoch"], self.cfg.train.epochs):
                if self.state["stopped_early"]:  # decided before a kill; the checkpoint remembers
                    break
                train_row, iters = self.train_epoch(epoch)
                val_row = self.validate(epoch, iters)
                self.end_epoch(epoch, iters, train_row, val_row)
        return self.finish()

    # -- before the first step --------------------------------------------------------
    def prepare(self) -> None:
        """Dataset, dataset checks, then (rank 0) the folder: stale temporaries, config.json.
        Nothing is written before every check has passed."""
        cfg, info, run = self.cfg, self.info, self.run_dir
        if cfg.train.precision == "bf16" and self.device.type != "cuda":
            self.log("avsf train: train.precision=bf16 needs CUDA; running fp32 on the CPU")
        if cfg.train.tensorboard:
            try:
                import torch.utils.tensorboard  # noqa: F401
            except ImportError:
                raise ConfigError("train.tensorboard: true needs the tensorboard package "
                                  "(pip install 'avsf[tracking]'), or set it to false") from None
        if info.main:  # rank 0 generates the synthetic data, the others wait
            self.dataset = self.f.dataset_info(cfg)
        D.barrier(info)
        if not info.main:
            self.dataset = self.f.dataset_info(cfg)
        resolve_num_classes(cfg, self.dataset)
        check_against_dataset(cfg, self.dataset, world=info.world, labels=self.objective.reads_labels)
        if cfg.train.init_from and not run.has_checkpoint():
            check_init_source(cfg)
        run.config_for(cfg)  # the class count resolved: compared again
        if info.main:
            for p in run.clean_stale_tmp():
                self.log(f"avsf train: removed {p.name}, left by a write that was killed")
            if not run.has_checkpoint():
                run.keep_metrics(0)  # rows of a run killed before its first checkpoint
                run.write_config(cfg)
        D.barrier(info)

    def build(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.train.seed)
        model = self.f.model(cfg).to(self.device)
        if self.channels_last:
            from avsf.model.fuse import to_channels_last

            to_channels_last(model, video_only=True)
        if cfg.train.init_from and not self.run_dir.has_checkpoint():
            report = load_init(model, cfg)
            if self.info.main:  # said even without progress output: what the run starts from
                print(f"avsf train: train.init_from: {report}", file=sys.stderr, flush=True)
        apply_freezing(model, cfg)
        if cfg.train.compile:  # in place: parameter names, checkpoints and the optimizer's groups unchanged
            from avsf.model import compile_model

            compile_model(model)
        self.model = model
        self.optimizer = torch.optim.SGD(param_groups(model, cfg), lr=cfg.train.warmup_start_lr,
                                         momentum=cfg.train.momentum)
        if self.run_dir.has_checkpoint():
            self.resume()
        seed_everything(cfg.train.seed + 7919 * self.info.rank)
        self.net: nn.Module = model
        if self.info.active:
            cuda = self.device.type == "cuda"
            self.net = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if cuda else None, find_unused_parameters=True)

    def resume(self) -> None:
        ckpt = self.run_dir.load_checkpoint(map_location=self.device)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.state.update(ckpt["state"])
        self.resumed = ckpt
        self.good = (self.state["epoch"] + (1 if self.state["batch"] else 0), self.state["step"])
        if self.info.main:
            self.run_dir.keep_metrics(self.state["metric_lines"])
        D.barrier(self.info)
        self.log(f"avsf train: resuming {self.run_dir.path} at epoch {self.state['epoch'] + 1}, "
                 f"step {self.state['step']}")

    def _mine(self, states: list) -> dict:
        """This process's RNG state from a checkpoint's per-rank list (same world size), else rank 0's."""
        return states[self.info.rank] if len(states) == self.info.world else states[0]

    # -- one epoch ----------------------------------------------------------------------
    def _loader(self, epoch: int) -> tuple[Any, int]:
        cfg, info = self.cfg, self.info
        loader = self.f.loader(cfg, "train", "train", shard_id=info.rank, num_shards=info.world, epoch=epoch,
                               with_shifted_audio=any(a.needs_shifted_audio for a in self.aux))
        iters = len(loader)
        if cfg.train.max_train_clips > 0:
            per_step = cfg.train.batch_size * info.world
            iters = min(iters, max(1, -(-cfg.train.max_train_clips // per_step)))
        if iters == 0:
            raise RuntimeError("the training loader is empty: the train split has fewer clips than one batch")
        return loader, iters

    def train_epoch(self, epoch: int) -> tuple[dict[str, Any], int]:
        """The epoch's steps (from a mid-epoch checkpoint's position when resuming) -> train row."""
        from tqdm import tqdm

        self.t_epoch = time.perf_counter()
        resumed = self.resumed
        skip = self.state["batch"] if resumed is not None and self.state["epoch"] == epoch else 0
        if resumed is not None:  # exact resume: every process's generators as they were
            C.set_rng_state(self._mine(resumed["epoch_start_rng"] if skip else resumed["rng"]))
        self.epoch_start_rng = C.rng_state()
        loader, iters = self._loader(epoch)
        sums = EpochSums(self.device, self.state["epoch_stats"] if skip else None, aux=tuple(a.name for a in self.aux))
        set_train_mode(self.net, self.cfg)
        it = iter(loader.iter_from(skip))  # from a mid-epoch checkpoint's position, skipped batches undecoded
        if skip:
            C.set_rng_state(self._mine(resumed["rng"]))
        epochs = self.cfg.train.epochs
        bar = tqdm(total=iters, initial=skip, desc=f"epoch {epoch + 1}/{epochs}", unit="it", dynamic_ncols=True,
                   leave=False, disable=not (self.progress and self.info.main and self.tty))
        clock, lr, every = EpochClock(self.device), lr_at(self.cfg.train, epoch + skip / iters), 0
        for i in range(skip, iters):
            batch = clock.next_batch(it)
            if batch is None:
                break
            lr = self.step(batch, epoch, i, iters, sums)
            bar.update(1)
            global_step, every = epoch * iters + i + 1, self.cfg.train.checkpoint_every_steps
            if (i + 1) % SYNC_EVERY == 0:  # the host looks at the running loss only now and then
                bar.set_postfix(loss=f"{self.check(sums, iters)['last_loss']:.3f}", lr=f"{lr:.4g}", refresh=False)
            if every > 0 and global_step % every == 0 and i + 1 < iters:
                stats = self.check(sums, iters)
                self.save(dict(self.state, epoch=epoch, batch=i + 1, step=global_step, epoch_stats=stats,
                               train_time_s=self.state["train_time_s"] + time.perf_counter() - self.t_epoch),
                          mid_epoch=True)
        bar.close()
        stats = self.check(sums, iters)
        row = self.train_row(epoch, iters, loader, stats, lr)
        row.update(clock.row(row["clips"] - self._clips_before(skip, stats)))
        return row, iters

    def _clips_before(self, skip: int, stats: dict) -> float:
        """Clips of this epoch trained before a mid-epoch resume (not this session's throughput)."""
        if not skip or not self.state["epoch_stats"]:
            return 0.0
        return self.state["epoch_stats"]["count"] * self.info.world

    def step(self, batch: dict, epoch: int, i: int, iters: int, sums: EpochSums) -> float:
        """One optimisation step, added to `sums` on the device; returns the learning rate."""
        cfg, epochs = self.cfg, self.cfg.train.epochs
        step = epoch * iters + i
        lr = lr_at(cfg.train, epoch + i / iters)
        set_lr(self.optimizer, lr)
        batch = I.to_device(batch, self.device, self.channels_last)
        progress = (epoch + i / iters) / epochs
        for a in self.aux:
            if a.prepare is not None:
                batch = a.prepare(batch, progress, cfg, _step_generator(cfg, step))
        with I.autocast_context(self.device, self.cfg.train.precision):
            out = self.net(batch)
        loss = self.objective.loss(out, batch, cfg)
        aux: dict[str, torch.Tensor] = {}
        for a in self.aux:
            extra = a.loss(out, batch, cfg)
            if extra is not None:
                aux[a.name] = extra
                loss = loss + extra
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        sums.add(step, loss, aux, self.objective.correct(out, batch), self.objective.size(batch))
        return lr

    def check(self, sums: EpochSums, iters: int) -> dict[str, Any]:
        """Read the sums (a device sync); a step whose loss was not finite or blew up on any
        process stops the run (TrainingDiverged), naming the first such step."""
        stats = sums.read()
        bad = [(s["first_bad"], s["bad_loss"]) for s in D.gather_objects(stats, self.info) if s["first_bad"] >= 0]
        if bad:
            step, loss = min(bad)
            raise self.diverged(f"the loss became {loss:g} at epoch {step // iters + 1}, step {step + 1} "
                                f"(iteration {step % iters + 1} of {iters})")
        return stats

    def diverged(self, what: str) -> TrainingDiverged:
        """The error, with advice that works as written: resume the last good checkpoint with a
        lower rate (`--resume-with`), or, when there is none, rerun the folder with one."""
        lower = f"train.base_lr={self.cfg.train.base_lr / 10:g}"
        path = self.run_dir.path
        if self.good is None:
            advice = (f"no checkpoint was kept, so {path} holds no progress and accepts a changed config: run the "
                      f"same command with a lower learning rate, e.g. --set {lower}")
        else:
            advice = (f"the last good checkpoint (epoch {self.good[0]}, step {self.good[1]}) is kept in {path}; "
                      f"resume from it with a lower learning rate: avsf train --out {path} --resume-with {lower}")
        return TrainingDiverged(f"{what}; stopped. {advice}")

    def train_row(self, epoch: int, iters: int, loader: Any, stats: dict, lr: float) -> dict[str, Any]:
        """The epoch's metrics.jsonl train row (all processes' clips); too many broken clips stop the run."""
        cfg = self.cfg
        failed = float(getattr(loader, "failed", 0))
        # clips the GPU decoder could not take, decoded on the CPU instead (avsf.data.decode_route)
        moved = [float(getattr(loader, k, 0)) for k in FALLBACK_KEYS]
        names = [a.name for a in self.aux]
        loss_sum, correct, count, failed, *rest = D.all_reduce_sum(
            [stats["loss"], stats["correct"], stats["count"], failed, *moved, *(stats[n] for n in names)], self.info)
        moved, aux_sums = rest[:len(FALLBACK_KEYS)], rest[len(FALLBACK_KEYS):]
        seen = count + failed
        if seen and failed / seen > cfg.data.max_failure_share:
            raise TooManyFailedClips(
                f"epoch {epoch + 1}: {int(failed)} of {int(seen)} training clips could not be decoded "
                f"({failed / seen:.1%} > data.max_failure_share={cfg.data.max_failure_share}); `avsf data preview` "
                f"shows what the loader reads, `avsf data prepare` re-encodes the sources; or raise "
                f"data.max_failure_share")
        self.state["failed_clips"] += int(failed)
        row = {
            "epoch": epoch + 1, "step": (epoch + 1) * iters, "split": "train",
            "loss": loss_sum / max(count, 1), "top1": correct / max(count, 1),
            "train_error": 1.0 - correct / max(count, 1), "lr": lr, "clips": int(count),
            "failed_clips": int(failed),
        }
        for key, n in zip(FALLBACK_KEYS, moved):
            row[key] = int(n)
            self.state[key] = self.state.get(key, 0) + int(n)
        for name, total in zip(names, aux_sums):
            row[f"{name}_loss"] = total / max(count, 1)
        return row

    # -- after an epoch -----------------------------------------------------------------
    def _score(self, split: str, mode: str, desc: str, views: tuple[int, int] | None = None) -> I.SplitScores:
        cfg = self.cfg
        if views is not None:
            cfg = copy.deepcopy(cfg)
            cfg.eval.temporal_views, cfg.eval.spatial_views = views
        loader = self.f.loader(cfg, split, mode, shard_id=self.info.rank, num_shards=self.info.world)
        return self.objective.evaluate(self.model, loader, self.info, cfg, dataset=self.dataset, split=split,
                                       precision=self.cfg.train.precision, channels_last=self.channels_last,
                                       spatial_views=cfg.eval.spatial_views, video_pool=cfg.eval.video_pool,
                                       progress=self.progress and self.tty, desc=desc)

    def validate(self, epoch: int, iters: int) -> dict[str, Any] | None:
        """Single-view validation (the loader's test mode, 1x1) when it is due, else None."""
        epochs = self.cfg.train.epochs
        if (epoch + 1) % max(self.cfg.train.eval_every_epochs, 1) and epoch + 1 != epochs:
            return None
        bn_s = self.precise_bn(epoch) if self.cfg.train.precise_bn_batches > 0 else None
        s = self._score("val", "test", f"val {epoch + 1}/{epochs}", views=(1, 1))
        st, t = self.state, self.cfg.train
        st["failed_clips"] += s.failed
        st["last_val"] = s.metrics
        value = float(s.metrics[self.objective.metric])
        if st["best_val"] is None or value > st["best_val"]:
            st["best_val"], st["best_epoch"] = value, epoch + 1
        st["val_history"] = [*st["val_history"], value]
        st["converged"] = plateaued(st["val_history"], t.plateau_window, t.plateau_tol)
        st["stopped_early"] = t.early_stop and st["converged"] and t.min_epochs <= epoch + 1 < t.epochs
        return {"epoch": epoch + 1, "step": (epoch + 1) * iters, "split": "val", **s.metrics,
                **({"precise_bn_s": bn_s} if bn_s is not None else {})}

    def precise_bn(self, epoch: int) -> float:
        """Precise BN statistics for this evaluation (avsf.train.precise_bn) over this epoch's
        training clips; the seconds it took. The final test reads the last evaluation's."""
        t0, cfg = time.perf_counter(), self.cfg
        loader = self.f.loader(cfg, "train", "train", shard_id=self.info.rank, num_shards=self.info.world, epoch=epoch)
        set_train_mode(self.model, cfg)
        recompute_bn(self.model, loader, min(cfg.train.precise_bn_batches, len(loader)), info=self.info,
                     precision=cfg.train.precision, channels_last=self.channels_last,
                     seed=cfg.train.seed * 1_000_003 + 500_009 + epoch)
        return time.perf_counter() - t0

    def end_epoch(self, epoch: int, iters: int, train_row: dict, val_row: dict | None) -> None:
        """Metrics rows, the epoch's checkpoint, the progress line, then the caller's hook."""
        elapsed = time.perf_counter() - self.t_epoch
        self.state["train_time_s"] += elapsed
        train_row["time_s"] = elapsed
        if self.info.main:
            self.run_dir.append_metrics(train_row)
            if val_row is not None:
                val_row["time_s"] = elapsed
                self.run_dir.append_metrics(val_row)
        self.state.update(epoch=epoch + 1, batch=0, step=(epoch + 1) * iters, epoch_stats=None,
                          metric_lines=self.state["metric_lines"] + 1 + (val_row is not None))
        self.resumed = None
        self.save(dict(self.state), mid_epoch=False)
        if self.board is not None:
            self.board.write(epoch + 1, train_row, val_row)
        self.log(f"epoch {epoch + 1}/{self.cfg.train.epochs}: loss {train_row['loss']:.4f}, train error "
                 f"{100 * train_row['train_error']:.1f}%"
                 + (f", val {self.objective.metric} {100 * val_row[self.objective.metric]:.1f}%" if val_row else "")
                 + f" ({elapsed:.1f} s)"
                 + (" - converged, stopping early (train.early_stop)" if self.state["stopped_early"] else ""))
        self.call_hook(epoch, train_row, val_row)

    def save(self, state: dict[str, Any], *, mid_epoch: bool) -> None:
        """Write the checkpoint, unless the weights blew up: the file on disk stays the last good one."""
        if not C.weights_ok(self.model):
            raise self.diverged(f"the weights reached |w| = {C.largest_weight(self.model):g} (>= {C.BLOW_UP:g}) "
                                f"by epoch {state['epoch'] + (1 if mid_epoch else 0)}, step {state['step']}")
        rngs = D.gather_objects(C.rng_state(), self.info)
        ckpt = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "state": state,
                "config": self.cfg.to_dict(), "rng": rngs}
        if mid_epoch:
            ckpt["epoch_start_rng"] = D.gather_objects(self.epoch_start_rng, self.info)
        if self.info.main:
            self.run_dir.save_checkpoint(ckpt)
        D.barrier(self.info)
        self.good = (state["epoch"] + (1 if mid_epoch else 0), state["step"])

    def call_hook(self, epoch: int, train_row: dict, val_row: dict | None) -> None:
        """The caller's hook (pruning): rank 0 decides, every rank stops."""
        stop_exc = None
        if self.on_epoch is not None and self.info.main:
            val = {f"val_{k}": v for k, v in val_row.items()} if val_row else {}
            try:
                self.on_epoch(epoch + 1, {**train_row, **val, "val_top1": (val_row or {}).get("top1", float("nan"))})
            except BaseException as e:  # noqa: BLE001 - re-raised below
                stop_exc = e
        if D.broadcast_object(stop_exc is not None, self.info):
            if stop_exc is not None:
                raise stop_exc
            raise RuntimeError("stopped by rank 0's on_epoch hook")

    # -- the end ------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """Multi-view test of the final weights; per_class.json, predictions.json, then result.json."""
        cfg, state = self.cfg, self.state
        t0 = time.perf_counter()
        s = self._score(cfg.eval.split, "test", f"test {cfg.eval.temporal_views}x{cfg.eval.spatial_views}")
        state["failed_clips"] += s.failed
        result: dict[str, Any] = dict(s.metrics)
        result.update({
            "val_top1": state["last_val"].get("top1", float("nan")),
            "best_val_top1": state["best_val"] if state["best_val"] is not None else float("nan"),
            "best_epoch": state["best_epoch"],
            "epochs": cfg.train.epochs,
            "stopped_epoch": state["epoch"],
            "converged": int(state["converged"]),
            "train_time_s": state["train_time_s"],
            "test_time_s": time.perf_counter() - t0,
            "failed_clips": state["failed_clips"],
            **{k: state.get(k, 0) for k in FALLBACK_KEYS},
            "num_classes": cfg.model.num_classes,
        })
        try:
            result.update(self.f.count_flops(cfg))
        except Exception as e:  # noqa: BLE001 - a FLOP counter problem must not lose a trained run
            self.log(f"avsf train: could not count FLOPs ({e}); gflops left out of result.json")
            result["params_m"] = sum(p.numel() for p in self.model.parameters()) / 1e6
        result = numbers_only(result)
        result["provenance"] = provenance()
        if self.info.main:
            if s.per_class:  # a label-free objective scores no classes
                self.run_dir.write_per_class(s.per_class)
            if s.predictions:
                self.run_dir.write_predictions(s.predictions)
            self.run_dir.write_result(result)
            metric = self.objective.metric
            self.log(f"avsf train: done; test {metric} {100 * result.get(metric, float('nan')):.1f}% -> "
                     f"{self.run_dir.result_path}")
        D.barrier(self.info)
        return result
