"""CUDA groups (skipped cleanly without a GPU): avsf vs pytorchvideo at equal precision, the R50
compile time, and DALI GPU vs DALI CPU vs the reference loader at the paper geometry.

Groups `r50-<mode>-cuda-<precision>` (mode eval | train; precision fp32 | bf16 | bf16-cl3d =
bf16 autocast + channels_last_3d), entries `avsf` and `pytorchvideo`: the paper's R50 AVSlowFast
8x8 at 224 (bench/pairs.py), batch 8 (2 in the dry run), each model as its users run it (avsf eval with BatchNorm
folded, as `avsf eval` does; avsf train with channels-last weights where the precision says so,
as `avsf train` does). fp32 means PyTorch's defaults (TF32 convolutions). The `avsf` entry
records `interleaved_speedup` (pairs of calls, order alternating, like the CPU groups) and each
entry its achieved TFLOP/s beside the GPU's bf16 GEMM rate measured in the same session
(`gemm_tflops`, an 8192^3 bf16 matmul).

`r50-train-cuda-compile`: avsf bf16-cl3d with `avsf.model.compile_model` (train.compile): the
seconds the first step takes (compilation) and the step time after it, beside eager.

`data-paper-cuda`: clips/s of DALI GPU decode, DALI CPU and the reference loader at the paper
geometry (`avsf train --scale paper`'s clips, short side 256-320, crop 224, batch 8, 8 threads)
on the `gpu` synthetic set (>= 128 px, which NVDEC needs); skipped while that set is missing.

Dry run (bench/gpu_check.py without a GPU): AVSF_BENCH_DEVICE=cpu and AVSF_BENCH_CUDA_SCALE=tiny
run every entry's code on the CPU at the tiny pair and tiny data, so the check is exercised
end to end where no GPU is; its numbers mean nothing.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from avsf.eval.inference import to_device
from avsf.model.fuse import fuse_for_inference, to_channels_last
from bench import pairs
from bench.conftest import PeakMemory, loadavg, stat
from bench.test_models import built, check_flops, interleaved_speedup, timed_call, work_flop

DEVICE = os.environ.get("AVSF_BENCH_DEVICE", "cuda")
SCALE = os.environ.get("AVSF_BENCH_CUDA_SCALE", "r50")

pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")

PRECISIONS = {"fp32": (False, False), "bf16": (True, False), "bf16-cl3d": (True, True)}  # (bf16, channels_last)
BATCH = 8 if DEVICE == "cuda" else 2  # the dry run's CPU runs the code at a small batch
# GPU timings scatter little: 8 rounds per entry, 7-11 interleaved pairs; the whole file must
# fit bench/gpu_check.py's 240 s with the R50 builds, FLOP counts, compilation and loaders.
ROUNDS, WARMUP = 8, 2
INTERLEAVED = (7, 11)
GEMM_N = 8192 if DEVICE == "cuda" else 512


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _timed(fn) -> float:
    return timed_call(fn, sync)


_GEMM: dict = {}


@pytest.fixture(scope="module")
def bf16_gemm() -> dict:
    """The device's bf16 GEMM rate: best of 10 GEMM_N^3 matmuls after 3 warm-ups (2 n^3 FLOPs each)."""
    if not _GEMM:
        a = torch.randn(GEMM_N, GEMM_N, device=DEVICE, dtype=torch.bfloat16)
        b = torch.randn(GEMM_N, GEMM_N, device=DEVICE, dtype=torch.bfloat16)
        call = lambda: a @ b  # noqa: E731
        for _ in range(3):
            call()
        best = min(_timed(call) for _ in range(10))
        _GEMM.update({"n": GEMM_N, "dtype": "bfloat16", "call": call, "flop": 2 * GEMM_N**3,
                      "tflops": 2 * GEMM_N**3 / best / 1e12})
    return _GEMM


def _model(b: dict, impl: str, mode: str, channels_last: bool) -> nn.Module:
    model = copy.deepcopy(b["peer"] if impl == "pytorchvideo" else b["ours"]).to(DEVICE).train(mode == "train")
    if impl == "avsf" and mode == "eval":
        model = fuse_for_inference(model)  # as avsf eval runs it
    if channels_last:
        model = to_channels_last(model, video_only=True) if impl == "avsf" else model.to(
            memory_format=torch.channels_last_3d)
    return model


def cuda_call(b: dict, impl: str, mode: str, precision: str, x: dict):
    """One eval forward or training step of `impl` at `precision`, on its own copy of the model."""
    bf16, channels_last = PRECISIONS[precision]
    model = _model(b, impl, mode, channels_last)
    forward = (lambda: model(pairs.peer_inputs(x))) if impl == "pytorchvideo" else (lambda: model(x)["logits"])
    autocast = lambda: torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
    if mode == "eval":
        def call():
            with torch.inference_mode(), autocast():
                forward()
        return call
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def step():
        with autocast():
            loss = nn.functional.cross_entropy(forward().float(), x["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _inputs(b: dict, channels_last: bool) -> dict:
    p = b["pair"]
    return to_device(pairs.inputs(p.model_cfg, p.crop, BATCH), torch.device(DEVICE), channels_last)


def _rates(b: dict, impl: str, mode: str, seconds: float, gemm: dict) -> dict:
    work = work_flop(b, impl, mode) / b["pair"].batch_size * BATCH  # FLOPs of one call at BATCH
    tflops = work / seconds / 1e12
    return {"achieved_tflops": _sig(tflops), "gemm_tflops": _sig(gemm["tflops"]),
            "pct_of_gemm": _sig(100 * tflops / gemm["tflops"]), "clips_per_s": _sig(BATCH / seconds)}


def _sig(x: float) -> float:
    """4 significant digits (a dry run's CPU rates are far below 0.01 TFLOP/s)."""
    return float(f"{x:.4g}")


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("impl", ["avsf", "pytorchvideo"])
def test_model_cuda(benchmark, precision, mode, impl, bf16_gemm, is_smoke):
    b = built(SCALE)
    check_flops(b, SCALE)
    x = _inputs(b, PRECISIONS[precision][1])
    benchmark.group = f"{SCALE}-{mode}-cuda-{precision}"
    with PeakMemory("cuda" if DEVICE == "cuda" else "cpu") as mem:
        benchmark.pedantic(_synced(cuda_call(b, impl, mode, precision, x)), rounds=1 if is_smoke else ROUNDS,
                           warmup_rounds=1 if is_smoke else WARMUP, iterations=1)
    benchmark.extra_info.update({"impl": impl, "scale": SCALE, "mode": mode, "precision": precision, "batch_size": BATCH,
                                 "device": _device_name(), "fvcore_gflops_per_clip": round(b["gflops"][impl], 4),
                                 **_rates(b, impl, mode, stat(benchmark), bf16_gemm), "loadavg_end": loadavg(),
                                 **mem.info()})
    if impl == "avsf":
        rounds = (1, 1) if is_smoke else INTERLEAVED
        benchmark.extra_info.update(interleaved_speedup(
            cuda_call(b, "avsf", mode, precision, x), cuda_call(b, "pytorchvideo", mode, precision, x), rounds,
            1 if is_smoke else WARMUP, work_flop(b, "avsf", mode) / b["pair"].batch_size * BATCH,
            gemm=bf16_gemm["call"], gemm_flop=bf16_gemm["flop"], sync=sync))


def _synced(fn):
    def run():
        fn()
        sync()

    return run


def _device_name() -> str:
    return torch.cuda.get_device_name(0) if DEVICE == "cuda" else f"cpu (dry run, {torch.get_num_threads()} threads)"


COMPILE_BUDGET_S = 60.0  # issue 11: compiles within a minute, or train.compile stays opt-in


def test_r50_compile_cuda(benchmark, bf16_gemm, is_smoke):
    """train.compile's regional compilation of the R50 model: compile seconds, then steps."""
    try:
        from avsf.model import compile_model
    except ImportError:
        pytest.skip("avsf.model.compile_model is not on this branch yet")
    b = built(SCALE)
    x = _inputs(b, True)
    eager = cuda_call(b, "avsf", "train", "bf16-cl3d", x)
    # The dry run traces with dynamo only (no C++ toolchain, seconds): the code path, not the speed.
    backend = "inductor" if DEVICE == "cuda" else "eager"
    compiled_b = {**b, "ours": compile_model(copy.deepcopy(b["ours"]), backend=backend)}
    step = cuda_call(compiled_b, "avsf", "train", "bf16-cl3d", x)
    first = _timed(step)  # compiles every region (train mode)
    benchmark.group = f"{SCALE}-train-cuda-compile"
    benchmark.pedantic(_synced(step), rounds=1 if is_smoke else ROUNDS, warmup_rounds=1 if is_smoke else 2,
                       iterations=1)
    eager_s = sorted(_timed(eager) for _ in range(1 if is_smoke else ROUNDS))[(1 if is_smoke else ROUNDS) // 2]
    benchmark.extra_info.update({
        "impl": "avsf-bf16-cl3d-compile", "scale": SCALE, "mode": "train", "batch_size": BATCH, "device": _device_name(),
        "backend": backend,
        "compile_s": round(first, 1), "compile_budget_s": COMPILE_BUDGET_S, "within_budget": first <= COMPILE_BUDGET_S,
        "eager_median_s": eager_s, "speedup_over_eager": round(eager_s / stat(benchmark), 3),
        **_rates(b, "avsf", "train", stat(benchmark), bf16_gemm)})


# ----------------------------------------------------------------------------- data
def paper_loader_cfg(loader: str, device: str):
    """The paper geometry on the >= 128 px `gpu` synthetic set (tiny data in the dry run)."""
    from avsf.config import ConfigError, build_config

    threads = 8 if DEVICE == "cuda" else 2
    overrides = {"data.loader": loader, "data.device": device, "data.num_threads": threads, "train.batch_size": BATCH}
    if SCALE == "r50":
        overrides["data.synth_scale"] = "gpu"
    try:
        return build_config(scale="paper" if SCALE == "r50" else "tiny", overrides=overrides)
    except ConfigError as e:
        pytest.skip(f"no >= 128 px synthetic set to decode on the GPU ({e})")


@pytest.mark.parametrize("loader", ["dali-gpu", "dali-cpu", "reference"])
def test_loader_paper(benchmark, loader, is_smoke):
    from bench.test_data import loader_entry

    name, _, device = loader.partition("-")
    if name == "dali":
        pytest.importorskip("nvidia.dali", reason="DALI is not installed")
    if device == "gpu":
        from avsf.data.dali_loader import dali_gpu_available

        if not dali_gpu_available():
            pytest.skip("DALI GPU operators are not available")
    benchmark.group = "data-paper-cuda"
    loader_entry(benchmark, paper_loader_cfg(name, device or "cpu"), is_smoke)
