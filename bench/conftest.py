"""Shared fixtures of the benches: the machine's GEMM rate, peak memory per entry, smoke mode.

Run:  pytest bench/ --benchmark-json reports/bench/bench.json && python -m bench.render reports/bench
Smoke (CI, one round, no paper-size groups):  AVSF_BENCH_SMOKE=1 pytest bench/   (or --bench-smoke)
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import pytest
import torch

from bench import pairs

GEMM_N = 2048


def pytest_addoption(parser):
    parser.addoption("--bench-smoke", action="store_true", default=False,
                     help="one round per entry, skip the paper-size (R50) groups; also AVSF_BENCH_SMOKE=1")


_IMPL_ORDER = {"avsf": 0, "pytorchvideo": 1}  # the pair being compared runs back to back; variants after


def pytest_collection_modifyitems(config, items):
    """Run the entries of one group (scale, mode, precision) back to back, avsf then pytorchvideo
    then avsf's variants, the data loaders after the model groups, the compile entry last. Why: this VM's speed drifts by ~20% over minutes, and the entries
    of a group are timed one after another, so the pair compared should be neighbours in time;
    and the reference loader's worker processes and DALI's threads slowed the model entries
    timed after them (tiny-train 58 -> 71 ms per step, measured)."""

    def key(item):
        params = getattr(getattr(item, "callspec", None), "params", {})
        scale = params.get("scale")
        late = 1 if item.path.name == "test_data.py" or item.originalname.startswith("test_loader") else 0
        if item.originalname.startswith("test_r50_compile"):
            late = 2  # the entry most likely to exhaust a time budget (bench/gpu_check.py) goes last
        return (late, item.path.name, item.originalname,
                pairs.BENCH_SCALES.index(scale) if scale in pairs.BENCH_SCALES else -1,
                str(params.get("mode", "")), str(params.get("precision", "")),
                _IMPL_ORDER.get(params.get("impl"), 2))

    items.sort(key=key)


def smoke(config) -> bool:
    return bool(config.getoption("--bench-smoke")) or os.environ.get("AVSF_BENCH_SMOKE", "") not in ("", "0")


@pytest.fixture(scope="session")
def is_smoke(request) -> bool:
    return smoke(request.config)


def _threads() -> int:
    return int(os.environ.get("AVSF_BENCH_THREADS", "0")) or (os.cpu_count() or 1)


_START_LOAD: list[float] = []


def pytest_configure(config):
    torch.set_num_threads(_threads())
    _START_LOAD[:] = loadavg()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def measure_gemm(n: int = GEMM_N, repeats: int = 5) -> dict:
    """fp32 GEMM rate: best of `repeats` n^3 matmuls, 2 n^3 FLOPs each (multiply and add counted)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return {"n": n, "seconds": best, "gflops_per_s": 2 * n**3 / best / 1e9, "threads": torch.get_num_threads()}


_GEMM: dict = {}


@pytest.fixture(scope="session")
def gemm(is_smoke) -> dict:
    """The GEMM rate, measured once per session (in the same process as the model entries)."""
    if not _GEMM:
        _GEMM.update(measure_gemm(repeats=2 if is_smoke else 10))
        _GEMM["loadavg"] = loadavg()
    return _GEMM


def _release_free_heap() -> None:
    """Give memory freed by earlier entries back to the OS (glibc keeps it mapped), so an
    entry's RSS at start, and so its peak, is not inflated by what ran before it."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: peaks then include the freed heap (the delta column stays the entry's own)


class PeakMemory:
    """Peak memory of one entry. CPU: the process's peak RSS (VmHWM), reset before the entry by
    writing 5 to /proc/self/clear_refs, so each entry reads its own peak; CUDA: max allocated."""

    def __init__(self, device: str = "cpu"):
        self.device = device

    @staticmethod
    def _status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.resettable = True
        _release_free_heap()
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.resettable = False  # VmHWM is then the process's peak so far (documented)
        self.start = self._status("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.peak = self._status("VmHWM")
        return False

    def info(self) -> dict:
        out = {"peak_mem_mb": round(self.peak / 2**20, 1), "mem_at_start_mb": round(self.start / 2**20, 1),
               "peak_mem_delta_mb": round((self.peak - self.start) / 2**20, 1),
               "mem_kind": "cuda_max_allocated" if self.device == "cuda" else "process_peak_rss"}
        if self.device != "cuda" and not self.resettable:
            out["mem_note"] = "VmHWM could not be reset: process peak so far"
        return out


def stat(benchmark, name: str = "median") -> float:
    return getattr(benchmark.stats.stats, name)


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["cpu_model"] = cpu_name()
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["loadavg_start"] = list(_START_LOAD)
    machine_info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        import pytorchvideo

        machine_info["pytorchvideo"] = getattr(pytorchvideo, "__version__", "0.1.5")
    except ImportError:
        machine_info["pytorchvideo"] = None
    machine_info["smoke"] = smoke(config)


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["machine_info"]["loadavg_end"] = loadavg()
    if _GEMM:
        # Measured again at the end; the machine's limit is the better of the two (the host's
        # speed drifts), and every entry's share of it is recomputed against that.
        end = measure_gemm(repeats=2 if smoke(config) else 10)
        best = dict(max(_GEMM, end, key=lambda g: g["gflops_per_s"]))
        best["gflops_per_s_start"], best["gflops_per_s_end"] = _GEMM["gflops_per_s"], end["gflops_per_s"]
        best["loadavg"] = _GEMM.get("loadavg")
        output_json["machine_info"]["gemm"] = best
        for entry in output_json["benchmarks"]:
            info = entry.get("extra_info", {})
            if "achieved_gflops_per_s" in info:
                info["gemm_gflops_per_s"] = round(best["gflops_per_s"], 1)
                info["pct_of_gemm"] = round(100 * info["achieved_gflops_per_s"] / best["gflops_per_s"], 1)
