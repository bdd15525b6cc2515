"""The AVSlowFast network: one class for SlowFast, AVSlowFast and the Audio-only model.

Which pathways exist, where audio fuses and how, DropPathway and AV synchronisation are all
read from `ModelConfig`; there is no per-variant subclass.
"""

from __future__ import annotations

import torch
from torch import nn

from avsf.config import ModelConfig
from avsf.model.droppathway import DropPathway
from avsf.model.fusions import Junction, get_fusion
from avsf.model.laterals import FastToSlow
from avsf.model.heads import ClassificationHead, SyncHead
from avsf.model.pathways import RES_STAGES, AudioPathway, VisualPathway

JUNCTIONS = ("pool1", "res2", "res3", "res4", "res5")
STAGE_DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}


def stage_blocks(cfg: ModelConfig) -> list[int]:
    return list(cfg.stage_blocks) if cfg.stage_blocks else STAGE_DEPTHS[cfg.depth]


def fs_fusion_stages(cfg: ModelConfig) -> list[str]:
    """Fast->Slow laterals: SlowFast fuses after pool1..res4; the authors' AVSlowFast only after
    res3 and res4, plus any earlier junction where audio also fuses."""
    if cfg.fs_fusion_stages is not None:
        return list(cfg.fs_fusion_stages)
    if cfg.pathways == "slowfast":
        return ["pool1", "res2", "res3", "res4"]
    early = [s for s in ("pool1", "res2") if s in cfg.fusion_stages]
    return early + ["res3", "res4"]


class AVSlowFast(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        blocks = stage_blocks(cfg)
        self.has_visual = cfg.pathways in ("avslowfast", "slowfast")
        self.has_audio = cfg.pathways in ("avslowfast", "audio")
        fused = self.has_visual and self.has_audio
        self.lateral_stages = [s for s in cfg.fusion_stages if s != "pool5"] if fused else []
        self.audio_at_pool5 = self.has_audio and (not self.has_visual or "pool5" in cfg.fusion_stages)
        self.fs_stages = fs_fusion_stages(cfg) if self.has_visual else []
        head_dim = 0

        if self.has_visual:
            w_fast = round(cfg.width * cfg.beta_f)
            self.fast = VisualPathway(
                width=w_fast, blocks=blocks, stem_temporal_kernel=5, temporal_kernels=[3, 3, 3, 3],
                temporal_kernel_blocks=cfg.temporal_kernel_blocks,
                extra_in={}, nonlocal_stages=[],  # PySlowFast's R101+NL: non-local in Slow only
            )
            fast_ch = self.fast.out_channels
            self.fs_laterals = nn.ModuleDict({
                s: FastToSlow(fast_ch[s], ratio=cfg.fs_fusion_ratio, kernel=cfg.fs_fusion_kernel, alpha=cfg.alpha_f)
                for s in self.fs_stages
            })
            self.slow = VisualPathway(
                width=cfg.width, blocks=blocks, stem_temporal_kernel=1, temporal_kernels=[1, 1, 3, 3],
                temporal_kernel_blocks=cfg.temporal_kernel_blocks,
                extra_in={s: m.out_channels for s, m in self.fs_laterals.items()},
                nonlocal_stages=cfg.nonlocal_stages, num_frames=cfg.num_frames,
            )
            head_dim += self.slow.out_channels["res5"] + fast_ch["res5"]

        if self.has_audio:
            w_audio = round(cfg.width * cfg.beta_a)
            factorised = {"res2", "res3"} if cfg.audio_kernels == "factorised" else set()
            self.audio = AudioPathway(
                width=w_audio, blocks=blocks, stem_kernel=cfg.audio_stem_kernel,
                res2_stride=cfg.audio_res2_stride, factorised_stages=factorised,
            )
            if self.audio_at_pool5:
                head_dim += self.audio.out_channels["res5"]

        if fused:
            self.fusion = get_fusion(cfg.fusion)
            junctions = self.junctions()
            self.av_laterals = nn.ModuleDict({s: self.fusion.build(junctions[s], cfg) for s in self.lateral_stages})
            drop_channels = {s: self.fusion.channels(junctions[s]) for s in self.lateral_stages}
            if self.audio_at_pool5:
                drop_channels["pool5"] = self.audio.out_channels["res5"]
            self.drop_pathway = DropPathway(cfg.drop_pathway, cfg.drop_pathway_mode, drop_channels)
            self.sync_heads = nn.ModuleDict({
                s: SyncHead(
                    self.slow.out_channels[s] + self.fast.out_channels[s], self.audio.out_channels[s],
                    dim=cfg.avs_dim, mode=cfg.avs_loss,
                )
                for s in cfg.avs_layers
            })

        self.head = ClassificationHead(
            head_dim, kind=cfg.head, num_classes=cfg.num_classes, num_verbs=cfg.num_verbs,
            num_nouns=cfg.num_nouns, dropout=cfg.dropout,
        )
        init_weights(self, zero_init_last_bn=cfg.zero_init_last_bn)

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
        fused = self.has_visual and self.has_audio
        keep = self.drop_pathway.draw() if fused else True
        negative = batch.get("audio_negative") if (fused and self.training and len(self.sync_heads)) else None

        if self.has_audio:
            audio_in = batch["audio"] if negative is None else torch.cat([batch["audio"], negative])
            audio = self.audio.stem(audio_in)
        if self.has_visual:
            slow = self.slow.pool1(self.slow.stem(batch["slow"]))
            fast = self.fast.pool1(self.fast.stem(batch["fast"]))

        sync: dict[str, torch.Tensor] = {}
        first_fused = len(JUNCTIONS)  # AVS only before the earliest junction audio fused into
        for i, junction in enumerate(JUNCTIONS):
            if i > 0:
                if self.has_visual:
                    slow = self.slow.stages[i - 1](slow)
                    fast = self.fast.stages[i - 1](fast)
                if self.has_audio:
                    audio = self.audio.stages[i - 1](audio)
            if not fused:
                if self.has_visual and junction in self.fs_laterals:
                    slow = self.fs_laterals[junction](slow, fast)
                continue
            a_pos = audio[: batch["audio"].shape[0]]
            if negative is not None and junction in self.sync_heads and i <= first_fused:
                visual = torch.cat([slow.mean(dim=(2, 3, 4)), fast.mean(dim=(2, 3, 4))], dim=1)
                a_neg = audio[a_pos.shape[0]:]
                sync[junction] = self.sync_heads[junction](visual, a_pos.mean(dim=(2, 3)), a_neg.mean(dim=(2, 3)))
            lateral = self.av_laterals[junction] if junction in self.lateral_stages else None
            if lateral is not None and self.fusion.into == "fast":
                fast = self._fuse(junction, lateral, a_pos, fast, keep)
            if junction in self.fs_laterals:
                slow = self.fs_laterals[junction](slow, fast)
            if lateral is not None and self.fusion.into == "slow":
                slow = self._fuse(junction, lateral, a_pos, slow, keep)
            if lateral is not None and keep:
                first_fused = min(first_fused, i)

        pooled = []
        if self.has_visual:
            pooled += [slow.mean(dim=(2, 3, 4)), fast.mean(dim=(2, 3, 4))]
        if self.audio_at_pool5:
            a = audio[: batch["audio"].shape[0]].mean(dim=(2, 3))
            pooled.append(self.drop_pathway("pool5", a, keep) if fused else a)
        out = self.head(torch.cat(pooled, dim=1))
        if sync:
            out["sync"] = sync
        return out


    def _fuse(self, junction: str, lateral: nn.Module, audio: torch.Tensor, visual: torch.Tensor, keep: bool):
        term = self.fusion.term(lateral, audio, visual)
        return self.fusion.combine(visual, self.drop_pathway(junction, term, keep))


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
