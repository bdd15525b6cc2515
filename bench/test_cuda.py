"""CUDA variants (skipped cleanly without a GPU): ours with bf16 autocast + channels_last_3d +
torch.compile against pytorchvideo in fp32 eager, same groups' configs; and DALI GPU decode.

Groups `<scale>-eval-cuda`, `<scale>-train-cuda`; entries `avsf-bf16-cl3d-compile`,
`avsf-fp32-eager` and `pytorchvideo-fp32-eager`. Memory: torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avsf.eval.inference import to_device
from avsf.model.fuse import to_channels_last
from bench import pairs
from bench.conftest import PeakMemory, loadavg, stat
from bench.test_models import built, check_flops

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ROUNDS = {"small": 20, "r50": 10}


def _variant(b: dict, impl: str, train: bool):
    import copy

    if impl.startswith("pytorchvideo"):
        model = copy.deepcopy(b["peer"]).cuda().train(train)
        return model, (lambda x: model(pairs.peer_inputs(x))), False, False
    model = copy.deepcopy(b["ours"]).cuda().train(train)
    if impl == "avsf-fp32-eager":
        return model, (lambda x: model(x)["logits"]), False, False
    to_channels_last(model, video_only=True)  # as `avsf train` does with train.channels_last
    compiled = torch.compile(model)
    return model, (lambda x: compiled(x)["logits"]), True, True


def _sync_timed(fn):
    def run():
        fn()
        torch.cuda.synchronize()

    return run


@pytest.mark.parametrize("scale", ["small", "r50"])
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("impl", ["avsf-bf16-cl3d-compile", "avsf-fp32-eager", "pytorchvideo-fp32-eager"])
def test_cuda_model(benchmark, scale, mode, impl, is_smoke):
    b = built(scale)
    check_flops(b, scale)
    p = b["pair"]
    batch = 8 if scale == "r50" else 32
    model, forward, bf16, cl = _variant(b, impl, mode == "train")
    x = to_device(pairs.inputs(p.model_cfg, p.crop, batch), torch.device("cuda"), cl)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9) if mode == "train" else None

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            if opt is None:
                with torch.inference_mode():
                    return forward(x)
            loss = nn.functional.cross_entropy(forward(x).float(), x["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    benchmark.group = f"{scale}-{mode}-cuda"
    with PeakMemory("cuda") as mem:
        benchmark.pedantic(_sync_timed(step), rounds=1 if is_smoke else ROUNDS[scale],
                           warmup_rounds=1 if is_smoke else 3, iterations=1)
    gmac = b["gflops"]["pytorchvideo" if impl.startswith("pytorchvideo") else "avsf"]
    work = 2 * gmac * batch * (3 if mode == "train" else 1)
    benchmark.extra_info.update({
        "impl": impl, "scale": scale, "mode": mode, "batch_size": batch, "device": torch.cuda.get_device_name(0),
        "fvcore_gflops_per_clip": round(gmac, 4), "achieved_gflops_per_s": round(work / stat(benchmark), 1),
        "clips_per_s": round(batch / stat(benchmark), 2), "loadavg_end": loadavg(), **mem.info(),
    })


def test_loader_dali_gpu(benchmark, is_smoke):
    from avsf.data.dali_loader import dali_gpu_available

    if not dali_gpu_available():
        pytest.skip("DALI GPU operators are not available")
    from bench.test_data import _loader_entry

    benchmark.group = "data-small-train-gpu"
    _loader_entry(benchmark, "dali", "gpu", is_smoke)
