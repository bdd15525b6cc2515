"""The AVSlowFast network: one class for SlowFast, AVSlowFast and the Audio-only model.

Which pathways exist, where audio fuses and how (a registered fusion type, avsf.model.fusions),
DropPathway and AV synchronisation are all read from `ModelConfig`; there is no per-variant
subclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from avsf.config import FS_STAGES, JUNCTIONS, RES_STAGES, STAGE_DEPTHS, ModelConfig
from avsf.model.droppathway import DropPathway
from avsf.model.fusions import Junction, get_fusion
from avsf.model.heads import ClassificationHead, DetectionHead, SyncHead
from avsf.model.laterals import AudioTemporalLateral, FastToSlow
from avsf.model.pathways import AudioPathway, VisualPathway
from avsf.model.pretext import ROTATIONS
from avsf.model.sync import sync_mask



def stage_blocks(cfg: ModelConfig) -> list[int]:
    return list(cfg.stage_blocks) if cfg.stage_blocks else STAGE_DEPTHS[cfg.depth]


def fs_fusion_stages(cfg: ModelConfig) -> list[str]:
    """Fast->Slow laterals: SlowFast fuses after pool1..res4; AVSlowFast where audio fuses
    laterally (one fusion module per junction holding both laterals, as the authors' FuseAV),
    so the default res3, res4 (+ pool5) gives the authors' FS_FUSION [F, F, T, T] and Table 6's
    pool5-only row has none. `model.fs_fusion_stages` overrides the rule."""
    if cfg.fs_fusion_stages is not None:
        return list(cfg.fs_fusion_stages)
    if cfg.pathways == "avslowfast":
        return [s for s in FS_STAGES if s in cfg.fusion_stages]
    return list(FS_STAGES)


@dataclass
class _Flow:
    """Features on their way through the junctions of one forward pass."""

    slow: torch.Tensor | None
    fast: torch.Tensor | None
    audio: torch.Tensor | None  # positives, then (in AVS training) the negatives' rows
    clips: int  # batch size (rows of `audio` beyond it are AVS negatives)
    keep: bool  # DropPathway's draw: the audio pathway is kept this iteration
    sync_rows: torch.Tensor | None  # AVS mask; None when no AVS this forward
    sync: dict[str, torch.Tensor] = field(default_factory=dict)
    sync_audio: torch.Tensor | None = None  # AVS audio features of the current junction, every row
    first_fused: int = len(JUNCTIONS)  # AVS only before the earliest junction audio fused into


class AVSlowFast(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        blocks = stage_blocks(cfg)
        self.has_visual = cfg.pathways in ("avslowfast", "slowfast")
        self.has_audio = cfg.pathways in ("avslowfast", "audio")
        self.fused = self.has_visual and self.has_audio
        self.lateral_stages = [s for s in cfg.fusion_stages if s != "pool5"] if self.fused else []
        self.audio_at_pool5 = self.has_audio and (not self.has_visual or "pool5" in cfg.fusion_stages)
        self.fs_stages = fs_fusion_stages(cfg) if self.has_visual else []
        self.detection = cfg.head == "detection"
        visual_dims = self._build_visual(cfg, blocks) if self.has_visual else []
        audio_dim = 0
        if self.has_audio:
            self.audio = AudioPathway(
                width=round(cfg.width * cfg.beta_a), blocks=blocks, stem_kernel=cfg.audio_stem_kernel,
                res2_stride=cfg.audio_res2_stride, block=cfg.audio_kernels,
            )
            audio_dim = self.audio.out_channels["res5"] if self.audio_at_pool5 else 0
        if self.fused:
            self._build_fusion(cfg)
            self._build_sync(cfg)
        if self.detection:
            self.head = DetectionHead(visual_dims, audio_dim, num_classes=cfg.num_classes, dropout=cfg.dropout)
        else:
            self.head = ClassificationHead(
                sum(visual_dims) + audio_dim, kind=cfg.head, num_classes=cfg.num_classes, num_verbs=cfg.num_verbs,
                num_nouns=cfg.num_nouns, dropout=cfg.dropout,
            )
        # ROT (Sec. 6): a four-way rotation classifier on the pooled visual features
        self.rot_head = nn.Linear(sum(visual_dims), ROTATIONS) if cfg.rot_head else None
        init_weights(self, zero_init_last_bn=cfg.zero_init_last_bn)

    def _build_visual(self, cfg: ModelConfig, blocks: list[int]) -> list[int]:
        """Slow, Fast and the Fast->Slow laterals; returns the widths of the final Slow and Fast maps."""
        dilation = 2 if self.detection else 1
        self.fast = VisualPathway(
            width=round(cfg.width * cfg.beta_f), blocks=blocks, stem_temporal_kernel=5, temporal_kernels=[3, 3, 3, 3],
            temporal_kernel_blocks=cfg.temporal_kernel_blocks, res5_dilation=dilation,
            extra_in={}, nonlocal_stages=[],  # PySlowFast's R101+NL: non-local in Slow only
        )
        self.fs_laterals = nn.ModuleDict({s: self._fast_to_slow(s) for s in self.fs_stages})
        self.slow = VisualPathway(
            width=cfg.width, blocks=blocks, stem_temporal_kernel=1, temporal_kernels=[1, 1, 3, 3],
            temporal_kernel_blocks=cfg.temporal_kernel_blocks,
            extra_in={s: m.out_channels for s, m in self.fs_laterals.items()},
            nonlocal_stages=cfg.nonlocal_stages, num_frames=cfg.num_frames, res5_dilation=dilation,
        )
        return [self.slow.out_channels["res5"], self.fast.out_channels["res5"]]

    def _fast_to_slow(self, junction: str) -> FastToSlow:
        cfg = self.cfg
        return FastToSlow(self.fast.out_channels[junction], ratio=cfg.fs_fusion_ratio, kernel=cfg.fs_fusion_kernel,
                          alpha=cfg.alpha_f)

    def _build_fusion(self, cfg: ModelConfig) -> None:
        self.fusion = get_fusion(cfg.fusion)
        junctions = self.junctions()
        self.av_laterals = nn.ModuleDict({s: self.fusion.build(junctions[s], cfg) for s in self.lateral_stages})
        drop_channels = {s: self.fusion.channels(junctions[s]) for s in self.lateral_stages}
        if self.audio_at_pool5 and cfg.drop_pathway_scope == "laterals+head":
            drop_channels["pool5"] = self.audio.out_channels["res5"]
        self.drop_pathway = DropPathway(cfg.drop_pathway, cfg.drop_pathway_mode, drop_channels)

    def _build_sync(self, cfg: ModelConfig) -> None:
        """AVS heads, and for the authors' "fused" inputs the Fast->Slow convs and audio laterals
        that AVS needs where the network has none it can read (res5 always: no fusion there)."""
        junctions = self.junctions()
        heads, fs, laterals = {}, {}, {}
        for s in cfg.avs_layers:
            j = junctions[s]
            if cfg.avs_inputs == "pooled":
                heads[s] = SyncHead(self.slow.out_channels[s] + j.fast_channels, j.audio_channels,
                                    dim=cfg.avs_dim, mode=cfg.avs_loss)
                continue
            if s not in self.fs_laterals or self._fuses_into_fast(s):  # the fused Slow, audio-free
                fs[s] = self._fast_to_slow(s)
            visual = self.slow.out_channels[s] + (fs.get(s) or self.fs_laterals[s]).out_channels
            if self._lateral_reads_audio_only(s):
                audio = self.fusion.channels(j)
            else:
                laterals[s] = AudioTemporalLateral(j.audio_channels, visual, inner=cfg.afs_channels,
                                                   kernel=cfg.afs_kernel, stride=max(1, j.audio_frames // j.slow_frames))
                audio = visual
            heads[s] = SyncHead(visual, audio, dim=cfg.avs_dim, mode=cfg.avs_loss)
        self.sync_heads = nn.ModuleDict(heads)
        self.sync_fs = nn.ModuleDict(fs)
        self.sync_laterals = nn.ModuleDict(laterals)

    def _fuses_into_fast(self, junction: str) -> bool:
        return junction in self.lateral_stages and self.fusion.into == "fast"

    def _lateral_reads_audio_only(self, junction: str) -> bool:
        return junction in self.lateral_stages and self.fusion.audio_only

    def junctions(self) -> dict[str, Junction]:
        """Sizes at every junction of the fused network, for the fusion type to build from."""
        a_len = self.audio_lengths()
        return {
            s: Junction(
                name=s, audio_channels=self.audio.out_channels[s], audio_frames=a_len[s],
                slow_channels=self.slow.out_channels[s] + (self.fs_laterals[s].out_channels if s in self.fs_laterals else 0),
                fast_channels=self.fast.out_channels[s], slow_frames=self.cfg.num_frames, fast_frames=self.cfg.fast_frames,
            )
            for s in JUNCTIONS
        }

    def audio_lengths(self) -> dict[str, int]:
        """Audio time length after each junction (the stem keeps it; each stage divides it)."""
        length = self.cfg.audio_frames
        out = {"pool1": length}
        for s in RES_STAGES:
            length = (length - 1) // self.audio.strides[s] + 1
            out[s] = length
        return out

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        flow = self._stems(batch)
        for i, junction in enumerate(JUNCTIONS):
            if i > 0:
                self._stage(i - 1, flow)
            if self.fused:
                self._fuse_junction(i, junction, flow)
            elif self.has_visual and junction in self.fs_laterals:
                flow.slow = self.fs_laterals[junction](flow.slow, flow.fast)
        out = self._heads(batch, flow)
        if flow.sync_rows is not None:
            out["sync"] = flow.sync
            out["sync_mask"] = flow.sync_rows
        return out

    def _stems(self, batch: dict[str, torch.Tensor]) -> _Flow:
        clips = (batch["slow"] if self.has_visual else batch["audio"]).shape[0]
        negative = batch.get("audio_negative") if (self.fused and self.training and len(self.sync_heads)) else None
        rows = None
        if negative is not None:
            rows = (sync_mask(batch["audio"], negative, silence_var=self.cfg.avs_silence_var,
                              duplicate_cos=self.cfg.avs_duplicate_cos) if self.cfg.avs_mask
                    else torch.ones(clips, dtype=torch.bool, device=negative.device))
        flow = _Flow(slow=None, fast=None, audio=None, clips=clips,
                     keep=self.drop_pathway.draw() if self.fused else True, sync_rows=rows)
        if self.has_audio:
            flow.audio = self.audio.stem(batch["audio"] if negative is None else torch.cat([batch["audio"], negative]))
        if self.has_visual:
            flow.slow = self.slow.pool1(self.slow.stem(batch["slow"]))
            flow.fast = self.fast.pool1(self.fast.stem(batch["fast"]))
        return flow

    def _stage(self, index: int, flow: _Flow) -> None:
        if self.has_visual:
            flow.slow = self.slow.stages[index](flow.slow)
            flow.fast = self.fast.stages[index](flow.fast)
        if self.has_audio:
            flow.audio = self.audio.stages[index](flow.audio)

    def _fuse_junction(self, i: int, junction: str, flow: _Flow) -> None:
        """One junction of the fused network: AVS on the audio-free features, then audio into
        the pathway the fusion type names (Fast before the Fast->Slow lateral, or Slow after it)."""
        lateral = self.av_laterals[junction] if junction in self.av_laterals else None
        sync_here = flow.sync_rows is not None and junction in self.sync_heads and i <= flow.first_fused
        slow0, fast0, term = flow.slow, flow.fast, None
        if sync_here:
            term = self._sync(junction, flow)
        if lateral is not None and self.fusion.into == "fast":
            flow.fast = self._fuse(junction, lateral, flow, flow.fast, term)
        if junction in self.fs_laterals:
            flow.slow = self.fs_laterals[junction](flow.slow, flow.fast)
        if sync_here and self.cfg.avs_inputs == "fused":
            fused_slow = self.sync_fs[junction](slow0, fast0) if junction in self.sync_fs else flow.slow
            self._score(junction, flow, fused_slow.mean(dim=(2, 3, 4)))
        if lateral is not None and self.fusion.into == "slow":
            flow.slow = self._fuse(junction, lateral, flow, flow.slow, term)
        if lateral is not None and flow.keep:
            flow.first_fused = min(flow.first_fused, i)

    def _sync(self, junction: str, flow: _Flow) -> torch.Tensor | None:
        """AVS audio features of every row (positives and negatives) at `junction`. "pooled"
        scores the pair at once; "fused" keeps the audio for `_score` after the Fast->Slow
        lateral. Returns the fusion lateral's output on the positives when AVS computed it,
        so the lateral runs once."""
        if self.cfg.avs_inputs == "pooled":
            flow.sync_audio = flow.audio.mean(dim=(2, 3))
            visual = torch.cat([flow.slow.mean(dim=(2, 3, 4)), flow.fast.mean(dim=(2, 3, 4))], dim=1)
            self._score(junction, flow, visual)
            return None
        reuse = self._lateral_reads_audio_only(junction)
        features = (self.av_laterals[junction] if reuse else self.sync_laterals[junction])(flow.audio)
        flow.sync_audio = features.flatten(2).mean(dim=2)
        return features[: flow.clips] if reuse else None

    def _score(self, junction: str, flow: _Flow, visual: torch.Tensor) -> None:
        a, n = flow.sync_audio[: flow.clips], flow.sync_audio[flow.clips:]
        scores = self.sync_heads[junction](visual, a, n)
        flow.sync[junction] = scores[flow.sync_rows]

    def _fuse(self, junction: str, lateral: nn.Module, flow: _Flow, visual: torch.Tensor,
              term: torch.Tensor | None) -> torch.Tensor:
        if term is None:
            term = self.fusion.term(lateral, flow.audio[: flow.clips], visual)
        return self.fusion.combine(visual, self.drop_pathway(junction, term, flow.keep))

    def _heads(self, batch: dict[str, torch.Tensor], flow: _Flow) -> dict[str, torch.Tensor]:
        """pool5: each pathway's global average, concatenated by the classification head; the
        detection head pools the visual maps per box instead, and reads the same pooled audio."""
        audio = None
        if self.audio_at_pool5:
            audio = flow.audio[: flow.clips].mean(dim=(2, 3))
            if self.fused and self.cfg.drop_pathway_scope == "laterals+head":
                audio = self.drop_pathway("pool5", audio, flow.keep)
        visual = []
        if self.has_visual and (not self.detection or self.rot_head is not None):
            visual = [flow.slow.mean(dim=(2, 3, 4)), flow.fast.mean(dim=(2, 3, 4))]
        if self.detection:
            out = self.head([flow.slow, flow.fast], audio, batch["boxes"], batch["box_mask"])
        else:
            out = self.head(torch.cat(visual + ([audio] if audio is not None else []), dim=1))
        if self.rot_head is not None:
            out["rot_logits"] = self.rot_head(torch.cat(visual, dim=1))
        return out


class LateEnsemble(nn.Module):
    """"SlowFast+Audio" (Table 6): separate visual and audio models, class scores averaged.

    Each member is trained on its own loss (`member_logits`); `logits` are the log of the
    averaged probabilities so that softmax/sigmoid of them is the ensemble's score.
    """

    def __init__(self, visual: AVSlowFast, audio: AVSlowFast, kind: str):
        super().__init__()
        self.visual = visual
        self.audio = audio
        self.kind = kind

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        members = (self.visual(batch)["logits"], self.audio(batch)["logits"])
        if self.kind == "sigmoid":
            p = (torch.sigmoid(members[0]) + torch.sigmoid(members[1])) / 2
            logits = torch.logit(p, eps=1e-6)
        else:
            logits = torch.logsumexp(torch.stack([m.log_softmax(1) for m in members]), dim=0) - torch.log(torch.tensor(2.0))
        return {"logits": logits, "member_logits": members}


def init_weights(model: nn.Module, *, zero_init_last_bn: bool) -> None:
    """Kaiming-normal convs, unit BN (zero for each residual block's last BN), fc ~ N(0, 0.01)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            zero = getattr(m, "zero_init", False) and zero_init_last_bn
            nn.init.constant_(m.weight, 0.0 if zero else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
