"""The execution helpers of avsf/model/blocks.py against the plain conv they replace: one conv,
forward + backward (the gradients a training step needs), at the shapes where they matter.

Groups `helper-<helper>-<where>`, entries `avsf-helper` and `plain-conv` (same weights, same
input). Input gradients are computed except for the stem, whose input is the clip. This is the
evidence behind docs/performance.md's "What made the training step faster" table.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avsf.model.blocks import FrameConv3d, SpaceToDepthConv3d, SubsampledConv3d

# name: (helper class, plain class, conv arguments, input shape, input needs a gradient, rounds)
CASES = {
    "subsampled-r50-slow-res3": (SubsampledConv3d, nn.Conv3d, dict(in_channels=320, out_channels=512, kernel_size=1,
                                                                   stride=(1, 2, 2)), (1, 320, 8, 56, 56), True, 3),
    "subsampled-small-slow-res5": (SubsampledConv3d, nn.Conv3d, dict(in_channels=384, out_channels=512, kernel_size=1,
                                                                     stride=(1, 2, 2)), (16, 384, 4, 4, 4), True, 5),
    "spacetodepth-small-fast-stem": (SpaceToDepthConv3d, nn.Conv3d, dict(in_channels=3, out_channels=4, kernel_size=(5, 7, 7),
                                                                         stride=(1, 2, 2), padding=(2, 3, 3)),
                                     (16, 3, 16, 64, 64), False, 3),
    "spacetodepth-r50-fast-stem": (SpaceToDepthConv3d, nn.Conv3d, dict(in_channels=3, out_channels=8, kernel_size=(5, 7, 7),
                                                                       stride=(1, 2, 2), padding=(2, 3, 3)),
                                   (1, 3, 32, 224, 224), False, 5),
    "frame-r50-fast-res2": (FrameConv3d, nn.Conv3d, dict(in_channels=8, out_channels=8, kernel_size=(1, 3, 3),
                                                         padding=(0, 1, 1)), (1, 8, 32, 56, 56), True, 5),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", ["avsf-helper", "plain-conv"])
def test_helper(benchmark, case, impl, is_smoke):
    helper, plain, kwargs, shape, input_grad, rounds = CASES[case]
    torch.manual_seed(0)
    conv = (helper if impl == "avsf-helper" else plain)(bias=False, **kwargs)
    x = torch.randn(shape).requires_grad_(input_grad)
    g = torch.randn_like(conv(x))

    def step():
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).backward(g)

    benchmark.group = f"helper-{case}"
    benchmark.pedantic(step, rounds=1 if is_smoke else rounds, warmup_rounds=0 if is_smoke else 1, iterations=1)
    benchmark.extra_info.update({"impl": impl, "helper": helper.__name__, "input_shape": list(shape),
                                 "threads": torch.get_num_threads()})
