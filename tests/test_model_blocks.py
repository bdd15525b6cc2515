"""The execution helpers of avsf/model/blocks.py compute exactly what the plain convs compute."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avsf.model.blocks import FrameConv3d, SpaceToDepthConv3d, SubsampledConv2d, SubsampledConv3d


def _grads(conv: nn.Module, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    conv.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(x.requires_grad)
    y = conv(x)
    y.backward(g)
    return (y.detach(), conv.weight.grad) + ((x.grad,) if x.requires_grad else ())


@pytest.mark.parametrize("kernel,size", [((5, 7, 7), 32), ((1, 7, 7), 33), ((3, 4, 4), 18), ((1, 1, 1), 9)])
def test_space_to_depth_conv_trains_as_the_plain_conv(kernel, size):
    torch.manual_seed(0)
    pad = tuple(k // 2 for k in kernel)
    ours = SpaceToDepthConv3d(3, 4, kernel, stride=(1, 2, 2), padding=pad, bias=False)
    plain = nn.Conv3d(3, 4, kernel, stride=(1, 2, 2), padding=pad, bias=False)
    plain.weight.data.copy_(ours.weight.data)
    x = torch.randn(2, 3, 6, size, size + 3)
    assert ours._rearranged(), "the rearranged path must be the one under test"
    g = torch.randn_like(plain(x))
    got, want = _grads(ours, x, g), _grads(plain, x, g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_space_to_depth_conv_uses_the_plain_conv_where_it_is_slower_or_traced():
    wide = SpaceToDepthConv3d(3, SpaceToDepthConv3d.FEW_CHANNELS, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3))
    narrow = SpaceToDepthConv3d(3, 4, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3))
    assert not wide._rearranged()
    with torch.no_grad():
        assert not narrow._rearranged()
    with pytest.raises(ValueError, match="stride"):
        SpaceToDepthConv3d(3, 4, 3, stride=1)


@pytest.mark.parametrize("cls,dims", [(SubsampledConv3d, 3), (SubsampledConv2d, 2)])
def test_subsampled_conv_equals_the_strided_conv(cls, dims):
    torch.manual_seed(0)
    stride = (1, 2, 2) if dims == 3 else (2, 2)
    ours = cls(6, 5, 1, stride=stride, bias=False)
    plain = (nn.Conv3d if dims == 3 else nn.Conv2d)(6, 5, 1, stride=stride, bias=False)
    plain.weight.data.copy_(ours.weight.data)
    x = torch.randn((2, 6, 3, 9, 8) if dims == 3 else (2, 6, 9, 8)).requires_grad_()
    g = torch.randn_like(plain(x))
    got, want = _grads(ours, x, g), _grads(plain, x, g)
    assert len(got) == len(want) == 3  # output, weight and input gradients
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert ours.state_dict().keys() == plain.state_dict().keys()
    with pytest.raises(ValueError, match="1x1"):
        cls(6, 5, 3, stride=2)


@pytest.mark.parametrize("shape,stride,on_frames", [((1, 8, 6, 12, 12), 1, True), ((1, 8, 6, 12, 13), 2, True),
                                                    ((2, 8, 6, 12, 12), 1, False)])
def test_frame_conv_equals_the_spatial_conv3d(shape, stride, on_frames):
    torch.manual_seed(0)
    kw = dict(stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
    ours = FrameConv3d(8, 5, (1, 3, 3), **kw)
    plain = nn.Conv3d(8, 5, (1, 3, 3), **kw)
    plain.weight.data.copy_(ours.weight.data)
    x = torch.randn(shape).requires_grad_()
    assert ours._on_frames(x) is on_frames
    g = torch.randn_like(plain(x))
    got, want = _grads(ours, x, g), _grads(plain, x, g)
    assert len(got) == len(want) == 3
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert got[0].is_contiguous()
    with pytest.raises(ValueError, match="1 x k x k"):
        FrameConv3d(8, 5, (3, 3, 3))
