"""Report numbers, assembled from a study folder alone (runs/NAME): nothing is typed in.

Accuracies in result.json are fractions (0..1, the trainer's convention); reports show
percent, as the paper does. A study whose results are already in percent (any value > 1)
is shown as is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avsf.report.latex import plain
from avsf.study.spec import StudySpec, Variant
from avsf.study.store import RunRecord, Stat, StudyRecord, load_study_dir, read_json

if TYPE_CHECKING:
    from avsf.report.evidence import Evidence
    from avsf.stats import Interval

# result.json numbers the reports know how to name, in display order
KNOWN_KEYS = (
    "top1",
    "top5",
    "mAP",
    "top1_verb",
    "top5_verb",
    "top1_noun",
    "top5_noun",
    "val_top1",
    "best_val_top1",
    "top1_visual",
    "top1_audio",
    "top1_sync",
    "gflops",
    "params_m",
    "epochs",
    "train_time_s",
)
NAMES = {
    "top1": "top-1",
    "top5": "top-5",
    "mAP": "mAP",
    "val_top1": "val top-1",
    "best_val_top1": "best val top-1",
    "top1_visual": "top-1 visual classes",
    "top1_audio": "top-1 audio classes",
    "top1_sync": "top-1 sync classes",
    "top1_verb": "verb top-1",
    "top5_verb": "verb top-5",
    "top1_noun": "noun top-1",
    "top5_noun": "noun top-5",
    "top1_noun_visual": "noun top-1, seen nouns",
    "top1_noun_audio": "noun top-1, heard nouns",
    "gflops": "GFLOPs",
    "params_m": "params (M)",
    "epochs": "epochs",
    "train_time_s": "train time (s)",
}


def is_accuracy(key: str) -> bool:
    return key in ("top1", "top5", "mAP", "val_top1", "best_val_top1") or key.startswith(("top1_", "top5_", "mAP_"))


def metric_name(key: str) -> str:
    return NAMES.get(key, key.replace("_", " "))


@dataclass
class Row:
    variant: Variant
    stats: dict[str, Stat]
    runs: list[RunRecord]
    n_planned: int

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def label(self) -> str:
        return self.variant.label or self.variant.name

    def mean(self, key: str) -> float | None:
        s = self.stats.get(key)
        return s.mean if s else None

    def named(self, header: str) -> str:
        """The label as a phrase: "Pd = 0.8" for bare values ("0.8", "1/8", "-"), else the label."""
        lab = self.label
        if header and re.fullmatch(r"[-+0-9./ ]+", lab):
            return f"{plain(header)} = {lab}"
        return lab


@dataclass
class ReportData:
    record: StudyRecord
    rows: list[Row]
    keys: list[str]  # result keys present, display order
    percent: dict[str, float] = field(default_factory=dict)  # key -> factor to display units
    dataset: str = ""
    views: int = 0  # test views per video of the runs (eval.temporal_views x spatial_views); 0: unknown

    @property
    def paper_data(self) -> str:
        """What the paper's numbers were measured on: the study's `paper_dataset`, else Kinetics-400."""
        return self.spec.paper_dataset or "Kinetics-400"

    @property
    def paper_setup(self) -> str:
        """The paper's setup behind its columns, for captions (the study's notes give the rest)."""
        if self.spec.paper_dataset:
            return self.spec.paper_dataset
        return "Kinetics-400, R-50 4×16, GFLOPs at 256²"

    def per_class_metric(self) -> str:
        """What per_class.json holds per class ("top-1 accuracy", "average precision", ...)."""
        for row in self.rows:
            for run in row.runs:
                pc = run.per_class()
                if pc and isinstance(pc.get("metric"), str):
                    return pc["metric"]
        return "top-1 accuracy"

    @property
    def spec(self) -> StudySpec:
        return self.record.spec

    @cached_property
    def evidence(self) -> Evidence | None:
        """The paired statistics from the runs' predictions.json (None without any)."""
        from avsf.report.evidence import gather_evidence

        return gather_evidence(self)

    def text_of(self, name: str) -> str:
        """A top-level study string (`hypothesis`, `mechanism`; contract 7), one line, "" when absent."""
        return " ".join(str(getattr(self.spec, name, "") or "").split())

    @property
    def metric(self) -> str:
        return self.spec.metric

    @property
    def name(self) -> str:
        return self.record.name

    def named(self, row: Row) -> str:
        return row.named(self.spec.row_header)

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    def ranked(self) -> list[Row]:
        """Non-reference rows with results, best first by the study's metric."""
        rows = [r for r in self.rows if not r.variant.reference and r.mean(self.metric) is not None]
        return sorted(rows, key=lambda r: r.mean(self.metric), reverse=True)

    def winner(self) -> Row | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def paper_winner(self) -> Variant | None:
        vs = [v for v in self.spec.variants if not v.reference and self.metric in v.paper]
        return max(vs, key=lambda v: v.paper[self.metric]) if vs else None

    def unit(self, key: str) -> str:
        return " %" if key in self.percent and self.percent[key] == 100.0 or (is_accuracy(key) and key in self.percent) else ""

    def seeds_text(self) -> str:
        ns = sorted({r.stats[self.metric].n for r in self.rows if self.metric in self.stats_keys(r)})
        if not ns:
            return "no finished runs"
        if len(ns) == 1:
            return f"{ns[0]} seed{'s' if ns[0] != 1 else ''}"
        return f"{ns[0]}-{ns[-1]} seeds"

    @staticmethod
    def stats_keys(row: Row) -> set[str]:
        return {k for k, s in row.stats.items() if s.n}

    def scale_text(self) -> str:
        return f"scale {self.record.scale}"

    def per_class(self, row: Row) -> tuple[list[str], dict[str, Any], list[float | None]] | None:
        """Mean per-class accuracy over a variant's finished seeds (display units)."""
        classes: list[str] | None = None
        groups: dict[str, Any] = {}
        sums: list[float] = []
        counts: list[int] = []
        for run in row.runs:
            pc = run.per_class()
            if not pc or not isinstance(pc.get("accuracy"), list):
                continue
            acc = pc["accuracy"]
            if classes is None:
                classes = [str(c) for c in pc.get("classes") or range(len(acc))]
                groups = pc.get("groups") or {}
                sums, counts = [0.0] * len(acc), [0] * len(acc)
            if len(acc) != len(sums):
                continue
            for i, a in enumerate(acc):
                if isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a):
                    sums[i] += float(a)
                    counts[i] += 1
        if classes is None:
            return None
        means = [s / c if c else None for s, c in zip(sums, counts)]
        vals = [m for m in means if m is not None]
        factor = 100.0 if vals and max(vals) <= 1.0 else 1.0
        return classes, groups, [m * factor if m is not None else None for m in means]


def gather(study_dir: str | Path) -> ReportData:
    record = load_study_dir(study_dir)
    present = record.result_keys()
    keys = [k for k in KNOWN_KEYS if k in present] + [
        k for k in present if k not in KNOWN_KEYS and is_accuracy(k)
    ]
    percent: dict[str, float] = {}
    for k in keys:
        if is_accuracy(k):
            vals = [v for r in record.runs for v in [r.number(k)] if v is not None]
            percent[k] = 100.0 if vals and max(vals) <= 1.0 else 1.0
    rows: list[Row] = []
    for v in record.spec.variants:
        runs = record.runs_of(v.name)
        stats = {}
        for k in keys:
            f = percent.get(k, 1.0)
            stats[k] = Stat.of([x * f for x in record.values(v.name, k)])
        rows.append(Row(variant=v, stats=stats, runs=runs, n_planned=len(record.runs_of(v.name, state=None))))
    dataset, views = "", 0
    for r in record.runs:
        cfg = read_json(r.path / "config.json")
        if isinstance(cfg, dict):
            dataset = str(cfg.get("data", {}).get("dataset", ""))
            ev = cfg.get("eval", {})
            views = int(ev.get("temporal_views", 0) or 0) * int(ev.get("spatial_views", 0) or 0)
            break
    return ReportData(record=record, rows=rows, keys=keys, percent=percent, dataset=dataset, views=views)


def on_benchmark(data: ReportData) -> bool:
    """The runs used the built-in synthetic benchmark (`data.dataset = "synth"`)."""
    return data.dataset in ("", "synth")


def dataset_text(data: ReportData) -> str:
    if on_benchmark(data):
        return "the built-in synthetic benchmark"
    return f"dataset {data.dataset}"


def fmt(stat: Stat | None, digits: int = 1, *, pm: str = " ± ") -> str:
    if stat is None or stat.mean is None:
        return "–"
    if stat.n <= 1:
        return f"{stat.mean:.{digits}f}"
    return f"{stat.mean:.{digits}f}{pm}{stat.std:.{digits}f}"


def fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def fmt_ci(iv: Interval | None, *, signed: bool = False, factor: float = 100.0) -> str:
    """ "81.0 [76.2, 85.5]" (fractions shown in percent); signed: "+6.0 [+1.2, +10.8]"."""
    if iv is None or not math.isfinite(iv.estimate):
        return "–"
    f = "{:+.1f}" if signed else "{:.1f}"
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return f.format(iv.estimate * factor)
    return f"{f.format(iv.estimate * factor)} [{f.format(iv.low * factor)}, {f.format(iv.high * factor)}]"


def fmt_gflops(x: float | None) -> str:
    if x is None:
        return "–"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"
