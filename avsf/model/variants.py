"""The paper's rows as one named registry: "<table>/<row>" -> config overrides + the paper's numbers.

Used by `avsf flops --variant NAME / --list` (rows with a GFLOPs figure), `avsf train --variant
NAME`, and study files: a ``[[variant]]`` with ``row = "table5c/pd0.8"`` takes the row's paper
numbers, and its overrides unless the variant gives its own ``set``, instead of retyping them.

Overrides apply on top of the `paper` scale. The numbers are the paper's, copied from its tables
(Kinetics-400 top-1/top-5 in % (the `table3/ks-*` rows: Kinetics-Sounds; `table2/*`: EPIC-Kitchens
verb, noun and action), Charades and AVA mAP in %, GFLOPs of one clip at 256x256 with
400 classes unless the row says otherwise: the detection and SSL rows are at 256x320, the paper's
footnote 2); a number the paper does not give is None. docs/model.md explains
rows whose GFLOPs our count cannot match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PAPER_KEYS = ("top1", "top5", "mAP", "gflops", "top1_verb", "top5_verb", "top1_noun", "top5_noun")
"""The numbers a row (and a study variant's `paper` table) may carry. EPIC rows (Table 2): `top1` /
`top5` are the action's (verb + noun), beside the verb's and the noun's own."""


@dataclass(frozen=True)
class PaperRow:
    name: str  # "<table>/<row>", e.g. "table5c/pd0.8"
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    top1: float | None = None
    top5: float | None = None
    mAP: float | None = None
    top1_verb: float | None = None
    top5_verb: float | None = None
    top1_noun: float | None = None
    top5_noun: float | None = None
    gflops: float | None = None
    input_size: int | tuple[int, int] = 256  # the clip's spatial size behind `gflops`: side, or (height, width)
    paper_params_m: float | None = None  # the paper's parameter count (millions), where it gives one

    @property
    def table(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def paper(self) -> dict[str, float]:
        """The numbers the paper gives for this row (keys of PAPER_KEYS)."""
        return {k: float(getattr(self, k)) for k in PAPER_KEYS if getattr(self, k) is not None}

    @property
    def paper_gflops(self) -> float | None:
        """The paper's GFLOPs (the figure `avsf flops` compares its count with)."""
        return self.gflops


R50_8x8 = {"model.num_frames": 8, "model.tau": 8, "model.alpha_f": 4, "model.alpha_a": 16, "model.fs_fusion_kernel": 7}
R101_8x8 = {**R50_8x8, "model.depth": 101}
# Charades (Table 4): 16x8 (Fast 64 frames at stride 2), R101 with non-local blocks in Slow res4,
# 157 classes, sigmoid head; audio covers the 4.3 s clip (256 log-mel frames).
R101_NL_16x8 = {
    "model.num_frames": 16, "model.tau": 8, "model.alpha_f": 4, "model.alpha_a": 16,
    "model.depth": 101, "model.nonlocal_stages": ["res4"], "model.num_classes": 157,
    "model.head": "sigmoid",
}
SLOWFAST = {"model.pathways": "slowfast"}
EPIC = {"model.head": "verb-noun", "model.num_verbs": 125, "model.num_nouns": 352}
KS = {"model.num_classes": 32}
# AVA detection (Table 7, Sec. 5, A.7): res5 dilated, RoI head, 80 classes (60 evaluated);
# R101 rows with non-local blocks ("For R101, both use NL blocks"). mAP: AVA v2.1.
# One test view: the clip is centred on each keyframe (Config.validate asks for it with detection).
DETECTION = {"model.head": "detection", "model.num_classes": 80, "eval.temporal_views": 1}
R101_NL_8x8 = {**R101_8x8, "model.nonlocal_stages": ["res4"]}
# Self-supervised rows (Table A.1): the rotation head (ROT) on top, UCF101's 101 classes in the
# linear probe's fc; T x tau = 16x4 samples 64 frames at stride 1 (Fast alpha 4), 128 log-mel.
SSL = {"model.rot_head": True, "model.num_classes": 101}
R50_16x4 = {"model.num_frames": 16, "model.tau": 4, "model.alpha_f": 4, "model.alpha_a": 8, "model.fs_fusion_kernel": 7}
FOOTNOTE_2 = (256, 320)
# The default AVSlowFast 4x16 R50 (A->FS, beta_A 1/2, Pd 0.8, AVS at res3-5, fused at res3, res4,
# pool5) is a row of every Table 5 panel and of Table 6: 77.0 / 92.7, 39.8 GFLOPs.
DEFAULT_AV = {"top1": 77.0, "top5": 92.7}

_ROWS = [
    PaperRow("table5a/a-fs", "A->FS fusion (default)", {"model.fusion": "a-fs"}, **DEFAULT_AV, gflops=39.8),
    PaperRow("table5a/a-f-s", "A->F->S fusion", {"model.fusion": "a-f-s"}, top1=75.3, top5=91.8, gflops=51.4),
    PaperRow("table5a/av-nonlocal", "audiovisual non-local fusion", {"model.fusion": "av-nonlocal"},
             top1=77.2, top5=92.9, gflops=39.9),
    PaperRow("table5b/beta-1-8", "beta_A = 1/8", {"model.beta_a": 1 / 8}, top1=76.0, top5=92.5, gflops=36.0),
    PaperRow("table5b/beta-1-4", "beta_A = 1/4", {"model.beta_a": 1 / 4}, top1=76.6, top5=92.7, gflops=36.8),
    PaperRow("table5b/beta-1-2", "beta_A = 1/2 (default)", {"model.beta_a": 1 / 2}, **DEFAULT_AV, gflops=39.8),
    PaperRow("table5b/beta-1", "beta_A = 1", {"model.beta_a": 1.0}, top1=75.9, top5=92.4, gflops=51.9),
    # Table 5c and 5d have no GFLOPs column (Pd and AVS do not change the inference cost).
    PaperRow("table5c/pd0", "no DropPathway (Pd = 0, the paper's '-')", {"model.drop_pathway": 0.0},
             top1=75.2, top5=91.8),
    PaperRow("table5c/pd0.2", "DropPathway Pd = 0.2", {"model.drop_pathway": 0.2}, top1=76.0, top5=92.5),
    PaperRow("table5c/pd0.5", "DropPathway Pd = 0.5", {"model.drop_pathway": 0.5}, top1=76.7, top5=92.7),
    PaperRow("table5c/pd0.8", "DropPathway Pd = 0.8 (default)", {"model.drop_pathway": 0.8}, **DEFAULT_AV),
    PaperRow("table5d/none", "no AV synchronisation (the paper's '-')", {"model.avs_layers": []},
             top1=76.4, top5=92.5),
    PaperRow("table5d/res5", "AVS at res5", {"model.avs_layers": ["res5"]}, top1=76.7, top5=92.8),
    PaperRow("table5d/res4-5", "AVS at res4, res5", {"model.avs_layers": ["res4", "res5"]}, top1=76.9, top5=92.9),
    PaperRow("table5d/res3-4-5", "AVS at res3, res4, res5 (default)", {"model.avs_layers": ["res3", "res4", "res5"]},
             **DEFAULT_AV),
    PaperRow("table6/slowfast", "SlowFast 4x16, R50 (no audio)", SLOWFAST, top1=75.6, top5=92.0, gflops=36.1),
    PaperRow("table6/slowfast-audio", "SlowFast+Audio: separately trained models, scores averaged",
             {"model.pathways": "late-ensemble"}, top1=76.1, top5=92.0),
    PaperRow("table6/pool5", "audio fused at pool5 only", {"model.fusion_stages": ["pool5"]},
             top1=75.4, top5=92.0, gflops=38.4),
    PaperRow("table6/res4-pool5", "audio fused at res4 + pool5", {"model.fusion_stages": ["res4", "pool5"]},
             top1=76.5, top5=92.6, gflops=39.1),
    PaperRow("table6/res3-4-pool5", "audio fused at res3,4 + pool5 (default)",
             {"model.fusion_stages": ["res3", "res4", "pool5"]}, **DEFAULT_AV, gflops=39.8),
    PaperRow("table6/res2-3-4-pool5", "audio fused at res2,3,4 + pool5",
             {"model.fusion_stages": ["res2", "res3", "res4", "pool5"]}, top1=75.8, top5=92.4, gflops=40.2),
    PaperRow("tableA3/audio-only", "Audio-only network (full-width audio ResNet-50)",
             {"model.pathways": "audio", "model.beta_a": 1.0}, top1=24.8, top5=43.3, gflops=14.2),
    # Table 2: EPIC-Kitchens validation (the split of [6]: 125 verbs, 352 nouns), fine-tuned from
    # Kinetics (A.5); top1/top5 = action. The paper gives no GFLOPs for it.
    PaperRow("table2/slowfast-r101", "SlowFast 8x8, R101 (EPIC-Kitchens val)", {**R101_8x8, **SLOWFAST, **EPIC},
             top1=21.9, top5=39.7, top1_verb=55.8, top5_verb=83.1, top1_noun=27.4, top5_noun=52.1),
    PaperRow("table2/avslowfast-r101", "AVSlowFast 8x8, R101 (EPIC-Kitchens val)", {**R101_8x8, **EPIC},
             top1=24.2, top5=43.6, top1_verb=58.7, top5_verb=83.6, top1_noun=31.7, top5_noun=58.4),
    # Table 3's "KS" column: top-1 on Kinetics-Sounds (the 32 classes of it in Kinetics-400), same models.
    PaperRow("table3/ks-slowfast-r50", "SlowFast 4x16, R50 (Kinetics-Sounds)", {**SLOWFAST, **KS}, top1=80.5),
    PaperRow("table3/ks-avslowfast-r50", "AVSlowFast 4x16, R50 (Kinetics-Sounds)", dict(KS), top1=83.7),
    PaperRow("table3/ks-slowfast-r101", "SlowFast 8x8, R101 (Kinetics-Sounds)", {**R101_8x8, **SLOWFAST, **KS},
             top1=82.7),
    PaperRow("table3/ks-avslowfast-r101", "AVSlowFast 8x8, R101 (Kinetics-Sounds)", {**R101_8x8, **KS}, top1=85.0),
    PaperRow("table3/slowfast-r50", "SlowFast 4x16, R50", SLOWFAST, top1=75.6, top5=92.0, gflops=36.0),
    PaperRow("table3/avslowfast-r50", "AVSlowFast 4x16, R50", {}, **DEFAULT_AV, gflops=40.0),
    PaperRow("table3/slowfast-r101", "SlowFast 8x8, R101", {**R101_8x8, **SLOWFAST},
             top1=77.9, top5=93.2, gflops=106.0),
    PaperRow("table3/avslowfast-r101", "AVSlowFast 8x8, R101", dict(R101_8x8), top1=78.8, top5=93.6, gflops=129.0),
    PaperRow("table4/slowfast-r101-nl", "SlowFast 16x8, R101+NL (Charades, 157 classes)",
             {**R101_NL_16x8, **SLOWFAST}, mAP=42.5, gflops=234.0),
    PaperRow("table4/avslowfast-r101-nl", "AVSlowFast 16x8, R101+NL (Charades, 157 classes)",
             dict(R101_NL_16x8), mAP=43.7, gflops=278.0),
    PaperRow("table7/slowfast-r50", "AVA detection, SlowFast 4x16, R50", {**DETECTION, **SLOWFAST},
             mAP=24.3, gflops=65.7, input_size=FOOTNOTE_2),
    PaperRow("table7/avslowfast-r50", "AVA detection, AVSlowFast 4x16, R50", dict(DETECTION),
             mAP=25.4, gflops=67.1, input_size=FOOTNOTE_2),
    PaperRow("table7/slowfast-r101-nl", "AVA detection, SlowFast 8x8, R101+NL", {**R101_NL_8x8, **DETECTION, **SLOWFAST},
             mAP=26.3, gflops=184.0, input_size=FOOTNOTE_2),
    PaperRow("table7/avslowfast-r101-nl", "AVA detection, AVSlowFast 8x8, R101+NL", {**R101_NL_8x8, **DETECTION},
             mAP=27.8, gflops=210.0, input_size=FOOTNOTE_2),
    PaperRow("tableA1/avslowfast-4x16", "SSL (AVS+ROT) AVSlowFast 4x16, R50", dict(SSL),
             gflops=36.2, input_size=FOOTNOTE_2, paper_params_m=38.5),
    PaperRow("tableA1/avslowfast-8x8", "SSL (AVS+ROT) AVSlowFast 8x8, R50", {**R50_8x8, **SSL},
             gflops=63.4, input_size=FOOTNOTE_2, paper_params_m=38.5),
    PaperRow("tableA1/avslowfast-16x4", "SSL (AVS+ROT) AVSlowFast 16x4, R50", {**R50_16x4, **SSL},
             gflops=117.9, input_size=FOOTNOTE_2, paper_params_m=38.5),
    PaperRow("tableA1/slowfast-4x16-rot", "SSL (ROT) SlowFast 4x16, R50", {**SSL, **SLOWFAST},
             gflops=34.2, input_size=FOOTNOTE_2, paper_params_m=33.0),
    # Self-supervised learning (Sec. 6, A.1, A.2): `top1` is UCF101 top-1 after self-supervised
    # pretraining on Kinetics-400 (Table A.1's ablation: split 1, linear classifier on frozen
    # features; Table A.2: the mean of the three splits, all layers fine-tuned); HMDB51 in the
    # description. The overrides are the backbone's; the pretext tasks and the protocol are the
    # study's settings (studies/ssl_*.toml, docs/ssl.md). GFLOPs and params: the tableA1/ rows.
    PaperRow("tableA1/ssl-slowfast-rot", "SlowFast 4x16, R50, ROT pretraining, linear probe (HMDB51 split 1: 42.0)",
             SLOWFAST, top1=71.9),
    PaperRow("tableA1/ssl-avslowfast-avs", "AVSlowFast 4x16, R50, AVS pretraining, linear probe (HMDB51 split 1: 39.5)",
             {}, top1=73.2),
    PaperRow("tableA1/ssl-avslowfast-avs-rot",
             "AVSlowFast 4x16, R50, AVS+ROT pretraining, linear probe (HMDB51 split 1: 40.2)", {}, top1=77.0),
    PaperRow("tableA2/avslowfast-16x4", "AVSlowFast 16x4, R50, AVS+ROT pretraining, all layers fine-tuned "
             "(HMDB51, mean of 3 splits: 54.6)", dict(R50_16x4), top1=87.0),
]

ROWS: dict[str, PaperRow] = {r.name: r for r in _ROWS}
"""Every registered paper row, by name."""

VARIANTS: dict[str, PaperRow] = {r.name: r for r in _ROWS if r.gflops is not None}
"""The rows with a paper GFLOPs figure: what `avsf flops --list` counts and compares."""


def _lookup(registry: dict[str, PaperRow], name: str, what: str, hint: str) -> PaperRow:
    from avsf.config import ConfigError

    try:
        return registry[name]
    except KeyError:
        raise ConfigError(f"unknown {what} '{name}' ({hint})") from None


def get_row(name: str) -> PaperRow:
    """Any registered row (study files' `row = ...`, `avsf train --variant`)."""
    return _lookup(ROWS, name, "paper row", f"known: {', '.join(ROWS)}")


def get_variant(name: str) -> PaperRow:
    """A row with a paper GFLOPs figure (`avsf flops --variant`)."""
    return _lookup(VARIANTS, name, "variant", "see `avsf flops --list`")
