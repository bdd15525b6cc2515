"""Residual building blocks of the Slow, Fast and Audio pathways (Table 1), and the execution
helpers: conv subclasses that compute the plain conv's function faster on some devices."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

HELPERS = ("subsampled", "space_to_depth", "frame_conv")
"""The execution helpers: SubsampledConv2d/3d, SpaceToDepthConv3d, FrameConv3d."""

EXECUTION_HELPERS: dict[str, frozenset[str]] = {"cpu": frozenset(HELPERS)}
"""Which helpers run on which device type; a device type not listed (CUDA, MPS, ...) runs the
plain convs. Each helper is in here where bench/test_helpers.py measured it faster than the
plain conv: on the 2-core AMD EPYC all three. On an Intel Xeon the space-to-depth stem measured
0.5-0.6x (the other two still pay); it stays on so that the committed studies, trained with it,
reproduce exactly; choosing the CPU set per machine is the follow-up (docs/performance.md).
None has been measured on CUDA, where cuDNN picks its own algorithms, so none runs there until
the bench's CUDA groups show one helps (`set_execution_helpers("cuda", [...])` turns one on,
e.g. for that bench)."""


def set_execution_helpers(device_type: str, names: Iterable[str]) -> None:
    """Run exactly the helpers `names` on `device_type` ("cpu", "cuda", ...)."""
    names = frozenset(names)
    unknown = names - set(HELPERS)
    if unknown:
        raise ValueError(f"unknown execution helper(s) {sorted(unknown)}; choose from {', '.join(HELPERS)}")
    EXECUTION_HELPERS[device_type] = names


def helper_runs(name: str, device: torch.device) -> bool:
    return name in EXECUTION_HELPERS.get(device.type, ())


class _SubsampleFirst:
    """A strided 1x1 conv run as "take every s-th position, then a stride-1 1x1 conv".

    Same function, same weights and state-dict keys, same FLOPs (fvcore counts the stride-1 conv
    on the subsampled input). Why: oneDNN's backward of a strided 1x1 conv on the CPU runs 2-4x
    slower than the stride-1 conv on the subsampled view (docs/performance.md), and these are the
    projection shortcuts of every stage's first block.
    """

    _conv = None  # F.conv2d / F.conv3d, set by the concrete classes

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if any(k != 1 for k in self.kernel_size) or any(p != 0 for p in self.padding):
            raise ValueError(f"{type(self).__name__} needs a 1x1 kernel and no padding, got "
                             f"kernel {self.kernel_size}, padding {self.padding}")

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not helper_runs("subsampled", x.device):
            return super()._conv_forward(x, weight, bias)
        if any(s != 1 for s in self.stride):
            x = x[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in self.stride)]
        return type(self)._conv(x, weight, bias, 1, 0, self.dilation, self.groups)


class SubsampledConv2d(_SubsampleFirst, nn.Conv2d):
    _conv = staticmethod(F.conv2d)


class SubsampledConv3d(_SubsampleFirst, nn.Conv3d):
    _conv = staticmethod(F.conv3d)


class SpaceToDepthConv3d(nn.Conv3d):
    """A (k_t x k x k) conv with spatial stride 2 whose training pass on the CPU runs as a
    stride-1 conv over the 2x2 space-to-depth rearrangement of its input (4x the channels, a
    ceil(k/2) kernel that holds the same taps, zero where k is odd), in channels-last.

    Same function and weights (the rearranged kernel is a view of `weight`, so the gradient
    lands on the real taps only); fvcore traces the plain conv. Why: with 3 input and few output
    channels (the Fast stem: 4 at `small`, 8 at R50), oneDNN's weight gradient of the strided
    conv barely vectorises; the rearranged conv trains 1.5x faster at `small`, about even at R50
    (bench/test_helpers.py, docs/performance.md).
    Evaluation, devices without the helper (EXECUTION_HELPERS) and wide stems (>= FEW_CHANNELS
    outputs, where it is slower) use the plain conv.
    """

    FEW_CHANNELS = 16

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.stride[1:] != (2, 2) or self.stride[0] != 1 or self.groups != 1 or self.dilation != (1, 1, 1):
            raise ValueError(f"SpaceToDepthConv3d needs stride (1, 2, 2), no groups or dilation; got "
                             f"stride {self.stride}, groups {self.groups}, dilation {self.dilation}")

    def _rearranged(self) -> bool:
        return (self.out_channels < self.FEW_CHANNELS and helper_runs("space_to_depth", self.weight.device)
                and torch.is_grad_enabled() and self.weight.requires_grad and not torch.jit.is_tracing())

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not self._rearranged() or x.requires_grad:
            return super()._conv_forward(x, weight, bias)
        kt, kh, kw = self.kernel_size
        pt, ph, pw = self.padding
        n, c, _, h, w = x.shape
        ho, wo = (h + 2 * ph - kh) // 2 + 1, (w + 2 * pw - kw) // 2 + 1
        kh2, kw2 = (kh + 1) // 2, (kw + 1) // 2
        # Pad to 2 x (out + k/2 - 1): covers every tap of every output, and is even.
        xp = F.pad(x, (pw, 2 * (wo + kw2 - 1) - w - pw, ph, 2 * (ho + kh2 - 1) - h - ph))
        xs = _space_to_depth(xp).contiguous(memory_format=torch.channels_last_3d)
        ws = _space_to_depth(F.pad(weight, (0, 2 * kw2 - kw, 0, 2 * kh2 - kh)))
        # Back to the default layout: the rest of the network trains faster in it on the CPU.
        return F.conv3d(xs, ws, bias, 1, (pt, 0, 0)).contiguous()


def _space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, 2H, 2W) -> (N, 4C, T, H, W); channel c*4 + 2*i + j holds rows i::2, columns j::2."""
    n, c, t, h, w = x.shape
    return x.view(n, c, t, h // 2, 2, w // 2, 2).permute(0, 1, 4, 6, 2, 3, 5).reshape(n, 4 * c, t, h // 2, w // 2)


class FrameConv3d(nn.Conv3d):
    """A 1 x k x k (spatial-only) conv that, on the CPU, runs as a conv2d over the frames
    (batch N*T) when PyTorch would otherwise pick its unvectorised `slow_conv3d`: batch 1,
    N*C*T*H <= 20480, kernel <= 3x3 (the `use_mkldnn` rule in aten/src/ATen/native/Convolution.cpp).

    Same function, weights and FLOPs; fvcore traces the plain conv. Why: at batch 1 (the R50
    bench, per-clip CPU inference) the narrow Fast-pathway 1x3x3 convs ran 2.8-4.8x slower in
    `slow_conv3d` than as a conv2d over their 32 frames (docs/performance.md). Elsewhere oneDNN's
    conv3d is as fast or faster, so the plain conv stays.
    """

    SLOW_PATH_MAX = 20480

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.kernel_size[0] != 1 or self.stride[0] != 1 or self.padding[0] != 0 or self.dilation[0] != 1:
            raise ValueError(f"FrameConv3d needs a 1 x k x k kernel with no temporal stride, padding or "
                             f"dilation; got kernel {self.kernel_size}, stride {self.stride}, padding {self.padding}")

    def _on_frames(self, x: torch.Tensor) -> bool:
        n, c, t, h, _ = x.shape
        return (helper_runs("frame_conv", x.device) and n == 1 and n * c * t * h <= self.SLOW_PATH_MAX and self.groups == 1
                and max(self.kernel_size[1:]) <= 3 and not torch.jit.is_tracing())

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not self._on_frames(x):
            return super()._conv_forward(x, weight, bias)
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        y = F.conv2d(frames, weight.squeeze(2), bias, self.stride[1:], self.padding[1:], self.dilation[1:])
        layout = torch.channels_last_3d if _channels_last(x) else torch.contiguous_format
        return y.view(n, t, *y.shape[1:]).transpose(1, 2).contiguous(memory_format=layout)


def _channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d)


def conv_bn_relu(conv: nn.Module, channels: int, *, relu: bool = True, zero_init: bool = False) -> nn.Sequential:
    bn = nn.BatchNorm3d(channels) if isinstance(conv, nn.Conv3d) else (
        nn.BatchNorm2d(channels) if isinstance(conv, nn.Conv2d) else nn.BatchNorm1d(channels)
    )
    bn.zero_init = zero_init  # read by init_weights
    layers: list[nn.Module] = [conv, bn]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Bottleneck3d(nn.Module):
    """SlowFast bottleneck: Tx1x1 -> 1x3x3 (spatial stride and dilation here) -> 1x1x1, plus shortcut."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, *, temporal_kernel: int, stride: int,
                 dilation: int = 1):
        super().__init__()
        t, d = temporal_kernel, dilation
        self.a = conv_bn_relu(nn.Conv3d(dim_in, dim_inner, (t, 1, 1), padding=(t // 2, 0, 0), bias=False), dim_inner)
        self.b = conv_bn_relu(
            FrameConv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, d, d),
                        dilation=(1, d, d), bias=False),
            dim_inner,
        )
        self.c = conv_bn_relu(nn.Conv3d(dim_inner, dim_out, 1, bias=False), dim_out, relu=False, zero_init=True)
        self.shortcut = (
            conv_bn_relu(SubsampledConv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False), dim_out, relu=False)
            if dim_in != dim_out or stride != 1
            else None
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.c(self.b(self.a(x))) + identity)


class AudioBottleneck(nn.Module):
    """ResNet bottleneck on a (time x frequency) log-mel: 1x1 -> 3x3 (stride here) -> 1x1."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, *, stride: int):
        super().__init__()
        self.a = conv_bn_relu(nn.Conv2d(dim_in, dim_inner, 1, bias=False), dim_inner)
        self.b = conv_bn_relu(nn.Conv2d(dim_inner, dim_inner, 3, stride=stride, padding=1, bias=False), dim_inner)
        self.c = conv_bn_relu(nn.Conv2d(dim_inner, dim_out, 1, bias=False), dim_out, relu=False, zero_init=True)
        self.shortcut = _audio_shortcut(dim_in, dim_out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.c(self.b(self.a(x))) + identity)


class TimeFrequencyBottleneck(nn.Module):
    """The factorised audio block of res2/res3 (authors' "time-frequency bottleneck v1").

    Two parallel branches read the block input, a 3x1 filter over time and a 1x3 filter over
    frequency, each to the inner width; they are concatenated and a 1x1 conv maps to the output.
    Time and frequency are treated separately because spectrogram statistics are not isotropic.
    """

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, *, stride: int):
        super().__init__()
        self.time = conv_bn_relu(
            nn.Conv2d(dim_in, dim_inner, (3, 1), stride=stride, padding=(1, 0), bias=False), dim_inner
        )
        self.freq = conv_bn_relu(
            nn.Conv2d(dim_in, dim_inner, (1, 3), stride=stride, padding=(0, 1), bias=False), dim_inner
        )
        self.c = conv_bn_relu(nn.Conv2d(2 * dim_inner, dim_out, 1, bias=False), dim_out, relu=False, zero_init=True)
        self.shortcut = _audio_shortcut(dim_in, dim_out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.c(torch.cat([self.time(x), self.freq(x)], dim=1)) + identity)


class FactorisedBottleneck(nn.Module):
    """The audio res2/res3 block as Table 1 draws it: 1x1 -> [3x1, 1x3] -> 1x1.

    The middle pair reads the reduced features in parallel, a 3x1 filter over time and a 1x3
    filter over frequency, summed before BN and ReLU, the way the authors' code reads the
    stem's "[9x1, 1x9]" in the same table (their tf_bottleneck_transform_v2). Unlike v1
    (`TimeFrequencyBottleneck`) it costs less than the 3x3 bottleneck it replaces, as Sec. 3.4
    says factorising does.
    """

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, *, stride: int):
        super().__init__()
        self.a = conv_bn_relu(nn.Conv2d(dim_in, dim_inner, 1, bias=False), dim_inner)
        self.time = nn.Conv2d(dim_inner, dim_inner, (3, 1), stride=stride, padding=(1, 0), bias=False)
        self.freq = nn.Conv2d(dim_inner, dim_inner, (1, 3), stride=stride, padding=(0, 1), bias=False)
        self.b = nn.Sequential(nn.BatchNorm2d(dim_inner), nn.ReLU(inplace=True))
        self.c = conv_bn_relu(nn.Conv2d(dim_inner, dim_out, 1, bias=False), dim_out, relu=False, zero_init=True)
        self.shortcut = _audio_shortcut(dim_in, dim_out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        y = self.a(x)
        return self.relu(self.c(self.b(self.time(y) + self.freq(y))) + identity)


def _audio_shortcut(dim_in: int, dim_out: int, stride: int) -> nn.Module | None:
    if dim_in == dim_out and stride == 1:
        return None
    return conv_bn_relu(SubsampledConv2d(dim_in, dim_out, 1, stride=stride, bias=False), dim_out, relu=False)


class NonLocal3d(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al.); keys and values are max-pooled 2x2x2
    (1x2x2 when the clip has an odd number of frames), as PySlowFast's R101+NL configs."""

    def __init__(self, dim: int, dim_inner: int | None = None, *, temporal_pool: int = 2):
        super().__init__()
        inner = dim_inner or dim // 2
        self.theta = nn.Conv3d(dim, inner, 1)
        self.phi = nn.Conv3d(dim, inner, 1)
        self.g = nn.Conv3d(dim, inner, 1)
        self.pool = nn.MaxPool3d((temporal_pool, 2, 2), (temporal_pool, 2, 2))
        self.out = conv_bn_relu(nn.Conv3d(inner, dim, 1), dim, relu=False, zero_init=True)
        self.scale = inner**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        q = self.theta(x).flatten(2)  # (B, C', THW)
        k = self.phi(self.pool(x)).flatten(2)
        v = self.g(self.pool(x)).flatten(2)
        attn = torch.softmax(torch.einsum("bcn,bcm->bnm", q, k) * self.scale, dim=-1)
        y = torch.einsum("bnm,bcm->bcn", attn, v).reshape(b, -1, t, h, w)
        return x + self.out(y)
