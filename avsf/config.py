"""One typed config tree for every run: model, data, train, eval.

TOML in (`load_config`), dotted overrides ("model.beta_a=0.25") on top, a named
scale (tiny | small | paper) that changes sizes only, never the code path.
Every paper ablation is a field here, never a code branch elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

STAGES = ("pool1", "res2", "res3", "res4", "pool5")
"""Junctions after which audio may be fused into the visual pathways (Sec. 3.3)."""

AVS_JUNCTIONS = ("res3", "res4", "res5")
"""Junctions that may carry an audiovisual-synchronisation head (Table 5d)."""


class ConfigError(ValueError):
    """A config value is wrong; the message names the field and what to do."""


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
    # None: SlowFast uses pool1..res4; AV models use res3, res4 plus any earlier audio stage
    # (REFERENCE_FACTS: FS_FUSION [F, F, T, T]).
    fs_fusion_stages: list[str] | None = None
    alpha_a: int = 32  # audio log-mel frames per Slow frame (T_audio = alpha_a * T)
    beta_a: float = 1 / 2  # Audio channel ratio
    mel_bins: int = 80
    audio_kernels: str = "factorised"  # factorised ([3x1, 1x3] in res2/res3) | 3x3
    audio_res2_stride: int = 1  # 1: authors' code; 2: the paper's text ("res2 to res5")
    audio_stem_kernel: int = 9  # [9x1, 1x9] stem
    fusion: str = "a-fs"  # a-fs | a-f-s | av-nonlocal
    fusion_stages: list[str] = field(default_factory=lambda: ["res3", "res4", "pool5"])
    afs_channels: int = 64  # inner width of the audio->visual lateral
    afs_kernel: int = 5  # temporal kernel of the audio->visual lateral
    drop_pathway: float = 0.8  # Pd
    drop_pathway_mode: str = "zeros"  # zeros | running-average
    avs_layers: list[str] = field(default_factory=lambda: ["res3", "res4", "res5"])
    avs_dim: int = 64
    avs_loss: str = "contrastive"  # contrastive (authors' code) | bce (paper's text: "classify")
    avs_margin: float = 0.99
    nonlocal_stages: list[str] = field(default_factory=list)  # e.g. ["res4"] for R101+NL
    dropout: float = 0.5
    head: str = "softmax"  # softmax | sigmoid | verb-noun
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


@dataclass
class DataConfig:
    dataset: str = "synth"  # "synth" (built-in) or a prepared folder holding manifest.csv
    synth_scale: str = "small"  # tiny | small: size of the built-in synthetic benchmark
    synth_seed: int = 0
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
    fold: int = 0  # UCF101/HMDB51-style datasets: which official fold (1-3) names the splits; 0: the split column
    label_free: bool = False  # self-supervised pretraining: the manifest's labels are never read


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
    precision: str = "fp32"  # fp32 | bf16 (CUDA autocast)
    channels_last: bool = True  # channels_last_3d where CUDA is present
    checkpoint_every_steps: int = 0  # 0: once per epoch
    eval_every_epochs: int = 1
    max_train_clips: int = 0  # 0: whole split
    init_from: str = ""  # fine-tuning (A.5/A.6): a run folder or checkpoint whose weights start the model
    num_threads: int = 0  # CPU intra-op threads per process (0: auto = cores / (processes x (1 + loader workers)))
    lr_policy: str = "cosine"  # cosine (A.4) | steps (A.5/A.6 fine-tuning: x lr_decay at each of lr_steps)
    lr_steps: list[float] = field(default_factory=list)  # epochs (fractional ok) of the step decays
    lr_decay: float = 0.1


@dataclass
class EvalConfig:
    temporal_views: int = 10
    spatial_views: int = 3
    split: str = "test"


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


# Scales change sizes only. `paper` is the dataclass defaults (the authors' recipe).
SCALES: dict[str, dict[str, Any]] = {
    "paper": {},
    "small": {
        "model.stage_blocks": [1, 1, 1, 1],
        "model.width": 16,
        "model.num_frames": 4,
        "model.tau": 8,  # 32 raw frames at the synth's 16 fps: 2 s, as the paper's 4x16 at 30 fps
        "model.alpha_f": 4,
        "model.alpha_a": 32,  # 128 log-mel frames (2 s), as in the paper
        "model.mel_bins": 40,
        "model.beta_f": 1 / 4,
        "model.num_classes": 0,  # 0: take the dataset's class count
        "data.crop_size": 64,
        "data.short_side_range": [64, 80],
        "data.test_crop_size": 64,
        "data.synth_scale": "small",
        "train.epochs": 12,
        "train.batch_size": 16,
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


def config_from_dict(tree: dict[str, Any]) -> Config:
    """Inverse of Config.to_dict (for config.json in a run folder)."""
    flat = flatten({k: v for k, v in tree.items() if k not in ("scale", "name")})
    cfg = Config(scale=tree.get("scale", "paper"), name=tree.get("name", ""))
    return apply(cfg, flat)
