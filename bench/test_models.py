"""avsf vs pytorchvideo 0.1.5: eval forward and one training step, same configuration.

Groups `<scale>-eval` and `<scale>-train` (scale: tiny, small, r50 = the paper's R50 AVSlowFast
8x8 at 224). Eval entries: `avsf` (ours with avsf.model.fuse: conv weights channels-last, BN
folded into the convs) and `avsf-plain` (the bare model, to show what those are worth). Train
entries: `avsf` (as `avsf train` runs it: conv weights channels-last only on CUDA, where
`train.channels_last` applies; on this CPU channels-last slows the R50 backward) and
`avsf-channels-last` (channels-last weights on any device, to show what they are worth); and
`pytorchvideo` (as published, fp32 eager). Before any timing, the two models' fvcore FLOPs are asserted equal
within bench.pairs.FLOP_TOLERANCE (non-audio part within 0.1%, 0.5% at R50).

Both get the same conditions: same threads, same input tensors, eval under torch.inference_mode,
training = forward + cross-entropy + backward + SGD step (momentum 0.9, weight decay 1e-4).
The `avsf` entry of each group also records `interleaved_speedup` (avsf and pytorchvideo calls
in neighbouring pairs, which goes first alternating; enough pairs for a stable median, with its
95 % interval; see `interleaved_speedup`), the ratio the speed goals are judged on.
"""

from __future__ import annotations

import copy
import math
import statistics
import time

import pytest
import torch
from torch import nn

from bench import pairs
from bench.conftest import GEMM_N, PeakMemory, loadavg, stat
from avsf.model import build_model
from avsf.model.fuse import fuse_for_inference, to_channels_last

ROUNDS = {  # (eval rounds, train rounds, warm-up rounds): short entries get more of both
    "tiny": (20, 30, 3),
    "small": (8, 8, 2),
    "r50": (3, 3, 1),
}
NONAUDIO_TOL = {"tiny": 1e-3, "small": 1e-3, "r50": 5e-3}

_BUILT: dict[str, dict] = {}


def built(scale: str) -> dict:
    """Both models for a scale, built once, FLOPs checked (the check fails the entry, not timing)."""
    if scale in _BUILT:
        return _BUILT[scale]
    pytest.importorskip("pytorchvideo", reason="pip install -e .[bench] (pytorchvideo==0.1.5)")
    torch.manual_seed(0)
    p = pairs.pair(scale)
    m = p.model_cfg
    ours = build_model(m)
    peer = pairs.build_peer(m, p.crop)
    g_ours, a_ours = pairs.avsf_gflops(m, p.crop, ours)
    g_peer, a_peer = pairs.peer_gflops(peer, m, p.crop)
    entry = {"pair": p, "ours": ours, "peer": peer, "gflops": {"avsf": g_ours, "pytorchvideo": g_peer},
             "audio_gflops": {"avsf": a_ours, "pytorchvideo": a_peer},
             "flops_ratio": g_ours / g_peer, "nonaudio_ratio": (g_ours - a_ours) / (g_peer - a_peer)}
    _BUILT[scale] = entry
    return entry


def check_flops(b: dict, scale: str) -> None:
    assert abs(b["nonaudio_ratio"] - 1) <= NONAUDIO_TOL[scale], (
        f"{scale}: visual+fusion+head FLOPs differ: avsf/pytorchvideo = {b['nonaudio_ratio']:.4f}")
    assert abs(b["flops_ratio"] - 1) <= pairs.FLOP_TOLERANCE, (
        f"{scale}: total FLOPs differ: avsf {b['gflops']['avsf']:.3f} vs pytorchvideo "
        f"{b['gflops']['pytorchvideo']:.3f} GFLOPs (tolerance {pairs.FLOP_TOLERANCE:.0%})")


def _gmac(b: dict, impl: str) -> float:
    return b["gflops"]["avsf" if impl.startswith("avsf") else "pytorchvideo"]


def work_flop(b: dict, impl: str, mode: str) -> float:
    """FLOPs of one call. fvcore counts a multiply-add as one FLOP; the GEMM rate counts 2 n^3.
    Compare like with like: 2 x fvcore count. A training step ~ 3x the forward (fwd + bwd)."""
    return 2 * _gmac(b, impl) * 1e9 * b["pair"].batch_size * (3 if mode == "train" else 1)


def _info(benchmark, b, impl: str, mode: str, gemm: dict, mem: PeakMemory) -> None:
    p = b["pair"]
    gmac = _gmac(b, impl)
    work = work_flop(b, impl, mode)
    median = stat(benchmark, "median")
    rate = work / median / 1e9
    benchmark.extra_info.update({
        "impl": impl, "scale": p.scale, "mode": mode, "batch_size": p.batch_size, "crop": p.crop,
        "fvcore_gflops_per_clip": round(gmac, 4), "flops_ratio_avsf_over_peer": round(b["flops_ratio"], 4),
        "work_gflop_per_call": round(work / 1e9, 3), "achieved_gflops_per_s": round(rate, 2),
        "gemm_gflops_per_s": round(gemm["gflops_per_s"], 1), "pct_of_gemm": round(100 * rate / gemm["gflops_per_s"], 1),
        "clips_per_s": round(p.batch_size / median, 4), "threads": torch.get_num_threads(),
        "loadavg_end": loadavg(), **mem.info(),
    })


def _rounds(scale: str, mode: str, is_smoke: bool) -> tuple[int, int]:
    if is_smoke:
        return 1, 0
    return ROUNDS[scale][0 if mode == "eval" else 1], ROUNDS[scale][2]


def _skip_in_smoke(scale: str, is_smoke: bool) -> None:
    if is_smoke and scale == "r50":
        pytest.skip("smoke mode: the paper-size groups are skipped")


def eval_call(b: dict, impl: str, x: dict):
    """One eval forward of `impl` under inference mode, as a callable."""
    if impl == "avsf":
        model = to_channels_last(fuse_for_inference(b["ours"]))
        run = lambda: model(x)  # noqa: E731
    elif impl == "avsf-plain":
        model = b["ours"].eval()
        run = lambda: model(x)  # noqa: E731
    else:
        model = b["peer"].eval()
        run = lambda: model(pairs.peer_inputs(x))  # noqa: E731  (a fresh list each call)

    def call():
        with torch.inference_mode():
            run()

    return call


def train_call(b: dict, impl: str, x: dict):
    """One training step of `impl` on its own copy of the model, with its own optimizer."""
    if impl == "avsf-channels-last":
        model = to_channels_last(copy.deepcopy(b["ours"]))
    elif impl == "avsf" and torch.cuda.is_available():  # as `avsf train` does with train.channels_last
        model = to_channels_last(copy.deepcopy(b["ours"]), video_only=True)
    elif impl == "avsf":
        model = copy.deepcopy(b["ours"])
    else:
        model = copy.deepcopy(b["peer"])
    model.train()
    if impl.startswith("avsf"):
        forward = lambda: model(x)["logits"]  # noqa: E731
    else:
        forward = lambda: model(pairs.peer_inputs(x))  # noqa: E731
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def step():
        loss = nn.functional.cross_entropy(forward(), x["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


# Interleaved pairs per group: at least MIN, then until the median's 95 % interval is within
# +-INTERLEAVED_TOL of it, at most MAX. R50 steps take seconds on a CPU; 7 pairs give a
# distribution-free interval (ranks 1 and 7) at all, and the median of 7 is stable to a few %.
INTERLEAVED_ROUNDS = {"tiny": (12, 40), "small": (8, 24), "r50": (7, 15)}  # (min, max)
INTERLEAVED_TOL = 0.03


def timed_call(fn, sync=lambda: None) -> float:
    """Seconds `fn()` takes, queued device work (`sync`) finished before and after."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the median: the order statistics (l, n + 1 - l) with
    P(l <= rank of the median <= n + 1 - l) >= level under Binomial(n, 1/2). Needs n >= 6 for 95 %
    (below that the sample's extremes are returned, a narrower guarantee)."""
    x = sorted(values)
    n = len(x)
    tail = (1 - level) / 2
    low, cdf = 0, 0.0
    for k in range(n):  # the largest l with P(B <= l - 1) <= tail
        cdf += math.comb(n, k) / 2**n
        if cdf > tail:
            break
        low = k + 1
    low = max(low, 1)
    return x[low - 1], x[n - low]


def interleaved_speedup(ours, peer, rounds: tuple[int, int], warmup: int, work_flop: float, *,
                        gemm=None, gemm_flop: float = 2 * GEMM_N**3, sync=lambda: None) -> dict:
    """pytorchvideo time / avsf time over neighbouring pairs of calls, the order alternating
    (peer first in even pairs, ours first in odd ones: neither gets a systematically warmer
    cache or a systematically later moment).

    pytest-benchmark times an entry's rounds back to back, then the next entry's; this VM's
    speed drifts by ~20% over minutes, which moves the ratio of two such medians by as much.
    Calls that alternate see the same machine, so the median of per-pair ratios is the
    comparison to quote (with its distribution-free 95 % interval); the separate entries stay
    for absolute times and memory. `rounds` = (min, max) pairs: after min, pairs are added until
    the interval is within +-INTERLEAVED_TOL of the median. Each pair also times one GEMM
    (`gemm`, `gemm_flop` FLOPs; default the CPU's `GEMM_N`^3 fp32 matmul): `interleaved_pct_of_gemm`
    is the median over pairs of ours' FLOP/s (`work_flop` per call) over that pair's GEMM rate.
    `sync` waits for queued device work (CUDA) before a clock is read.
    """
    if gemm is None:
        a, b = torch.randn(GEMM_N, GEMM_N), torch.randn(GEMM_N, GEMM_N)
        gemm = lambda: a @ b  # noqa: E731

    def timed(fn) -> float:
        return timed_call(fn, sync)

    for _ in range(warmup):
        peer(), ours(), gemm()
    ratios, pcts, t_ours, t_peer = [], [], [], []
    lo = hi = None
    for i in range(rounds[1]):
        if i % 2 == 0:
            tp, to = timed(peer), timed(ours)
        else:
            to, tp = timed(ours), timed(peer)
        tg = timed(gemm)
        t_peer.append(tp)
        t_ours.append(to)
        ratios.append(tp / to)
        pcts.append(100 * (work_flop / to) / (gemm_flop / tg))
        if len(ratios) >= rounds[0]:
            lo, hi = median_interval(ratios)
            if (hi - lo) / 2 <= INTERLEAVED_TOL * statistics.median(ratios):
                break
    return {"interleaved_speedup": round(statistics.median(ratios), 4), "interleaved_rounds": len(ratios),
            "interleaved_ci95": [round(lo, 4), round(hi, 4)] if lo is not None else None,
            "interleaved_ratios": [round(r, 4) for r in ratios], "interleaved_order": "alternating",
            "interleaved_avsf_median_s": statistics.median(t_ours), "interleaved_peer_median_s": statistics.median(t_peer),
            "interleaved_pct_of_gemm": round(statistics.median(pcts), 1)}


def interleaved_rounds(scale: str, is_smoke: bool) -> tuple[int, int]:
    return (1, 1) if is_smoke else INTERLEAVED_ROUNDS[scale]


def _entry(benchmark, scale: str, impl: str, mode: str, gemm: dict, is_smoke: bool) -> None:
    _skip_in_smoke(scale, is_smoke)
    b = built(scale)
    check_flops(b, scale)
    x = pairs.inputs(b["pair"].model_cfg, b["pair"].crop, b["pair"].batch_size)
    benchmark.group = f"{scale}-{mode}"
    make = eval_call if mode == "eval" else train_call
    rounds, warmup = _rounds(scale, mode, is_smoke)
    with PeakMemory() as mem:
        benchmark.pedantic(make(b, impl, x), rounds=rounds, warmup_rounds=warmup, iterations=1)
    _info(benchmark, b, impl, mode, gemm, mem)
    if impl == "avsf":
        benchmark.extra_info.update(interleaved_speedup(make(b, "avsf", x), make(b, "pytorchvideo", x),
                                                        interleaved_rounds(scale, is_smoke), warmup,
                                                        work_flop(b, "avsf", mode)))


@pytest.mark.parametrize("scale", pairs.BENCH_SCALES)
@pytest.mark.parametrize("impl", ["avsf", "avsf-plain", "pytorchvideo"])
def test_eval_forward(benchmark, scale, impl, gemm, is_smoke):
    _entry(benchmark, scale, impl, "eval", gemm, is_smoke)


@pytest.mark.parametrize("scale", pairs.BENCH_SCALES)
@pytest.mark.parametrize("impl", ["avsf", "avsf-channels-last", "pytorchvideo"])
def test_train_step(benchmark, scale, impl, gemm, is_smoke):
    _entry(benchmark, scale, impl, "train", gemm, is_smoke)


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_fold_keeps_outputs(scale):
    """Folding BN and channels-last change the arithmetic order only: same logits to rounding."""
    b = built(scale)
    p = b["pair"]
    x = pairs.inputs(p.model_cfg, p.crop, 2)
    model = b["ours"].eval()
    for bn in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):  # non-trivial BN
        g = torch.Generator().manual_seed(bn.num_features)
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.weight.data.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    with torch.no_grad():
        ref = model(x)["logits"]
        got = to_channels_last(fuse_for_inference(model))(x)["logits"]
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
