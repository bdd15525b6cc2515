"""Render a pytest-benchmark JSON into a markdown table and a ratio figure; compare two runs.

    python -m bench.render reports/bench          # reads reports/bench/bench.json
    python -m bench.render reports/bench/x.json   # or a given file; output beside it
    python -m bench.render --compare BASELINE.json [CURRENT]   # CURRENT: the newest run saved
                                                  # under .benchmarks/ (--benchmark-autosave),
                                                  # else reports/bench/bench.json

Writes `bench.md` (model groups: avsf vs pytorchvideo, speed ratio, achieved GFLOP/s and % of
the run's GEMM rate, peak memory; data: DALI vs reference clips/s, keep-up with the training
step; the speed goals, met or not) and `bench.png`: the speed-up of avsf over pytorchvideo per
group (and of DALI over the reference loader) with a 95 % bootstrap interval over the timed
rounds. `--compare` writes `compare.md` and `compare.png` into --out (default reports/bench):
each benchmark's speed now relative to the baseline, with its interval, slower ones flagged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

GOALS = {"train_ratio": 1.3, "r50_eval_pct_gemm": 50.0, "dali_ratio": 1.0}
N_BOOT = 2000
CHANGE_TOL = 0.05  # a benchmark is flagged when its interval lies wholly beyond +-5 %


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


def _times(stats: dict) -> np.ndarray:
    """Per-round times of an entry (pytest-benchmark's stats["data"]); without them (a run saved
    without data) its quartiles stand in, which gives a rougher interval."""
    if stats.get("data"):
        return np.asarray(stats["data"], dtype=np.float64)
    return np.asarray([stats.get("q1", stats["median"]), stats["median"], stats.get("q3", stats["median"])])


def ratio_interval(slow: np.ndarray, fast: np.ndarray, *, seed: int = 0) -> tuple[float, float, float]:
    """median(slow) / median(fast) and its 95 % bootstrap interval (rounds resampled on each side)."""
    rng = np.random.default_rng(seed)
    a = np.median(rng.choice(slow, (N_BOOT, len(slow))), axis=1)
    b = np.median(rng.choice(fast, (N_BOOT, len(fast))), axis=1)
    lo, hi = np.percentile(a / b, [2.5, 97.5])
    return float(np.median(slow) / np.median(fast)), float(lo), float(hi)


def speedups(data: dict) -> list[dict]:
    """Per model group: avsf's speed-up over pytorchvideo (interleaved when measured) with the
    interval of the ratio of medians; per data group: DALI CPU over the reference loader."""
    by: dict[str, dict[str, dict]] = {}
    for b in data.get("benchmarks", []):
        by.setdefault(b.get("group") or "", {})[b.get("extra_info", {}).get("impl", b["name"])] = b
    out = []
    for g, e in by.items():
        ours = e.get("avsf") or e.get("avsf-bf16-cl3d-compile")
        peer = e.get("pytorchvideo") or e.get("pytorchvideo-fp32-eager")
        if g.startswith("data-"):
            ours, peer = e.get("dali-cpu"), e.get("reference-cpu")
        if not ours or not peer:
            continue
        r, lo, hi = ratio_interval(_times(peer["stats"]), _times(ours["stats"]))
        paired = ours.get("extra_info", {}).get("interleaved_speedup")
        label = "DALI CPU / reference loader" if g.startswith("data-") else "avsf / pytorchvideo"
        out.append({"group": g, "what": label, "ratio": r, "low": lo, "high": hi, "interleaved": paired,
                    "rounds": (len(ours["stats"].get("data") or []), len(peer["stats"].get("data") or []))})
    order = {"tiny": 0, "small": 1, "r50": 2, "data": 3}
    return sorted(out, key=lambda x: (x["group"].endswith("cuda"), order.get(x["group"].split("-")[0], 9), x["group"]))


def _interval_plot(items: list[dict], title: str, xlabel: str, out: Path, stem: str, tol: float = 0.0) -> list[Path]:
    """Horizontal point-and-interval plot of ratios, 1 (no difference) marked; an interval wholly
    above 1 + tol is green, wholly below 1 - tol red."""
    from avsf.report import style

    with style.styled():
        fig, axes = style.new_figure(size=(6.0, 0.42 * len(items) + 1.5))
        ax = axes[0][0]
        ys = list(range(len(items)))[::-1]
        for y, it in zip(ys, items):
            colour = "tab:green" if it["low"] > 1 + tol else "tab:red" if it["high"] < 1 - tol else "0.4"
            ax.errorbar(it["ratio"], y, xerr=[[it["ratio"] - it["low"]], [it["high"] - it["ratio"]]], fmt="o",
                        color=colour, capsize=3, label="ratio of medians, 95 % interval" if y == ys[0] else None)
            if it.get("interleaved") is not None:
                ax.plot(it["interleaved"], y, "D", mfc="none", color=colour, ms=6,
                        label="interleaved pairs" if y == ys[0] else None)
        ax.axvline(1.0, color="black", lw=0.8)
        ax.xaxis.set_major_formatter("{x:g}x")
        ax.legend(loc="best", fontsize=7)
        ax.set_yticks(ys, [it["label"] for it in items], fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        return style.save_figure(fig, out, stem, formats=("png",))


def figure(data: dict, out: Path) -> Path | None:
    items = [dict(it, label=f"{it['group']} ({it['what']})") for it in speedups(data)]
    if not items:
        return None
    return _interval_plot(items, "Speed-up over the peer (> 1: avsf / DALI faster)",
                          "median time of the peer / median time of ours", out, "bench")[0]


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
    fig = figure(data, out)
    if fig:
        lines += ["", f"![speed-ups]({fig.name})", "",
                  "Speed-ups per group with 95 % bootstrap intervals over the timed rounds (ratio of medians of the "
                  "separate entries; the interleaved ratio, which the goals use, as a diamond)."]
    md = out / "bench.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def _key(b: dict) -> str:
    return b.get("fullname") or f"{b.get('group')}::{b['name']}"


def latest_run(root: Path = Path(".benchmarks")) -> Path:
    """The newest pytest-benchmark autosave (.benchmarks/<machine>/NNNN_*.json), else reports/bench."""
    saved = sorted(root.glob("*/*.json"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    return saved[-1] if saved else Path("reports/bench")


def compare(baseline: Path, current: Path, out: Path) -> Path:
    """compare.md (+ compare.png): each benchmark in both runs, speed now / speed then."""
    base, cur = load(baseline), load(current)
    then = {_key(b): b for b in base.get("benchmarks", [])}
    items = []
    for b in cur.get("benchmarks", []):
        old = then.get(_key(b))
        if old is None:
            continue
        r, lo, hi = ratio_interval(_times(old["stats"]), _times(b["stats"]))
        items.append({"label": _key(b).split("::")[-1], "ratio": r, "low": lo, "high": hi,
                      "then": old["stats"]["median"], "now": b["stats"]["median"]})
    if not items:
        raise SystemExit(f"{baseline} and {current} share no benchmark (compared by fullname)")
    lines = ["# Benchmark comparison", "", f"Now: `{current}` ({cur.get('datetime', '?')}, commit "
             f"{(cur.get('commit_info') or {}).get('id', '?')[:10]}). Baseline: `{baseline}` ({base.get('datetime', '?')}, "
             f"commit {(base.get('commit_info') or {}).get('id', '?')[:10]}).", "",
             "Speed now / speed then = median time then / median time now (> 1: faster now), with a 95 % bootstrap "
             f"interval over the timed rounds; flagged when the interval lies wholly beyond ±{CHANGE_TOL:.0%}.", "",
             "| benchmark | then | now | speed now / then [95 % CI] | |", "|---|---:|---:|---:|---|"]
    for it in items:
        flag = ("**slower**" if it["high"] < 1 - CHANGE_TOL else "faster" if it["low"] > 1 + CHANGE_TOL else "")
        lines.append(f"| {it['label']} | {_fmt_t(it['then'])} | {_fmt_t(it['now'])} | "
                     f"{it['ratio']:.2f}x [{it['low']:.2f}, {it['high']:.2f}] | {flag} |")
    out.mkdir(parents=True, exist_ok=True)
    png = _interval_plot(items, "Speed now relative to the baseline (> 1: faster now)", "speed now / speed then",
                         out, "compare", tol=CHANGE_TOL)[0]
    lines += ["", f"![comparison]({png.name})", ""]
    md = out / "compare.md"
    md.write_text("\n".join(lines))
    return md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__.split("\n")[0])
    ap.add_argument("path", nargs="?", type=Path, help="bench JSON or its folder (default reports/bench; with "
                    "--compare: the newest .benchmarks/ autosave)")
    ap.add_argument("--compare", type=Path, metavar="BASELINE.json", help="compare PATH against this saved run")
    ap.add_argument("--out", type=Path, default=Path("reports/bench"), help="folder for compare.md/.png")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    if args.compare is not None:
        md = compare(args.compare, args.path or latest_run(), args.out)
        print(f"wrote {md} and {md.with_suffix('.png')}")
        return 0
    md = render(args.path or Path("reports/bench"))
    print(f"wrote {md}" + (f" and {md.parent / 'bench.png'}" if (md.parent / "bench.png").exists() else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
