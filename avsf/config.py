"""One typed config tree for every run: model, data, train, eval.

TOML in (`load_config`), dotted overrides ("model.beta_a=0.25") on top, a named
scale (tiny | small | paper) that changes sizes only, never the code path.
Every paper ablation is a field here, never a code branch elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

# ---------------------------------------------------------------------------- names, defined once
RES_STAGES = ("res2", "res3", "res4", "res5")
"""The four residual stages of every pathway (ResNet res2..res5)."""

JUNCTIONS = ("pool1", *RES_STAGES)
"""Points after the stem (pool1) and after each residual stage, in network order."""

STAGES = (*JUNCTIONS[:4], "pool5")
"""Junctions after which audio may be fused into the visual pathways (Sec. 3.3)."""

FS_STAGES = JUNCTIONS[:4]
"""Junctions that may carry a Fast->Slow lateral (pool1..res4)."""

AVS_JUNCTIONS = RES_STAGES[1:]
"""Junctions that may carry an audiovisual-synchronisation head (Table 5d)."""

STAGE_DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
"""Blocks per residual stage of ResNet-50 / ResNet-101."""

PATHWAYS = ("avslowfast", "slowfast", "audio", "late-ensemble")
HEADS = ("softmax", "sigmoid", "verb-noun", "detection")
AUDIO_KERNELS = ("factorised", "table1", "3x3")
DROP_PATHWAY_MODES = ("zeros", "running-average")
DROP_PATHWAY_SCOPES = ("laterals", "laterals+head")
AVS_LOSSES = ("contrastive", "bce")
AVS_LOSS_FORMS = ("authors", "avsf")
AVS_INPUTS = ("fused", "pooled")
LOADERS = ("auto", "dali", "reference")
DECODE_DEVICES = ("auto", "cpu", "gpu")
PRECISIONS = ("auto", "fp32", "bf16")
LR_POLICIES = ("cosine", "steps")
FREEZE = ("none", "all-but-head")
VIDEO_POOLS = ("auto", "mean", "max")


class ConfigError(ValueError):
    """A config value is wrong; the message names the field and what to do."""


def fusion_names() -> tuple[str, ...]:
    """The allowed `model.fusion` values: the fusion registry's names (avsf.model.fusions),
    imported lazily so that importing avsf.config stays light; validation reads them only here."""
    from avsf.model.fusions import registered_fusions

    return registered_fusions()


def objective_names() -> tuple[str, ...]:
    """The allowed `train.objective` values: "task" (the objective of `model.head`) and every
    objective registered in avsf.train.objectives, read lazily (importing the trainer loads torch,
    so validation asks only when a config names another objective than "task")."""
    from avsf.train.objectives import OBJECTIVES

    return ("task", *OBJECTIVES)


SYNTH_SCALE_NAMES = ("tiny", "small", "gpu")
"""The built-in synthetic benchmark's sizes (`data.synth_scale`). Named here rather than read from
avsf.data.synth so the config depends on no other avsf package; tests/test_synth_benchmark.py
checks that the generator defines exactly these."""


def synth_scale_names() -> tuple[str, ...]:
    return SYNTH_SCALE_NAMES


def _fusion_audio_target(m: "ModelConfig") -> int | None:
    """Frames the audio must be resampled to (by an integer stride) where it joins the visual
    pathways, as the fusion type declares (`aligns_to`): Fast's for A->F->S, Slow's for A->FS;
    None where the fusion resamples freely (AV non-local)."""
    from avsf.model.fusions import get_fusion

    aligns_to = get_fusion(m.fusion).aligns_to
    if aligns_to is None:
        return None
    return m.fast_frames if aligns_to == "fast" else m.num_frames


def _reject(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key}: {value!r} is not allowed; {allowed}")


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _type_ok(value: Any, hint: Any) -> bool:
    origin, args = get_origin(hint), get_args(hint)
    if args and type(None) in args:  # X | None
        return value is None or any(_type_ok(value, a) for a in args if a is not type(None))
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value) if args else isinstance(value, list)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"


class _Check:
    """Checks on one config section; every error names `<section>.<field>`, the value and what is allowed."""

    def __init__(self, section: Any, prefix: str) -> None:
        self.section, self.prefix = section, prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def types(self) -> None:
        hints = get_type_hints(type(self.section))
        for f in dataclasses.fields(self.section):
            value = getattr(self.section, f.name)
            if not _type_ok(value, hints[f.name]):
                raise _reject(self.key(f.name), value, f"must be {_type_name(hints[f.name])}")

    def need(self, ok: bool, name: str, allowed: str, value: Any = None) -> None:
        """A rule no helper below expresses (cross-field rules); `value` defaults to the field's."""
        if not ok:
            raise _reject(self.key(name), getattr(self.section, name) if value is None else value, allowed)

    def one_of(self, name: str, choices: Any) -> None:
        value = getattr(self.section, name)
        self.need(value in choices, name, f"choose one of: {', '.join(map(str, choices))}")

    def each_in(self, name: str, choices: Any) -> None:
        for v in getattr(self.section, name) or []:
            self.need(v in choices, name, f"each entry must be one of: {', '.join(map(str, choices))}", v)

    def number(self, name: str, low: float | None = None, high: float | None = None, *, low_open: bool = False,
               high_open: bool = False, value: Any = None, why: str = "") -> None:
        """A finite number in the interval [low, high] (ends open where asked; None: unbounded)."""
        v = getattr(self.section, name) if value is None else value
        ok = math.isfinite(v) and (low is None or (v > low if low_open else v >= low)) \
            and (high is None or (v < high if high_open else v <= high))
        kind = "an integer" if isinstance(v, int) else "a finite number"
        self.need(ok, name, f"must be {kind} in {_interval(low, high, low_open, high_open)}{why}", v)

    def numbers(self, name: str, low: float | None = None, *, low_open: bool = False,
                length: int | None = None) -> None:
        values = getattr(self.section, name)
        if length is not None:
            self.need(len(values) == length, name, f"wants exactly {length} numbers")
        for v in values:
            self.number(name, low, low_open=low_open, value=v)

    def odd(self, name: str, low: int = 1) -> None:
        v = getattr(self.section, name)
        self.need(v >= low and v % 2 == 1, name, f"must be an odd integer >= {low} (the conv pads k // 2 each side)")


@dataclass
class ModelConfig:
    # Which pathways exist: AV model, visual-only SlowFast, audio-only (A.3), or
    # separately-trained audio + visual models averaged ("SlowFast+Audio", Table 6).
    pathways: str = "avslowfast"  # avslowfast | slowfast | audio | late-ensemble
    depth: int = 50  # 50 | 101 (ResNet stage depths 3-4-6-3 / 3-4-23-3)
    stage_blocks: list[int] = field(default_factory=list)  # overrides depth when set (small scales)
    # Blocks per stage that get the stage's temporal kernel (the rest use 1), as PySlowFast.
    temporal_kernel_blocks: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    width: int = 64  # Slow conv1 channels; stage i bottleneck inner = width * 2**i
    num_frames: int = 4  # T, Slow frames per clip
    tau: int = 16  # Slow temporal stride in raw frames
    alpha_f: int = 8  # Fast frame-rate ratio
    beta_f: float = 1 / 8  # Fast channel ratio
    fs_fusion_kernel: int = 5  # Fast->Slow time-strided conv kernel (5 for 4x16, 7 for 8x8)
    fs_fusion_ratio: int = 2  # Fast->Slow lateral channel multiplier
    # None: SlowFast uses pool1..res4; AVSlowFast the stages where audio fuses laterally
    # (fusion_stages without pool5): the authors build one fusion module per junction holding
    # both laterals, FS_FUSION [F, F, T, T] with audio at res3, res4 (docs/model.md).
    fs_fusion_stages: list[str] | None = None
    alpha_a: int = 32  # audio log-mel frames per Slow frame (T_audio = alpha_a * T)
    beta_a: float = 1 / 2  # Audio channel ratio
    mel_bins: int = 80
    # res2/res3 audio block: factorised (authors' v1: parallel 3x1 | 1x3, concatenated) |
    # table1 (Table 1: 1x1 -> 3x1 + 1x3 summed -> 1x1) | 3x3
    audio_kernels: str = "factorised"
    audio_res2_stride: int = 1  # 1: authors' code; 2: the paper's text ("res2 to res5")
    audio_stem_kernel: int = 9  # [9x1, 1x9] stem
    fusion: str = "a-fs"  # a-fs | a-f-s | av-nonlocal
    fusion_stages: list[str] = field(default_factory=lambda: ["res3", "res4", "pool5"])
    afs_channels: int = 64  # inner width of the audio->visual lateral
    afs_kernel: int = 5  # temporal kernel of the audio->visual lateral
    drop_pathway: float = 0.8  # Pd
    drop_pathway_mode: str = "zeros"  # zeros | running-average
    # laterals: only the audio->visual additions are dropped (authors' code; the text's "sum
    # zero tensors with the visual pathways"); laterals+head: the pool5 audio features too
    drop_pathway_scope: str = "laterals"
    avs_layers: list[str] = field(default_factory=lambda: ["res3", "res4", "res5"])
    avs_dim: int = 64
    avs_loss: str = "contrastive"  # contrastive (authors' code) | bce (paper's text: "classify")
    avs_margin: float = 0.99
    avs_loss_form: str = "authors"  # authors (unsquared-distance hinge, /2N, summed over junctions) | avsf
    # fused (authors): fused Slow (Slow ++ Fast->Slow) vs audio after the lateral convs;
    # pooled: mean(Slow) ++ mean(Fast) before the lateral vs the pooled audio features
    avs_inputs: str = "fused"
    avs_mask: bool = True  # leave near-silent audio and near-duplicate pairs out of AVS
    avs_silence_var: float = 0.01  # log-mel input variance below this: near-silent
    avs_duplicate_cos: float = 0.99999  # positive/negative audio cosine above this: duplicate
    nonlocal_stages: list[str] = field(default_factory=list)  # e.g. ["res4"] for R101+NL
    dropout: float = 0.5
    # softmax | sigmoid | verb-noun | detection (AVA: res5 dilated, per-box RoIAlign, sigmoid)
    head: str = "softmax"
    rot_head: bool = False  # ROT pretext task (Sec. 6): four-way rotation logits on the visual features
    num_classes: int = 400
    num_verbs: int = 97
    num_nouns: int = 300
    zero_init_last_bn: bool = True

    @property
    def audio_frames(self) -> int:
        return self.alpha_a * self.num_frames

    @property
    def fast_frames(self) -> int:
        return self.alpha_f * self.num_frames

    @property
    def has_visual(self) -> bool:
        return self.pathways != "audio"

    @property
    def has_audio(self) -> bool:
        return self.pathways != "slowfast"

    def validate(self, *, resolved: bool = False) -> None:
        """Every `model.*` rule. `resolved`: the class counts must be concrete (the builder's
        view, after the trainer replaced num_classes = 0 by the dataset's count)."""
        c = _Check(self, "model")
        c.types()
        c.one_of("pathways", PATHWAYS)
        c.one_of("fusion", fusion_names())
        c.one_of("head", HEADS)
        c.one_of("audio_kernels", AUDIO_KERNELS)
        c.one_of("drop_pathway_mode", DROP_PATHWAY_MODES)
        c.one_of("drop_pathway_scope", DROP_PATHWAY_SCOPES)
        c.one_of("avs_loss", AVS_LOSSES)
        c.one_of("avs_loss_form", AVS_LOSS_FORMS)
        c.one_of("avs_inputs", AVS_INPUTS)
        c.one_of("depth", STAGE_DEPTHS)
        if self.stage_blocks:
            c.need(len(self.stage_blocks) == 4 and all(b >= 1 for b in self.stage_blocks), "stage_blocks",
                   "wants four positive block counts (res2..res5), or [] for the depth's")
        c.numbers("temporal_kernel_blocks", 0, length=4)
        c.each_in("fusion_stages", STAGES)
        c.each_in("fs_fusion_stages", FS_STAGES)
        c.each_in("avs_layers", AVS_JUNCTIONS)
        c.each_in("nonlocal_stages", RES_STAGES)
        for name in ("width", "num_frames", "tau", "alpha_f", "fs_fusion_ratio", "afs_channels", "avs_dim"):
            c.number(name, 1)
        c.need(self.tau % self.alpha_f == 0, "tau",
               f"must be a multiple of model.alpha_f ({self.alpha_f}) so the Fast pathway samples whole frames")
        c.odd("fs_fusion_kernel")
        c.odd("afs_kernel")
        c.number("drop_pathway", 0, 1)
        c.number("dropout", 0, 1, high_open=True)
        c.number("avs_margin", 0)
        c.number("avs_silence_var", 0)
        c.number("avs_duplicate_cos", -1, 1, why=" (a cosine similarity)")
        if self.has_visual:
            c.number("beta_f", 0, low_open=True)
            c.need(round(self.width * self.beta_f) >= 1, "beta_f",
                   f"must leave at least one Fast channel (model.width {self.width} x beta_f)")
        self._validate_heads(c, resolved)
        if self.has_audio:
            self._validate_audio(c)

    def _validate_heads(self, c: _Check, resolved: bool) -> None:
        c.need(not self.rot_head or self.pathways in ("avslowfast", "slowfast"), "rot_head",
               f"the rotation head reads the visual pathways of one network (model.pathways {self.pathways!r})")
        c.need(self.head != "detection" or self.pathways in ("avslowfast", "slowfast"), "head",
               f"detection needs the visual pathways in one network (model.pathways {self.pathways!r})")
        if self.head == "verb-noun":
            c.number("num_verbs", 1, why=" (a verb-noun head needs verbs and nouns)")
            c.number("num_nouns", 1, why=" (a verb-noun head needs verbs and nouns)")
            c.need(self.pathways != "late-ensemble", "head", "a late ensemble has no verb-noun head")
        elif resolved:
            c.number("num_classes", 1, why=" (0 means 'from the dataset': the trainer fills it in)")
        else:
            c.number("num_classes", 0, why=" (0: take the dataset's class count)")

    def _validate_audio(self, c: _Check) -> None:
        c.number("alpha_a", 1)
        c.number("mel_bins", 1)
        c.one_of("audio_res2_stride", (1, 2))
        c.odd("audio_stem_kernel")
        c.number("beta_a", 0, low_open=True)
        c.need(round(self.width * self.beta_a) >= 1, "beta_a",
               f"model.width {self.width} x beta_A leaves no audio channel")
        k = self.audio_stem_kernel
        c.need(self.audio_frames >= k, "alpha_a",
               f"audio is {self.audio_frames} log-mel frames (alpha_a x T {self.num_frames}), "
               f"shorter than the {k}-frame audio stem")
        c.need(self.mel_bins >= k, "mel_bins", f"fewer mel bins than the {k}-bin audio stem")
        down = self.audio_res2_stride * 8
        c.need(self.mel_bins >= down, "mel_bins", f"res2..res5 downsample the mel axis {down}x: use >= {down}")
        if self.pathways == "avslowfast":
            self._validate_alignment(c)

    def _validate_alignment(self, c: _Check) -> None:
        """Every audio->visual lateral resamples audio to the visual length with an integer stride."""
        target = _fusion_audio_target(self)
        if target is None:
            return
        length = self.audio_frames
        lengths = {"pool1": length}
        for s, stride in zip(RES_STAGES, (self.audio_res2_stride, 2, 2, 2)):
            length = (length - 1) // stride + 1
            lengths[s] = length
        for s in [s for s in self.fusion_stages if s != "pool5"]:
            c.need(lengths[s] >= target and lengths[s] % target == 0, "alpha_a",
                   f"audio is {lengths[s]} frames long after {s} but the "
                   f"{'Fast' if target == self.fast_frames else 'Slow'} pathway has {target}: "
                   "choose alpha_a so that it is a multiple")


@dataclass
class DataConfig:
    dataset: str = "synth"  # "synth" (built-in) or a prepared folder holding manifest.csv
    synth_scale: str = "small"  # tiny | small: size of the built-in synthetic benchmark
    synth_seed: int = 0
    # Test clips per class of the built-in `synth` set; 0 keeps the scale's own (40 at small).
    # A clip is keyed by (seed, class, split, index), so a larger test split leaves the training
    # and validation clips, and the models trained on them, exactly as they are: more test clips
    # cost evaluation only and narrow the test-clip part of a study's intervals (docs/studies.md).
    synth_test_per_class: int = 0
    cache_dir: str = ""  # where "synth" is generated; "" = $AVSF_CACHE or ~/.cache/avsf
    loader: str = "auto"  # auto | dali | reference
    device: str = "auto"  # auto | cpu | gpu (DALI decode placement)
    crop_size: int = 224
    short_side_range: list[int] = field(default_factory=lambda: [256, 320])
    test_crop_size: int = 256
    flip: bool = True
    sample_rate: int = 16000
    n_fft: int = 512  # 32 ms window
    hop_length: int = 256  # 16 ms hop
    logmel_mean: float = -7.03
    logmel_std: float = 4.66
    pixel_mean: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.45])
    pixel_std: list[float] = field(default_factory=lambda: [0.225, 0.225, 0.225])
    hard_negative_min_shift_s: float = 0.5  # AVS hard negatives: same clip, shifted >= this
    num_threads: int = 2
    max_failure_share: float = 0.1  # a run fails only past this share of undecodable clips
    # Detection training: each ground-truth box coordinate moves by up to this share of the box's
    # width / height (docs/detection.md; stands in for the detector boxes PySlowFast adds in training)
    box_jitter: float = 0.05
    fold: int = 0  # UCF101/HMDB51-style datasets: which official fold (1-3) names the splits; 0: the split column
    label_free: bool = False  # self-supervised pretraining: the manifest's labels are never read
    # Labelled subset for downstream training (SSL probes): keep this fraction of each class's
    # clips of the train split, chosen by train.seed (avsf.data.subset); 1 keeps them all.
    label_fraction: float = 1.0

    def validate(self) -> None:
        """Every `data.*` rule that needs no dataset (see `validate_for_dataset` for the rest)."""
        c = _Check(self, "data")
        c.types()
        c.need(bool(self.dataset.strip()), "dataset", "name 'synth' or a prepared folder holding manifest.csv")
        c.one_of("synth_scale", synth_scale_names())
        c.one_of("loader", LOADERS)
        c.one_of("device", DECODE_DEVICES)
        for name in ("crop_size", "test_crop_size", "sample_rate", "n_fft", "hop_length", "num_threads"):
            c.number(name, 1)
        c.number("synth_seed", 0)
        c.number("synth_test_per_class", 0)
        c.need(self.synth_test_per_class == 0 or self.dataset == "synth", "synth_test_per_class",
               f"sizes the built-in 'synth' set's test split, but data.dataset is {self.dataset!r}: use 0 "
               "(a prepared dataset's splits are its manifest's)")
        c.numbers("short_side_range", 1, length=2)
        lo, hi = self.short_side_range
        c.need(lo <= hi, "short_side_range", "wants [low, high] with low <= high")
        c.number("logmel_mean")
        c.number("logmel_std", 0, low_open=True)
        c.numbers("pixel_mean", length=3)
        c.numbers("pixel_std", 0, low_open=True, length=3)
        c.number("hard_negative_min_shift_s", 0)
        c.number("max_failure_share", 0, 1)
        c.number("box_jitter", 0, 0.5, why=" (a share of the box's size)")
        c.one_of("fold", (0, 1, 2, 3))  # the dataset's folds are checked in avsf.data.dataset_info
        c.number("label_fraction", 0, 1, low_open=True, why=" (the share of each class's training clips kept)")


@dataclass
class TrainConfig:
    epochs: int = 196
    batch_size: int = 8  # per device; BN statistics are per device batch
    base_lr: float = 0.1
    warmup_epochs: float = 34.0
    warmup_start_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_bn: float = 0.0
    avs_weight: float = 1.0
    avs_hard_start: float = 0.5  # fraction of training after which hard negatives appear
    avs_hard_fraction: float = 0.25
    frozen_bn: bool = False  # A.5: BN as affine layers when fine-tuning
    seed: int = 0
    deterministic: bool = False
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on the CPU) | fp32 | bf16 (CUDA autocast)
    channels_last: bool = True  # channels_last_3d where CUDA is present
    checkpoint_every_steps: int = 0  # 0: once per epoch
    eval_every_epochs: int = 1
    max_train_clips: int = 0  # 0: whole split
    init_from: str = ""  # fine-tuning (A.5/A.6): a run folder or checkpoint whose weights start the model
    num_threads: int = 0  # CPU intra-op threads per process (0: auto = cores / (processes x (1 + loader workers)))
    lr_policy: str = "cosine"  # cosine (A.4) | steps (A.5/A.6 fine-tuning: x lr_decay at each of lr_steps)
    lr_steps: list[float] = field(default_factory=list)  # epochs (fractional ok) of the step decays
    lr_decay: float = 0.1
    # Convergence (docs/training.md): converged when the best validation top-1 of the last
    # plateau_window evaluations beats the best before them by at most plateau_tol (a fraction).
    plateau_window: int = 3
    plateau_tol: float = 0.02
    early_stop: bool = False  # stop at the first epoch >= min_epochs where the run has converged
    # Precise BN (avsf/train/precise_bn.py): before each evaluation, every training BN layer's
    # running statistics recomputed over this many training batches with the weights fixed;
    # 0: off (training's running averages). The paper scale sets the authors' 200.
    precise_bn_batches: int = 0
    min_epochs: int = 1
    tensorboard: bool = False  # also write the per-epoch scalars to <run>/tb (torch.utils.tensorboard)
    compile: bool = False  # regional torch.compile of the model (avsf.model.compile_model); opt-in
    # What the run learns from (docs/ssl.md): "task" = the head's objective on the labels
    # (model.head); "pretext" = label-free pretraining on the auxiliary losses alone (AVS, ROT),
    # labels never read; any other objective registered in avsf.train.objectives.
    objective: str = "task"
    rot_weight: float = 0.0  # ROT pretext loss (Sec. 6): four-way rotation CE on model.rot_head's logits
    # none: every layer trains; all-but-head: the linear protocol (A.1): only the classifier
    # (head.*) trains, every other layer frozen, BatchNorm statistics included
    freeze: str = "none"

    def validate(self) -> None:
        c = _Check(self, "train")
        c.types()
        c.one_of("precision", PRECISIONS)
        c.one_of("lr_policy", LR_POLICIES)
        c.one_of("freeze", FREEZE)
        if self.objective != "task":  # the registry is read only for another objective
            c.one_of("objective", objective_names())
        for name in ("epochs", "batch_size", "eval_every_epochs"):
            c.number(name, 1)
        for name in ("seed", "checkpoint_every_steps", "max_train_clips", "num_threads", "precise_bn_batches"):
            c.number(name, 0)
        c.number("base_lr", 0, low_open=True)
        for name in ("warmup_epochs", "warmup_start_lr", "weight_decay", "weight_decay_bn", "avs_weight", "rot_weight"):
            c.number(name, 0)
        c.number("momentum", 0, 1, high_open=True)
        c.number("avs_hard_start", 0, 1)
        c.number("avs_hard_fraction", 0, 1)
        c.number("lr_decay", 0, 1, low_open=True)
        for step in self.lr_steps:
            c.number("lr_steps", 0, self.epochs, value=step, why=" (epochs of the step decays, within train.epochs)")
        c.number("plateau_window", 1)
        c.number("plateau_tol", 0, 1)
        c.number("min_epochs", 1, self.epochs, why=" (within train.epochs)")
        # train.compile: a bool (types() above); what it compiles and how long that takes at R50
        # on a GPU is measured by the GPU check (bench/test_cuda.py, r50-train-cuda-compile).


@dataclass
class EvalConfig:
    temporal_views: int = 10
    spatial_views: int = 3
    split: str = "test"
    # How a video's temporal clips are pooled into its score (spatial crops are always averaged):
    # auto = mean of softmax (single-label, Sec. 4) / max of sigmoid (multi-label, Charades A.6);
    # mean | max force one for both.
    video_pool: str = "auto"
    # Detection: AVA's detected-person-boxes CSV scored at test instead of the ground-truth boxes
    # ("" = the ground-truth boxes); detections below the threshold are left out (PySlowFast: 0.8)
    detected_boxes: str = ""
    detected_box_threshold: float = 0.8

    def validate(self) -> None:
        c = _Check(self, "eval")
        c.types()
        c.number("temporal_views", 1)
        c.number("spatial_views", 1)
        c.one_of("video_pool", VIDEO_POOLS)
        c.need(bool(self.split.strip()), "split", "name a split of the dataset, e.g. test")
        c.number("detected_box_threshold", 0, 1)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    scale: str = "paper"
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def validate(self) -> None:
        """Every allowed value, range, type and cross-field rule; raises the first ConfigError.

        Called by `build_config` and `config_from_dict`, so study, search, train and run
        files fail on load. Rules that need the dataset are in `validate_for_dataset`.
        """
        if self.scale not in SCALES:
            raise _reject("scale", self.scale, f"choose one of: {', '.join(SCALES)}")
        if not isinstance(self.name, str):
            raise _reject("name", self.name, "must be str")
        self.model.validate()
        self.data.validate()
        self.train.validate()
        self.eval.validate()
        self._validate_protocol()

    def _validate_protocol(self) -> None:
        """Cross-field rules of pretraining and its downstream protocols (docs/ssl.md); a named
        objective adds its own (`Objective.check`)."""
        t, c, d = self.train, _Check(self.train, "train"), _Check(self.data, "data")
        c.need(t.rot_weight == 0 or self.model.rot_head, "rot_weight",
               "the ROT loss needs the rotation head: set model.rot_head = true, or train.rot_weight = 0")
        if t.objective == "task":  # data.label_free with it: the trainer refuses (data tools may read so)
            return
        from avsf.train.objectives import OBJECTIVES

        objective = OBJECTIVES[t.objective]
        if not objective.reads_labels:
            c.need(t.freeze == "none", "freeze",
                   f"train.objective = {t.objective!r} learns without labels, so a run that trains only the "
                   "classifier would learn nothing: use 'none' ('all-but-head', the linear protocol, is for the "
                   "labelled run that follows)")
            d.need(self.data.label_free, "label_free",
                   f"train.objective = {t.objective!r} reads no labels: set data.label_free = true, so that the data "
                   "never reads them either (a dataset without valid labels then works)")
            d.need(self.data.label_fraction == 1, "label_fraction",
                   f"train.objective = {t.objective!r} reads no labels, so there is no labelled subset to keep: use 1")
        if objective.check is not None:
            objective.check(self)


# Scales change sizes only. `paper` is the dataclass defaults (the authors' recipe), with the
# class count taken from the dataset at every scale (a 400-way head on a 10-class dataset
# trained 390 dead outputs; a config or variant that sets model.num_classes keeps its own), and
# the authors' precise BN: a field added after runs were made defaults to what avsf did before
# it existed (avsf.run.config_diff reads an absent key as the default), so the recipe's value
# lives here.
SCALES: dict[str, dict[str, Any]] = {
    "paper": {"model.num_classes": 0, "train.precise_bn_batches": 200},
    "small": {
        "model.stage_blocks": [1, 1, 1, 1],
        # Sized so that a run converges within minutes on one CPU core (docs/studies.md): the
        # model step dominates a run's time, and the audio pathway (stride 1 in res2) the step.
        "model.width": 8,
        "model.num_frames": 4,
        "model.tau": 8,  # 32 raw frames at the synth's 16 fps: 2 s, as the paper's 4x16 at 30 fps
        "model.alpha_f": 4,
        "model.alpha_a": 16,  # 64 log-mel frames of 32 ms (2 s): half the paper's rate, 1.45x faster steps
        "model.mel_bins": 32,
        "model.beta_f": 1 / 2,  # 4 Fast channels at width 8 (1/8 would leave one)
        "model.num_classes": 0,  # 0: take the dataset's class count
        "data.hop_length": 512,
        "data.crop_size": 32,
        "data.short_side_range": [32, 40],  # the synth's 48x40 frames
        "data.test_crop_size": 32,
        "data.synth_scale": "small",
        "train.epochs": 20,
        # Batch 8, not 16: twice the updates in the same 20 epochs at the same cost per clip; at
        # 16 the sync and competition groups were learned by some seeds and not others (pd0:
        # 92.4 +- 26 points MDD over 3 seeds), at 8 by every seed (pd0 95.2 / 98.5 / 98.8).
        "train.batch_size": 8,
        "train.base_lr": 0.05,
        "train.warmup_epochs": 1.0,
        "train.warmup_start_lr": 0.005,
        "eval.temporal_views": 2,
        "eval.spatial_views": 1,
    },
    "tiny": {
        "model.stage_blocks": [1, 1, 1, 1],
        "model.width": 8,
        "model.num_frames": 2,
        "model.tau": 8,  # 16 raw frames at 16 fps: 1 s
        "model.alpha_f": 2,
        "model.alpha_a": 32,  # 64 log-mel frames
        "model.mel_bins": 16,
        "model.beta_f": 1 / 2,
        "model.num_classes": 0,
        "data.crop_size": 32,
        "data.short_side_range": [32, 40],
        "data.test_crop_size": 32,
        "data.synth_scale": "tiny",
        "train.epochs": 2,
        "train.batch_size": 4,
        "train.base_lr": 0.05,
        "train.warmup_epochs": 0.5,
        "train.warmup_start_lr": 0.005,
        "eval.temporal_views": 2,
        "eval.spatial_views": 1,
    },
}


def _section(cfg: Config, dotted: str) -> tuple[Any, str]:
    parts = dotted.split(".")
    obj: Any = cfg
    for i, p in enumerate(parts[:-1]):
        if not dataclasses.is_dataclass(obj) or p not in {f.name for f in dataclasses.fields(obj)}:
            raise ConfigError(f"unknown config section '{'.'.join(parts[: i + 1])}' in '{dotted}'")
        obj = getattr(obj, p)
    leaf = parts[-1]
    if not dataclasses.is_dataclass(obj) or leaf not in {f.name for f in dataclasses.fields(obj)}:
        known = ", ".join(f.name for f in dataclasses.fields(obj)) if dataclasses.is_dataclass(obj) else ""
        raise ConfigError(f"unknown config key '{dotted}'" + (f" (known here: {known})" if known else ""))
    return obj, leaf


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a TOML/CLI value to the field's declared type, or say which key is wrong."""
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is None and hint is type(None):
        return value
    if args and type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "auto")):
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = get_origin(hint), get_args(hint)
    if origin is list:
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.strip("[]").split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' wants a list, got {value!r}")
        return [_coerce(v, args[0] if args else Any, key) for v in value]
    if hint is bool:
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' wants true/false, got {value!r}")
    if hint is float:
        if isinstance(value, str) and "/" in value:  # "1/8" reads as the paper writes it
            num, den = value.split("/", 1)
            try:
                return float(num) / float(den)
            except (ValueError, ZeroDivisionError):
                raise ConfigError(f"config key '{key}' wants a number, got {value!r}") from None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}' wants a number, got {value!r}") from None
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' wants an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}' wants an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"config key '{key}' wants an integer, got {value!r}")
        return int(f)
    if hint is str:
        return str(value)
    return value


def set_value(cfg: Config, dotted: str, value: Any) -> None:
    obj, leaf = _section(cfg, dotted)
    hint = get_type_hints(type(obj))[leaf]
    setattr(obj, leaf, _coerce(value, hint, dotted))


def parse_override(text: str) -> tuple[str, Any]:
    """"model.beta_a=0.25" -> ("model.beta_a", 0.25); values read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value (e.g. model.beta_a=0.25)")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested TOML tables -> dotted keys. Lists stay values."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def apply(cfg: Config, overrides: dict[str, Any] | list[str] | None) -> Config:
    if not overrides:
        return cfg
    items = dict(parse_override(o) for o in overrides) if isinstance(overrides, list) else overrides
    for k, v in items.items():
        if k == "scale":
            cfg.scale = str(v)
        elif k == "name":
            cfg.name = str(v)
        else:
            set_value(cfg, k, v)
    return cfg


def build_config(
    *,
    scale: str | None = None,
    base: dict[str, Any] | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> Config:
    """Defaults -> scale sizes -> base (a variant or a TOML file) -> overrides, in that order.

    The scale comes first so that a variant or study can still pin any size it needs.
    """
    scale = scale or "paper"
    if scale not in SCALES:
        raise ConfigError(f"unknown scale '{scale}' (choose one of: {', '.join(SCALES)})")
    cfg = Config(scale=scale)
    apply(cfg, SCALES[scale])
    apply(cfg, base)
    apply(cfg, overrides)
    cfg.validate()
    return cfg


def read_toml(path: str | Path, *, what: str = "config", error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is an `error` naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML ({e})") from None


def load_config(path: str | Path, *, scale: str | None = None, overrides: list[str] | None = None) -> Config:
    path = Path(path)
    flat = flatten(read_toml(path))
    file_scale = flat.pop("scale", None)
    try:
        return build_config(scale=scale or file_scale, base=flat, overrides=overrides)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


MODEL_BEFORE_AVS_FORM = {"avs_inputs": "pooled", "avs_loss_form": "avsf", "avs_mask": False,
                         "drop_pathway_scope": "laterals+head"}
"""What a run whose config.json predates these model fields trained with (their defaults
changed when they were added; docs/model.md)."""


def _upgrade_model_tree(model: dict[str, Any]) -> dict[str, Any]:
    """A stored `model` table from before the AVS-form fields, with the values that run used,
    so an old run resumes, evaluates and compares as the model it trained."""
    if "avs_inputs" in model:
        return model
    old = {**MODEL_BEFORE_AVS_FORM, **model}
    stages = old.get("fusion_stages", ModelConfig().fusion_stages)
    if old.get("fs_fusion_stages") is None and old.get("pathways", "avslowfast") == "avslowfast":
        earlier_rule = [s for s in ("pool1", "res2") if s in stages] + ["res3", "res4"]
        if earlier_rule != [s for s in FS_STAGES if s in stages]:  # the rule changed for this run
            old["fs_fusion_stages"] = earlier_rule
    return old


def config_from_dict(tree: dict[str, Any]) -> Config:
    """Inverse of Config.to_dict (for config.json in a run folder)."""
    if isinstance(tree.get("model"), dict):
        tree = {**tree, "model": _upgrade_model_tree(tree["model"])}
    flat = flatten({k: v for k, v in tree.items() if k not in ("scale", "name")})
    cfg = Config(scale=tree.get("scale", "paper"), name=tree.get("name", ""))
    apply(cfg, flat)
    cfg.validate()
    return cfg


def validate_for_dataset(cfg: Config, info: Any) -> None:
    """The rules that need the dataset (`avsf.data.DatasetInfo`: root, num_classes,
    split_sizes); the trainer calls this once the dataset is known, before it writes anything."""
    where = f"the dataset at {getattr(info, 'root', '?')}"
    sizes = dict(getattr(info, "split_sizes", None) or {})
    splits = [s for s, n in sizes.items() if n > 0]
    if sizes and cfg.eval.split not in splits:
        raise _reject("eval.split", cfg.eval.split,
                      f"{where} has these splits with clips: {', '.join(splits) or 'none'}")
    m = cfg.model
    task = getattr(info, "task", "classification")
    if (task == "detection") != (m.head == "detection"):
        raise _reject("model.head", m.head, f"{where} is a {task} set: use "
                      + ("detection" if task == "detection" else "softmax, sigmoid or verb-noun"))
    if task == "detection" and cfg.eval.temporal_views != 1:
        raise _reject("eval.temporal_views", cfg.eval.temporal_views,
                      f"{where} is a detection set, scored on the one clip centred on each keyframe: use 1")
    if m.head != "verb-noun" and 0 < m.num_classes < info.num_classes:
        raise _reject("model.num_classes", m.num_classes,
                      f"{where} has {info.num_classes} classes: use >= {info.num_classes}, or 0 to take its count")
    if "train" in sizes:
        clips = min(sizes["train"], cfg.train.max_train_clips or sizes["train"])
        if cfg.train.batch_size > clips:
            raise _reject("train.batch_size", cfg.train.batch_size,
                          f"{where} gives {clips} training clips: use <= {clips} (one batch must fit)")
