"""A toy model, loader and dataset description that follow the contracts of
docs/architecture.md, so the training loop can be tested in milliseconds on its own."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

NUM_CLASSES = 4
N_CLIPS = {"train": 48, "val": 16, "test": 16}


def info(cfg=None):
    return SimpleNamespace(
        num_classes=NUM_CLASSES, class_names=[f"c{i}" for i in range(NUM_CLASSES)],
        groups={"visual": [0, 1], "audio": [2, 3]}, multi_label=False, verb_noun=False,
        split_sizes=dict(N_CLIPS),
    )


class ToyModel(nn.Module):
    """Tiny AV classifier: pooled video + pooled audio -> BN -> dropout -> fc; AVS scores."""

    def __init__(self, num_classes, nan_after=None, rot_head=False):
        super().__init__()
        self.v = nn.Linear(3, 8)
        self.a = nn.Linear(1, 8)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(16, num_classes)
        self.rot_head = nn.Linear(48, 4) if rot_head else None  # ROT: reads the first frame's pixels
        self.calls = 0
        self.nan_after = nan_after

    def forward(self, batch):
        v = self.v(batch["slow"].mean(dim=(2, 3, 4)))
        a = self.a(batch["audio"].mean(dim=(2, 3)))
        h = self.drop(torch.relu(self.bn(torch.cat([v, a], 1))))
        out = {"logits": self.head(h)}
        if self.rot_head is not None:
            out["rot_logits"] = self.rot_head(batch["slow"][:, :, 0].flatten(1))
        if self.training:
            self.calls += 1
            if self.nan_after is not None and self.calls > self.nan_after:
                out["logits"] = out["logits"] * float("nan")
        if self.training and "audio_negative" in batch:
            an = self.a(batch["audio_negative"].mean(dim=(2, 3)))
            vn, ap, ann = [nn.functional.normalize(x, dim=1) for x in (v, a, an)]
            out["sync"] = {"res3": torch.stack([-(vn - ap).pow(2).sum(1), -(vn - ann).pow(2).sum(1)], 1)}
        return out


class ToyLoader:
    """`labels=False`: batches without `label` (a label-free dataset)."""

    def __init__(self, split, mode, batch_size, shard_id=0, num_shards=1, epoch=0, with_shifted_audio=False,
                 fail_every=0, views=1, labels=True):
        assert mode in ("train", "test"), mode
        self.split, self.mode, self.bs = split, mode, batch_size
        self.shard_id, self.num_shards, self.epoch = shard_id, num_shards, epoch
        self.shifted = with_shifted_audio
        self.failed = 0
        self.fail_every = fail_every
        n = N_CLIPS[split]
        g = torch.Generator().manual_seed(1234 + {"train": 0, "val": 1, "test": 2}[split])
        self.label = torch.arange(n) % NUM_CLASSES
        self.video = torch.randn(n, 3, generator=g) + torch.nn.functional.one_hot(self.label, 4)[:, :3] * 2
        self.aud = torch.randn(n, 1, generator=g) + (self.label >= 2).float().unsqueeze(1) * 2
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch)) if mode == "train" else torch.arange(n)
        self.corner = torch.zeros(4, 4)
        self.corner[0, 0] = 3.0
        self.order = order[shard_id::num_shards]
        self.views = views if mode == "test" else 1
        self.labels = labels

    def __len__(self):
        n = len(self.order) * self.views
        return n // self.bs if self.mode == "train" else -(-n // self.bs)

    def __iter__(self):
        return self.iter_from(0)

    def iter_from(self, start_batch):
        """Batches from `start_batch` on, as avsf.data's loaders (exact resume)."""
        rows = [(int(i), v) for i in self.order for v in range(self.views)]
        for b in range(start_batch, len(self)):
            chunk = rows[b * self.bs:(b + 1) * self.bs]
            if self.fail_every:
                self.failed += len(chunk) // self.fail_every
            idx = torch.tensor([r[0] for r in chunk])
            view = torch.tensor([r[1] for r in chunk])
            noise = torch.randn(len(chunk), 3) * 0.1 if self.mode == "train" else 0.0  # global RNG
            slow = (self.video[idx] + noise)[:, :, None, None, None].expand(-1, 3, 2, 4, 4).contiguous()
            slow = slow + self.corner[None, None, None]  # a mark in one corner: a turn of the clip shows
            audio = self.aud[idx][:, :, None, None].expand(-1, 1, 8, 4).contiguous()
            batch = {"slow": slow, "fast": slow.repeat(1, 1, 2, 1, 1), "audio": audio, "index": idx}
            if self.labels:
                batch["label"] = self.label[idx]
            if self.shifted:
                batch["audio_shifted"] = audio.flip(2) * 0.5
            if self.mode == "test":
                batch["view"] = view
            yield batch


def factories(*, nan_after=None, fail_every=0, wrap_model=None):
    """The trainer's model / loader / dataset builders, as toys (avsf.factories.Factories).
    `wrap_model(model)` may replace or instrument each model built. Under `data.label_free`
    the loader's batches carry no `label`, as the real loader's."""
    from avsf.factories import Factories

    def model(cfg):
        m = ToyModel(cfg.model.num_classes, nan_after, rot_head=cfg.model.rot_head)
        return wrap_model(m) if wrap_model else m

    def loader(cfg, split, mode, shard_id=0, num_shards=1, epoch=0, with_shifted_audio=False):
        return ToyLoader(split, mode, cfg.train.batch_size, shard_id, num_shards, epoch, with_shifted_audio,
                         fail_every=fail_every, views=cfg.eval.temporal_views * cfg.eval.spatial_views,
                         labels=not cfg.data.label_free)

    return Factories(model=model, loader=loader, dataset_info=info,
                     count_flops=lambda cfg: {"gflops": 0.001, "params_m": 0.0005})


TOYS = factories()


def cli(argv, factories=TOYS):
    """`avsf ARGV` in this process with the toy builders; returns the exit code."""
    from avsf.cli import build_parser

    args = build_parser().parse_args(argv)
    return args.func(args, factories=factories)


def toy_config(**sets):
    from avsf.config import build_config

    base = {"train.epochs": 3, "train.batch_size": 8, "train.base_lr": 0.1, "train.warmup_epochs": 0.5,
            "train.warmup_start_lr": 0.01, "eval.temporal_views": 2, "eval.spatial_views": 1,
            "model.num_classes": 0, "train.deterministic": True}
    base.update(sets)
    return build_config(scale="tiny", overrides=base)


def after_forwards(n, action):
    """A `wrap_model` that runs `action(model)` once the model has made `n` training forwards."""

    def wrap(m):
        fwd = m.forward

        def forward(batch):
            if m.training:
                m.seen = getattr(m, "seen", 0) + 1
                if m.seen > n:
                    action(m)
            return fwd(batch)

        m.forward = forward
        return m

    return wrap


HOLD_LOCK = """
import sys, time
from avsf.run import RunDir
with RunDir(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(60)
"""
"""`python -c HOLD_LOCK DIR`: a process that holds DIR's run lock until killed."""


def metric_rows(run):
    """metrics.jsonl's rows without the wall-clock readings, which differ between any two runs."""
    from avsf.run import RunDir

    rows = RunDir(run).read_metrics()
    for r in rows:
        for k in ("time_s", "clips_per_s", "data_wait_share", "peak_mem_mb"):
            r.pop(k, None)
    return rows


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write: a read-only tmpfs as root (root ignores modes), else mode 0555."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                          capture_output=True).returncode != 0:
            pytest.skip("root without mount: cannot make a read-only folder")
        yield ro
        subprocess.run(["umount", str(ro)], check=True)
    else:
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)


def kill_at_a_mid_epoch_checkpoint(proc, run, timeout=240):
    """SIGKILL `proc` at a checkpoint boundary observed from outside: freeze it (SIGSTOP) whenever
    its checkpoint changes, read the checkpoint, and kill it when that one is mid-epoch (else let
    it go on). Returns the state of the checkpoint it was killed at."""
    from avsf.run import RunDir

    ckpt, seen, deadline = run / "checkpoints" / "last.pt", None, time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if ckpt.exists() and ckpt.stat().st_mtime_ns != seen:
            proc.send_signal(signal.SIGSTOP)
            seen = ckpt.stat().st_mtime_ns
            state = RunDir(run).load_checkpoint()["state"]
            if state["batch"] > 0:
                proc.kill()
                proc.communicate(timeout=60)
                return state
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError(f"no mid-epoch checkpoint seen (exit {proc.poll()}): {proc.communicate()[1][-2000:]}")
