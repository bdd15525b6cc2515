"""The GPU check (issue 11): one command, at most 8 minutes on one GPU with no network.

    bash bench/gpu_check.sh              # on the GPU machine: install the carried wheels, then this
    python -m bench.gpu_check            # the check itself (nox -s gpu runs it too)
    python -m bench.gpu_check --dry-run  # on a CPU: every phase's code, tiny sizes, no GPU numbers

Phases, each a subprocess with its own time limit (a phase that fails or runs out is recorded
with its output's tail and the others still run):
  env    the device, driver, torch/DALI versions
  tests  pytest tests/ -m cuda (the CUDA tests)
  synth  the >= 128 px `gpu` synthetic set NVDEC can decode (generated once, all cores)
  bench  pytest bench/test_cuda.py: R50 8x8 train step and eval at batch 8 in fp32, bf16 and
         bf16+channels-last, avsf and pytorchvideo interleaved; R50 compile time; DALI GPU vs
         DALI CPU vs the reference loader at the paper geometry
  train  the paper-scale training with GPU decode: its loader alone, its training step alone,
         then `avsf train --scale paper` for one short epoch, all on the same config
Writes reports/bench/gpu/gpu_check.json (every number, each phase's status and seconds) and
gpu_check.md (the tables and the issue's targets, met or not), and bench_cuda.json (the raw
pytest-benchmark run). Without CUDA the check runs as a dry run (--dry-run forces it): the
CUDA tests skip, the bench runs its CUDA entries' code on the CPU at the tiny pair, the train
phase trains a tiny run with the reference loader; nothing it measures is a GPU number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Sum 435 s: with the wheels' install (bench/gpu_install.sh, ~30-40 s) the check fits 8 minutes.
LIMITS_S = {"tests": 45, "synth": 60, "bench": 240, "train": 90}
DRY_LIMITS_S = {"tests": 120, "synth": 120, "bench": 300, "train": 240}
TAIL = 3000  # characters of a phase's output kept in the JSON

TARGETS = {  # issue 11's targets, as checked by summarise()
    "speedup_vs_pytorchvideo": 1.1,  # R50 train and eval, every precision (interleaved)
    "bf16_cl3d_over_fp32": 1.5,  # avsf train step
    "dali_gpu_over_cpu": 4.0,
    "dali_gpu_clips_per_s": 200.0,
    "dali_cpu_over_reference": 1.5,
    "train_over_bound": 0.8,  # epoch clips/s over min(loader alone, model step alone)
    "compile_s": 60.0,
}


VARIANT = "table3/avslowfast-r50"  # the paper's AVSlowFast R50 (4x16, A->FS at res3+res4, AVS, DropPathway)


def train_sets(overrides: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]


def train_overrides(dry: bool) -> tuple[str, dict]:
    """(scale, overrides) of the train phase: the paper recipe with GPU decode on the `gpu` set,
    one short epoch and single-view testing; in the dry run a tiny CPU run."""
    if dry:
        return "tiny", {"data.loader": "reference", "data.device": "cpu", "train.epochs": 1,
                        "train.max_train_clips": 16, "eval.temporal_views": 1, "eval.spatial_views": 1}
    return "paper", {"data.synth_scale": "gpu", "data.loader": "dali", "data.device": "gpu", "data.num_threads": 8,
                     "train.batch_size": 8, "train.epochs": 1, "train.max_train_clips": 240, "train.precision": "bf16",
                     "train.channels_last": True, "eval.temporal_views": 1, "eval.spatial_views": 1,
                     # the check times training and decoding: no extra decode pass before validation
                     "train.precise_bn_batches": 0}


# ----------------------------------------------------------------------------- phases
def _run(cmd: list[str], limit_s: float, env: dict[str, str] | None = None) -> dict:
    """Run one phase in its own process group: at its limit the whole group (pytest's and avsf
    train's children, DALI's threads) is killed, so the next phase gets the GPU to itself."""
    import signal

    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=limit_s)
        status = "ok" if p.returncode == 0 else f"failed (exit {p.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        status = f"timed out after {limit_s:.0f} s"
    return {"status": status, "seconds": round(time.monotonic() - t0, 1), "command": " ".join(cmd),
            "output_tail": (out or "")[-TAIL:]}


def phase_env() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.cuda.is_available(),
            "host": platform.node(), "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device=torch.cuda.get_device_name(0), memory_gib=round(props.total_memory / 2**30, 1),
                    sms=props.multi_processor_count, cuda_runtime=torch.version.cuda)
    for module in ("nvidia.dali", "pytorchvideo", "av", "fvcore"):
        try:
            mod = __import__(module, fromlist=["__version__"])
            info[module] = getattr(mod, "__version__", "present")
        except ImportError:
            info[module] = None
    return info


def phase_commands(out: Path, dry: bool) -> dict[str, list[str]]:
    py = sys.executable
    bench_json = out / "bench_cuda.json"
    return {
        "tests": [py, "-m", "pytest", "tests/", "-m", "cuda", "-q", "-p", "no:cacheprovider"],
        "synth": [py, "-m", "bench.gpu_check", "_synth"] + (["--dry-run"] if dry else []),
        "bench": [py, "-m", "pytest", "bench/test_cuda.py", "-q", "-p", "no:cacheprovider",
                  f"--benchmark-json={bench_json}"],
        "train": [py, "-m", "bench.gpu_check", "_train", "--out", str(out)] + (["--dry-run"] if dry else []),
    }


def bench_env(dry: bool) -> dict[str, str]:
    """The dry run puts bench/test_cuda.py on the CPU at the tiny pair, one round per entry."""
    return {"AVSF_BENCH_DEVICE": "cpu", "AVSF_BENCH_CUDA_SCALE": "tiny", "AVSF_BENCH_SMOKE": "1"} if dry else {}


def _synth(dry: bool) -> None:
    from avsf.data import ensure_synth
    from avsf.train import resolve_config

    scale, overrides = train_overrides(dry)
    cfg = resolve_config(variant=VARIANT, scale=scale, sets=train_sets(overrides))
    print(ensure_synth(cfg, workers=os.cpu_count() or 1))


# ----------------------------------------------------------------------------- the train phase
def _loader_alone(cfg, batches: int) -> tuple[float, dict]:
    """Clips/s of the training loader by itself (after one warm-up batch), and its first batch."""
    import torch

    from avsf.data import build_loader

    it = iter(build_loader(cfg, "train", "train"))
    first = next(it)
    clips, t0 = 0, time.perf_counter()
    for _ in range(batches):
        clips += next(it)["fast"].shape[0]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return clips / (time.perf_counter() - t0), first


def _model_alone(cfg, batch: dict, steps: int) -> float:
    """Clips/s of the training step by itself, on one loader batch kept on the device, with the
    trainer's device, precision, channels-last and AVS negative (another clip's audio)."""
    import contextlib

    import torch

    from avsf.eval.inference import to_device
    from avsf.model import build_model
    from avsf.model.fuse import to_channels_last
    from bench.test_data import training_step

    cuda = torch.cuda.is_available() and cfg.data.device == "gpu"
    device = torch.device("cuda" if cuda else "cpu")
    model = build_model(cfg.model).to(device).train()
    if cuda and cfg.train.channels_last:
        to_channels_last(model, video_only=True)
    x = to_device({k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}, device, cuda and cfg.train.channels_last)
    x["audio_negative"] = x["audio"].roll(1, dims=0)
    bf16 = cuda and cfg.train.precision in ("bf16", "auto")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    step = training_step(model, x, cfg, autocast)
    step()  # warm-up (cuDNN autotuning, allocator)
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return steps * x["fast"].shape[0] / (time.perf_counter() - t0)


def _train(out: Path, dry: bool) -> None:
    """Loader alone, step alone, then `avsf train` on the same config -> out/train_phase.json."""
    from avsf.data import dataset_info
    from avsf.run import RunDir
    from avsf.train import resolve_config

    scale, overrides = train_overrides(dry)
    cfg = resolve_config(variant=VARIANT, scale=scale, sets=train_sets(overrides))
    cfg.model.num_classes = cfg.model.num_classes or dataset_info(cfg).num_classes
    loader_cps, batch = _loader_alone(cfg, 3 if dry else 12)
    model_cps = _model_alone(cfg, batch, 2 if dry else 10)
    run_dir = out / "train_run"
    cmd = [sys.executable, "-m", "avsf", "train", "--variant", VARIANT, "--scale", scale, "--out", str(run_dir),
           "--no-progress", "--json"]
    for text in train_sets(overrides):
        cmd += ["--set", text]
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    rows = [r for r in RunDir(run_dir).read_metrics() if "clips_per_s" in r]
    result = {"variant": VARIANT, "scale": scale, "overrides": overrides, "loader_alone_clips_per_s": round(loader_cps, 2),
              "model_step_alone_clips_per_s": round(model_cps, 2), "train_exit": p.returncode,
              "train_wall_s": round(time.monotonic() - t0, 1), "train_output_tail": (p.stdout + p.stderr)[-TAIL:],
              "epoch": rows[-1] if rows else None}
    (out / "train_phase.json").write_text(json.dumps(result, indent=2) + "\n")
    if p.returncode != 0 or not rows:
        raise SystemExit(f"avsf train failed (exit {p.returncode}); see train_output_tail in {out / 'train_phase.json'}")


# ----------------------------------------------------------------------------- the report
def _bench_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [{"group": b.get("group") or "", "median_s": b["stats"]["median"], "rounds": b["stats"]["rounds"],
             **b.get("extra_info", {})} for b in json.loads(path.read_text()).get("benchmarks", [])]


def _target(value: float | None, goal: float, *, at_most: bool = False) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= goal if at_most else value >= goal) else "NOT met"


def summarise(out: Path, phases: dict, env: dict, dry: bool) -> dict:
    """gpu_check.json: every number and each phase; the targets of issue 11 judged."""
    rows = _bench_rows(out / "bench_cuda.json")
    by = {(r["group"], r.get("impl")): r for r in rows}
    models = sorted({r["group"] for r in rows if r.get("mode") and "-cuda-" in r["group"] and "compile" not in r["group"]})
    groups = [{"group": g, "avsf_ms": 1e3 * by[(g, "avsf")]["median_s"], "pytorchvideo_ms": 1e3 * by[(g, "pytorchvideo")]["median_s"],
               "speedup": by[(g, "avsf")].get("interleaved_speedup"), "ci95": by[(g, "avsf")].get("interleaved_ci95"),
               "avsf_tflops": by[(g, "avsf")].get("achieved_tflops"), "pytorchvideo_tflops": by[(g, "pytorchvideo")].get("achieved_tflops"),
               "gemm_tflops": by[(g, "avsf")].get("gemm_tflops"), "avsf_pct_gemm": by[(g, "avsf")].get("pct_of_gemm")}
              for g in models if (g, "avsf") in by and (g, "pytorchvideo") in by]
    train = {r["precision"]: r for r in rows if r.get("mode") == "train" and r.get("impl") == "avsf" and "precision" in r}
    bf16_gain = train["fp32"]["median_s"] / train["bf16-cl3d"]["median_s"] if {"fp32", "bf16-cl3d"} <= set(train) else None
    data = {r.get("impl"): r.get("clips_per_s") for r in rows if r["group"] == "data-paper-cuda"}
    compile_row = next((r for r in rows if r["group"].endswith("-train-cuda-compile")), None)
    tp_path = out / "train_phase.json"
    tp = json.loads(tp_path.read_text()) if tp_path.is_file() else None
    epoch = (tp or {}).get("epoch") or {}
    bound = min(tp["loader_alone_clips_per_s"], tp["model_step_alone_clips_per_s"]) if tp else None
    train_ratio = epoch["clips_per_s"] / bound if epoch.get("clips_per_s") and bound else None
    ratio = lambda a, b: data[a] / data[b] if data.get(a) and data.get(b) else None  # noqa: E731
    targets = {
        "R50 train and eval: avsf >= 1.1x pytorchvideo at equal precision (every group)":
            _target(min((g["speedup"] for g in groups if g["speedup"]), default=None), TARGETS["speedup_vs_pytorchvideo"]),
        "avsf bf16+channels-last >= 1.5x avsf fp32 (train step)": _target(bf16_gain, TARGETS["bf16_cl3d_over_fp32"]),
        "DALI GPU >= 4x DALI CPU": _target(ratio("dali-gpu", "dali-cpu"), TARGETS["dali_gpu_over_cpu"]),
        "DALI GPU >= 200 clips/s": _target(data.get("dali-gpu"), TARGETS["dali_gpu_clips_per_s"]),
        "DALI CPU >= 1.5x reference": _target(ratio("dali-cpu", "reference-cpu"), TARGETS["dali_cpu_over_reference"]),
        "training epoch >= 80% of min(loader, step)": _target(train_ratio, TARGETS["train_over_bound"]),
        "R50 compiles within a minute": _target(compile_row.get("compile_s") if compile_row else None, TARGETS["compile_s"],
                                                at_most=True),
    }
    return {"dry_run": dry, "env": env, "phases": phases, "model_groups": groups, "bf16_cl3d_over_fp32_train": bf16_gain,
            "data_clips_per_s": data, "compile": compile_row, "train": tp, "train_over_bound": train_ratio,
            "targets": targets}


def _fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(s: dict) -> str:
    env = s["env"]
    where = env.get("device") or "no GPU (dry run on the CPU: the code paths ran, the numbers are not GPU numbers)"
    lines = [f"# GPU check: {where}", "",
             f"torch {env.get('torch')}, DALI {env.get('nvidia.dali')}, pytorchvideo {env.get('pytorchvideo')}, "
             f"{env.get('cpus')} CPU cores, host {env.get('host')}.", "", "## Phases", "",
             "| phase | status | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {p['status']} | {p['seconds']} |" for name, p in s["phases"].items()]
    lines += ["", "## Model: avsf vs pytorchvideo (batch 8)", "",
              "| group | avsf ms | pytorchvideo ms | speed-up (interleaved, 95% CI) | avsf TFLOP/s (% of bf16 GEMM) "
              "| pytorchvideo TFLOP/s | bf16 GEMM TFLOP/s |", "|---|---|---|---|---|---|---|"]
    for g in s["model_groups"]:
        ci = f" [{g['ci95'][0]:.2f}, {g['ci95'][1]:.2f}]" if g["ci95"] else ""
        lines.append(f"| {g['group']} | {g['avsf_ms']:.1f} | {g['pytorchvideo_ms']:.1f} | {_fmt(g['speedup'])}x{ci} | "
                     f"{_fmt(g['avsf_tflops'], '.3g')} ({_fmt(g['avsf_pct_gemm'], '.3g')}%) | "
                     f"{_fmt(g['pytorchvideo_tflops'], '.3g')} | {_fmt(g['gemm_tflops'], '.3g')} |")
    c = s["compile"] or {}
    lines += ["", f"avsf train step bf16+channels-last over fp32: {_fmt(s['bf16_cl3d_over_fp32_train'])}x. "
              f"R50 compile (train.compile, regional): {_fmt(c.get('compile_s'), '.1f')} s, then "
              f"{_fmt(c.get('speedup_over_eager'))}x eager.", "", "## Data at the paper geometry (clips/s)", "",
              "| DALI GPU | DALI CPU | reference |", "|---|---|---|",
              "| " + " | ".join(_fmt(s["data_clips_per_s"].get(k), ".1f") for k in ("dali-gpu", "dali-cpu", "reference-cpu"))
              + " |", ""]
    t = s["train"] or {}
    e = t.get("epoch") or {}
    lines += ["## Training with GPU decode", "",
              f"`avsf train --variant {t.get('variant', '-')} --scale {t.get('scale', '-')}` ({t.get('overrides', {})}): epoch {_fmt(e.get('clips_per_s'), '.1f')} "
              f"clips/s, data-wait share {_fmt(e.get('data_wait_share'))}, peak memory {_fmt(e.get('peak_mem_mb'), '.0f')} MB; "
              f"its loader alone {_fmt(t.get('loader_alone_clips_per_s'), '.1f')} clips/s, its step alone "
              f"{_fmt(t.get('model_step_alone_clips_per_s'), '.1f')} clips/s: {_fmt(s['train_over_bound'])} of the bound.",
              "", "## Targets (issue 11)", ""]
    if s["dry_run"]:
        lines += ["Dry run: judged on CPU numbers at tiny sizes, so the verdicts below say nothing about a GPU.", ""]
    lines += ["| target | result |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in s["targets"].items()]
    return "\n".join(lines) + "\n"


def check(out: Path, work: Path, dry: bool, phases: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    limits = DRY_LIMITS_S if dry else LIMITS_S
    cmds = phase_commands(work, dry)
    env = phase_env()
    done: dict[str, dict] = {}
    for name in phases:
        print(f"gpu check: {name} (limit {limits[name]} s)", flush=True)
        done[name] = _run(cmds[name], limits[name], bench_env(dry) if name == "bench" else None)
        print(f"gpu check: {name}: {done[name]['status']} in {done[name]['seconds']} s", flush=True)
    for name in ("bench_cuda.json", "train_phase.json"):
        if (work / name).is_file():
            (out / name).write_text((work / name).read_text())
    summary = summarise(out, done, env, dry)
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(markdown(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    import tempfile

    import torch

    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", nargs="?", default="check", choices=("check", "_synth", "_train"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--dry-run", action="store_true", help="run on the CPU at tiny sizes (automatic without CUDA)")
    ap.add_argument("--out", type=Path, default=None,
                    help="report folder (default reports/bench/gpu; a temporary folder in a dry run)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "avsf_gpu_check",
                    help="scratch folder for the training run and raw files (default: the temp folder)")
    ap.add_argument("--phases", default=",".join(LIMITS_S), help=f"comma-separated subset of {', '.join(LIMITS_S)}")
    args = ap.parse_args(argv)
    dry = args.dry_run or not torch.cuda.is_available()
    if args.action == "_synth":
        _synth(dry)
        return 0
    if args.action == "_train":
        _train(args.out, dry)
        return 0
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in phases if p not in LIMITS_S]
    if unknown:
        ap.error(f"--phases: {', '.join(unknown)} not allowed; choose from {', '.join(LIMITS_S)}")
    out = args.out or (args.work / "report" if dry else ROOT / "reports" / "bench" / "gpu")
    summary = check(out, args.work, dry, phases)
    print(f"gpu check: wrote {out / 'gpu_check.md'} and {out / 'gpu_check.json'}" + (" (dry run)" if dry else ""))
    return 0 if all(p["status"] == "ok" for p in summary["phases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
