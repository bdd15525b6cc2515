"""Render a pytest-benchmark JSON into a markdown table and a seaborn figure.

    python -m bench.render reports/bench          # reads reports/bench/bench.json
    python -m bench.render reports/bench/x.json   # or a given file; output beside it

Writes `bench.md` (model groups: avsf vs pytorchvideo, speed ratio, achieved GFLOP/s and % of
the run's GEMM rate, peak memory; data: DALI vs reference clips/s, keep-up with the training
step; the speed goals, met or not) and `bench.png` (clips/s per group and entry).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GOALS = {"train_ratio": 1.3, "r50_eval_pct_gemm": 50.0, "dali_ratio": 1.0}


def load(path: Path) -> dict:
    path = path / "bench.json" if path.is_dir() else path
    if not path.exists():
        raise SystemExit(f"{path} does not exist: run `pytest bench/ --benchmark-json {path}` first")
    return json.loads(path.read_text())


def _rows(data: dict) -> list[dict]:
    rows = []
    for b in data.get("benchmarks", []):
        e = b.get("extra_info", {})
        rows.append({"group": b.get("group") or "", "name": b["name"], "impl": e.get("impl", b["name"]),
                     "median_s": b["stats"]["median"], "min_s": b["stats"]["min"], "rounds": b["stats"]["rounds"], **e})
    return rows


def _fmt_t(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _mem(r: dict | None) -> str:
    return f"{r['peak_mem_mb']:.0f} (+{r['peak_mem_delta_mb']:.0f})" if r and "peak_mem_mb" in r else "-"


def model_table(rows: list[dict]) -> tuple[list[str], dict]:
    groups: dict[str, dict[str, dict]] = {}
    for r in rows:
        if r.get("scale") and r["group"].endswith(("-eval", "-train", "-eval-cuda", "-train-cuda")):
            groups.setdefault(r["group"], {})[r["impl"]] = r
    order = {"tiny": 0, "small": 1, "r50": 2}
    lines = [
        "| group | batch | avsf | pytorchvideo | speed-up (pv / avsf): **interleaved** / medians / minima | avsf GFLOP/s (% GEMM) "
        "| pytorchvideo GFLOP/s (% GEMM) | FLOPs avsf/pv | peak RSS MB avsf (+delta) | peak RSS MB pv (+delta) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = {}
    for g in sorted(groups, key=lambda g: (g.endswith("cuda"), order.get(g.split("-")[0], 9), g)):
        e = groups[g]
        ours = e.get("avsf") or e.get("avsf-bf16-cl3d-compile")
        peer = e.get("pytorchvideo") or e.get("pytorchvideo-fp32-eager")
        if not ours or not peer:
            continue
        ratio = peer["median_s"] / ours["median_s"]
        paired = ours.get("interleaved_speedup")
        ratios[g] = (paired, "interleaved") if paired is not None else (ratio, "ratio of medians")
        pct = lambda r: f"{r['achieved_gflops_per_s']:.0f} ({r['pct_of_gemm']:.0f}%)" if "pct_of_gemm" in r else (  # noqa: E731
            f"{r.get('achieved_gflops_per_s', 0):.0f}")
        lines.append(
            f"| {g} | {ours.get('batch_size', '')} | {_fmt_t(ours['median_s'])} | {_fmt_t(peer['median_s'])} | "
            f"{f'**{paired:.2f}x** / ' if paired is not None else ''}{ratio:.2f}x / {peer['min_s'] / ours['min_s']:.2f}x | {pct(ours)} | {pct(peer)} | {ours.get('flops_ratio_avsf_over_peer', '-')} | "
            f"{_mem(ours)} | {_mem(peer)} |")
        alt_name = "avsf-plain" if "avsf-plain" in e else "avsf-channels-last"
        variant = e.get(alt_name)
        if variant:
            label = ("avsf-plain: no BN folding, no channels-last" if alt_name == "avsf-plain"
                     else "avsf-channels-last: conv weights channels-last")
            lines.append(
                f"| {g} ({label}) | {variant.get('batch_size', '')} | {_fmt_t(variant['median_s'])} | "
                f"{_fmt_t(peer['median_s'])} | - / {peer['median_s'] / variant['median_s']:.2f}x / {peer['min_s'] / variant['min_s']:.2f}x | {pct(variant)} | {pct(peer)} "
                f"| | {_mem(variant)} | |")
    return lines, ratios


def data_table(rows: list[dict]) -> tuple[list[str], dict]:
    by = {r["impl"]: r for r in rows if r["group"].startswith("data-")}
    lines = ["| entry | threads | batch | clips/s | peak RSS MB (+delta) |", "|---|---|---|---|---|"]
    for k in ("dali-cpu", "reference-cpu", "dali-gpu", "avsf-small-train-step"):
        if k in by:
            r = by[k]
            lines.append(f"| {k} | {r.get('threads', '')} | {r.get('batch_size', '')} | {r['clips_per_s']:.1f} | {_mem(r)} |")
    out = {}
    if "dali-cpu" in by and "reference-cpu" in by:
        out["dali_ratio"] = by["dali-cpu"]["clips_per_s"] / by["reference-cpu"]["clips_per_s"]
    if "avsf-small-train-step" in by:
        need = by["avsf-small-train-step"]["clips_per_s"]
        for k in ("dali-cpu", "reference-cpu"):
            if k in by:
                out[f"{k}_keeps_up"] = by[k]["clips_per_s"] / need
    return lines, out


def helper_table(rows: list[dict]) -> list[str]:
    """bench/test_helpers.py: each helper of avsf/model/blocks.py against the plain conv."""
    groups: dict[str, dict[str, dict]] = {}
    for r in rows:
        if r["group"].startswith("helper-"):
            groups.setdefault(r["group"], {})[r["impl"]] = r
    lines = ["| group | input | plain conv | avsf helper | speed-up |", "|---|---|---|---|---|"]
    for g, e in groups.items():
        if "avsf-helper" in e and "plain-conv" in e:
            h, c = e["avsf-helper"], e["plain-conv"]
            lines.append(f"| {g} ({h.get('helper', '')}) | {tuple(h.get('input_shape', ()))} | {_fmt_t(c['median_s'])} | "
                         f"{_fmt_t(h['median_s'])} | **{c['median_s'] / h['median_s']:.2f}x** |")
    return lines if len(lines) > 2 else []


def figure(rows: list[dict], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    pts = [{"group": r["group"], "entry": r["impl"],
            "clips/s": r["batch_size"] / r["median_s"] if r.get("batch_size") and r["group"] != "data-small-train-cpu"
            else r["clips_per_s"]} for r in rows if r.get("clips_per_s")]
    if not pts:
        return None
    groups = sorted({p["group"] for p in pts}, key=lambda g: ({"tiny": 0, "small": 1, "r50": 2, "data": 3}.get(g.split("-")[0], 9), g))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups)), 4))
    sns.barplot(x=[p["group"] for p in pts], y=[p["clips/s"] for p in pts], hue=[p["entry"] for p in pts],
                order=groups, ax=ax)
    ax.set_yscale("log")
    ax.set_ylabel("clips/s (log)")
    ax.set_xlabel("")
    ax.set_title("avsf vs pytorchvideo 0.1.5, and data loaders (higher is better)")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    path = out / "bench.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def render(path: Path) -> Path:
    data = load(path)
    out = path if path.is_dir() else path.parent
    rows = _rows(data)
    mi = data.get("machine_info", {})
    gemm = mi.get("gemm", {})
    model_lines, ratios = model_table(rows)
    data_lines, dres = data_table(rows)
    lines = [
        "# avsf benchmark",
        "",
        f"Machine: {mi.get('cpu_model', mi.get('processor', '?'))}, {mi.get('torch_threads', '?')} torch threads, "
        f"torch {mi.get('torch', '?')}, pytorchvideo {mi.get('pytorchvideo', '?')}"
        + (f", CUDA: {mi['cuda']}" if mi.get("cuda") else ", no CUDA")
        + f". Run {data.get('datetime', '')}{' (smoke: one round)' if mi.get('smoke') else ''}.",
        f"Load average (1/5/15 min) at start {mi.get('loadavg_start')}, at the GEMM measurement {gemm.get('loadavg')}, "
        f"at the end {mi.get('loadavg_end')}.",
        f"fp32 GEMM rate ({gemm.get('n', '?')}^3 matmul, best of runs, same process): "
        f"**{gemm.get('gflops_per_s', float('nan')):.0f} GFLOP/s**." if gemm else "GEMM rate: not measured.",
        "",
        "Times are medians per call. Speed-up > 1: avsf faster. **Interleaved**: avsf and pytorchvideo calls "
        "alternate (same rounds as the entries), median of the per-pair ratios; it is the comparison the goals use, "
        "because the host's speed drifts between entries timed one after the other (medians / minima: ratios of the "
        "separate entries). GFLOP/s = 2 x fvcore count (multiply-add = 2 FLOPs, as the "
        "GEMM rate counts) / time; a training step is counted as 3 forwards. Peak RSS is the process's peak during the "
        "entry (VmHWM reset before it), with the rise over the entry's start in brackets.",
        "",
        "## Models (avsf vs pytorchvideo, same configuration)",
        "",
        *model_lines,
        "",
        "## Data (small scale, train mode, synthetic benchmark)",
        "",
        *data_lines,
        "",
    ]
    if "dali_ratio" in dres:
        lines.append(f"DALI CPU / reference: **{dres['dali_ratio']:.2f}x** at equal threads.")
    for k in ("dali-cpu", "reference-cpu"):
        if f"{k}_keeps_up" in dres:
            v = dres[f"{k}_keeps_up"]
            lines.append(f"{k} delivers {v:.2f}x the clips/s the default small training step consumes: "
                         f"{'keeps up' if v >= 1 else 'does NOT keep up'}.")
    helpers = helper_table(rows)
    if helpers:
        lines += ["", "## Execution helpers (one conv, forward + backward, medians)", "", *helpers]
    lines += ["", "## Speed goals", ""]
    for g, (r, how) in ratios.items():
        if g.endswith("cuda"):
            continue
        goal = GOALS["train_ratio"] if g.endswith("-train") else 1.0
        lines.append(f"- {g}: avsf {r:.2f}x pytorchvideo, {how} (goal >= 1.0{f', aim {goal}' if goal > 1 else ''}): "
                     f"{'met' if r >= 1.0 else 'NOT met'}{'' if r >= goal else ' (aim not reached)'}")
    r50 = next((r for r in rows if r["group"] == "r50-eval" and r["impl"] == "avsf"), None)
    if r50:
        pct = r50.get("interleaved_pct_of_gemm", r50["pct_of_gemm"])
        how = ("against a GEMM timed in each interleaved round" if "interleaved_pct_of_gemm" in r50
               else "against the session's best GEMM rate")
        lines.append(f"- r50 eval achieved {pct:.0f}% of the GEMM rate, {how} (goal >= {GOALS['r50_eval_pct_gemm']:.0f}%; "
                     f"{r50['pct_of_gemm']:.0f}% of the session's best GEMM rate): "
                     f"{'met' if pct >= GOALS['r50_eval_pct_gemm'] else 'NOT met'}")
    if "dali_ratio" in dres:
        lines.append(f"- DALI CPU {dres['dali_ratio']:.2f}x reference (goal >= 1.0): {'met' if dres['dali_ratio'] >= 1 else 'NOT met'}")
    fig = figure(rows, out)
    if fig:
        lines += ["", f"![clips/s]({fig.name})"]
    md = out / "bench.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0] if argv else "reports/bench")
    md = render(path)
    print(f"wrote {md}" + (f" and {md.parent / 'bench.png'}" if (md.parent / "bench.png").exists() else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
