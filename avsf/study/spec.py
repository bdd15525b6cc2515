"""Study files: one paper ablation = a base config plus the variants of one axis.

A study file (``studies/<name>.toml``) reads::

    name = "droppathway"            # folder name under runs/ and reports/
    title = "DropPathway rate Pd"
    paper_table = "5c"              # the paper's table this reproduces
    metric = "top1"                 # the number that decides which variant won
    row_header = "$P_d$"            # optional: first column's header in the LaTeX table
    description = "..."             # optional: one paragraph for summary.md
    notes = "..."                   # optional: caveats printed under the table
    default_scale = "small"         # optional (default "small")

    [base]                          # config keys applied on top of the scale's sizes
    model.pathways = "avslowfast"

    [[variant]]
    name = "pd0"                    # run folder runs/<name>/<variant>/seed<k>/
    label = "-"                     # the paper's row label
    set = { model.drop_pathway = 0.0 }
    paper = { top1 = 75.2, top5 = 91.8 }   # the paper's Kinetics-400 numbers for the row
    # optional: latex = "..." (row label in LaTeX), reference = true (a reference row,
    # e.g. visual-only SlowFast, shown apart and never the "winner"), baseline = true
    # (the baseline of the per-class gain figure)

    [scale.small]                   # one table per scale: seeds and config overrides
    seeds = 2
    set = { train.epochs = 4 }

Config keys are applied in this order: scale sizes (``avsf.config.SCALES``) -> ``[base]``
-> ``[scale.<s>].set`` -> the variant's ``set`` -> command-line ``--set`` -> ``train.seed``.
Everything is validated on load; a `StudyError` names the file and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsf.config import SCALES, Config, ConfigError, apply, build_config, flatten, read_toml

DEFAULT_SCALE = "small"

RESULT_METRICS = (
    "top1",
    "top5",
    "mAP",
    "val_top1",
    "top1_visual",
    "top1_audio",
    "top1_sync",
)
"""Numbers in result.json a study may rank variants by (`metric`)."""

PAPER_KEYS = ("top1", "top5", "mAP", "gflops")
"""Numbers a variant's `paper` table may carry (copied from the paper)."""

_TOP_KEYS = {
    "name",
    "title",
    "paper_table",
    "metric",
    "row_header",
    "description",
    "notes",
    "default_scale",
    "base",
    "variant",
    "scale",
}
_VARIANT_KEYS = {"name", "label", "latex", "set", "paper", "reference", "baseline"}
_SCALE_KEYS = {"seeds", "set"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class StudyError(ConfigError):
    """A study file is wrong; the message names the file and the key."""


@dataclass
class Variant:
    name: str
    label: str
    set: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, float] = field(default_factory=dict)
    latex: str = ""
    reference: bool = False
    baseline: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "latex": self.latex,
            "set": dict(self.set),
            "paper": dict(self.paper),
            "reference": self.reference,
            "baseline": self.baseline,
        }


@dataclass
class ScaleSettings:
    seeds: int = 1
    set: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"seeds": self.seeds, "set": dict(self.set)}


@dataclass
class StudySpec:
    name: str
    title: str
    variants: list[Variant]
    paper_table: str = ""
    metric: str = "top1"
    row_header: str = ""
    description: str = ""
    notes: str = ""
    default_scale: str = DEFAULT_SCALE
    base: dict[str, Any] = field(default_factory=dict)
    scales: dict[str, ScaleSettings] = field(default_factory=dict)
    source: str = ""

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise StudyError(f"study '{self.name}' has no variant '{name}' (variants: {', '.join(self.variant_names)})")

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants]

    def scale_settings(self, scale: str | None) -> ScaleSettings:
        scale = scale or self.default_scale
        if scale not in SCALES:
            raise StudyError(f"unknown scale '{scale}' (choose one of: {', '.join(SCALES)})")
        return self.scales.get(scale, ScaleSettings())

    def seeds(self, scale: str | None = None, n: int | None = None) -> list[int]:
        count = self.scale_settings(scale).seeds if n is None else n
        if count < 1:
            raise StudyError(f"--seeds must be at least 1, got {count}")
        return list(range(count))

    def config_for(
        self,
        variant: str | Variant,
        *,
        scale: str | None = None,
        seed: int = 0,
        overrides: dict[str, Any] | list[str] | None = None,
    ) -> Config:
        """The fully resolved config of one run: variant x seed at a scale."""
        v = variant if isinstance(variant, Variant) else self.variant(variant)
        scale = scale or self.default_scale
        merged: dict[str, Any] = {}
        merged.update(self.base)
        merged.update(self.scale_settings(scale).set)
        merged.update(v.set)
        cfg = build_config(scale=scale, base=merged, overrides=overrides)
        cfg.train.seed = int(seed)
        cfg.name = f"{self.name}/{v.name}/seed{seed}"
        return cfg

    def baseline_variant(self) -> Variant:
        """The variant the per-class gain figure compares against.

        Marked `baseline = true`; else the visual-only one (`model.pathways = "slowfast"`);
        else the first variant.
        """
        for v in self.variants:
            if v.baseline:
                return v
        for v in self.variants:
            if self._merged(v).get("model.pathways") == "slowfast":
                return v
        return self.variants[0]

    def is_audiovisual(self, v: Variant) -> bool:
        return self._merged(v).get("model.pathways", "avslowfast") == "avslowfast"

    def _merged(self, v: Variant) -> dict[str, Any]:
        return {**self.base, **v.set}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "paper_table": self.paper_table,
            "metric": self.metric,
            "row_header": self.row_header,
            "description": self.description,
            "notes": self.notes,
            "default_scale": self.default_scale,
            "base": dict(self.base),
            "variants": [v.to_dict() for v in self.variants],
            "scales": {k: s.to_dict() for k, s in self.scales.items()},
            "source": self.source,
        }


# ----------------------------------------------------------------------------- loading


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file; errors name the file and the key."""
    tree = read_toml(path, what="study", error=StudyError)
    return study_from_dict(tree, source=str(path))


def study_from_dict(tree: dict[str, Any], *, source: str = "<study>") -> StudySpec:
    """Validate a parsed study tree (TOML, or `StudySpec.to_dict()` from study.json)."""

    def err(key: str, msg: str) -> StudyError:
        return StudyError(f"{source}: key '{key}': {msg}")

    tree = dict(tree)
    # study.json stores the variants as "variants" and scales as "scales"
    if "variants" in tree and "variant" not in tree:
        tree["variant"] = tree.pop("variants")
    if "scales" in tree and "scale" not in tree:
        tree["scale"] = tree.pop("scales")
    tree.pop("source", None)

    unknown = sorted(set(tree) - _TOP_KEYS)
    if unknown:
        raise err(unknown[0], f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")

    name = _string(tree, "name", err, required=True)
    if not _NAME_RE.match(name):
        raise err("name", f"'{name}' must be a folder name (letters, digits, '_', '-', '.')")
    title = _string(tree, "title", err) or name
    metric = _string(tree, "metric", err) or "top1"
    if metric not in RESULT_METRICS:
        raise err("metric", f"'{metric}' is not a result number (choose one of: {', '.join(RESULT_METRICS)})")
    default_scale = _string(tree, "default_scale", err) or DEFAULT_SCALE
    if default_scale not in SCALES:
        raise err("default_scale", f"unknown scale '{default_scale}' (choose one of: {', '.join(SCALES)})")

    base = tree.get("base", {})
    if not isinstance(base, dict):
        raise err("base", "must be a table of config keys, e.g. [base] model.drop_pathway = 0.8")
    base = flatten(base)

    raw_variants = tree.get("variant")
    if not raw_variants:
        raise err("variant", "a study needs at least one [[variant]]")
    if not isinstance(raw_variants, list):
        raise err("variant", "must be an array of tables ([[variant]])")
    variants: list[Variant] = []
    for i, rv in enumerate(raw_variants):
        variants.append(_variant(rv, i, err))
    seen: set[str] = set()
    for i, v in enumerate(variants):
        if v.name in seen:
            raise err(f"variant[{i}].name", f"duplicate variant name '{v.name}'")
        seen.add(v.name)
    if sum(v.baseline for v in variants) > 1:
        raise err("variant.baseline", "at most one variant may be the baseline")
    if all(v.reference for v in variants):
        raise err("variant.reference", "at least one variant must not be a reference row")

    raw_scales = tree.get("scale", {})
    if not isinstance(raw_scales, dict):
        raise err("scale", "must be tables [scale.small], [scale.tiny], [scale.paper]")
    scales: dict[str, ScaleSettings] = {}
    for sname, rs in raw_scales.items():
        key = f"scale.{sname}"
        if sname not in SCALES:
            raise err(key, f"unknown scale '{sname}' (choose one of: {', '.join(SCALES)})")
        if not isinstance(rs, dict):
            raise err(key, "must be a table with 'seeds' and optional 'set'")
        bad = sorted(set(rs) - _SCALE_KEYS)
        if bad:
            raise err(f"{key}.{bad[0]}", f"unknown key (known: seeds, set); config keys go in {key}.set")
        seeds = rs.get("seeds", 1)
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise err(f"{key}.seeds", f"must be a positive integer, got {seeds!r}")
        sset = rs.get("set", {})
        if not isinstance(sset, dict):
            raise err(f"{key}.set", "must be a table of config keys")
        scales[sname] = ScaleSettings(seeds=seeds, set=flatten(sset))

    spec = StudySpec(
        name=name,
        title=title,
        variants=variants,
        paper_table=_string(tree, "paper_table", err),
        metric=metric,
        row_header=_string(tree, "row_header", err),
        description=_string(tree, "description", err),
        notes=_string(tree, "notes", err),
        default_scale=default_scale,
        base=base,
        scales=scales,
        source=source,
    )
    _check_configs(spec, err)
    return spec


def _string(tree: dict[str, Any], key: str, err, *, required: bool = False) -> str:
    if key not in tree:
        if required:
            raise err(key, "is required")
        return ""
    value = tree[key]
    if not isinstance(value, str):
        raise err(key, f"must be a string, got {value!r}")
    if required and not value.strip():
        raise err(key, "must not be empty")
    return value


def _variant(rv: Any, i: int, err) -> Variant:
    where = f"variant[{i}]"
    if not isinstance(rv, dict):
        raise err(where, "must be a table")
    bad = sorted(set(rv) - _VARIANT_KEYS)
    if bad:
        raise err(f"{where}.{bad[0]}", f"unknown key (known: {', '.join(sorted(_VARIANT_KEYS))})")
    name = rv.get("name")
    if not isinstance(name, str) or not name:
        raise err(f"{where}.name", "is required (a folder name)")
    where = f"variant[{i}] ('{name}')"
    if not _NAME_RE.match(name):
        raise err(f"{where}.name", f"'{name}' must be a folder name (letters, digits, '_', '-', '.')")
    label = rv.get("label", name)
    if not isinstance(label, str):
        raise err(f"{where}.label", f"must be a string, got {label!r}")
    latex = rv.get("latex", "")
    if not isinstance(latex, str):
        raise err(f"{where}.latex", f"must be a string, got {latex!r}")
    vset = rv.get("set", {})
    if not isinstance(vset, dict):
        raise err(f"{where}.set", "must be a table of config keys, e.g. set = { model.beta_a = 0.25 }")
    paper = rv.get("paper", {})
    if not isinstance(paper, dict):
        raise err(f"{where}.paper", "must be a table, e.g. paper = { top1 = 77.0, top5 = 92.7 }")
    clean_paper: dict[str, float] = {}
    for k, val in paper.items():
        if k not in PAPER_KEYS:
            raise err(f"{where}.paper.{k}", f"unknown number (known: {', '.join(PAPER_KEYS)})")
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            raise err(f"{where}.paper.{k}", f"must be a number, got {val!r} (leave it out when the paper has none)")
        clean_paper[k] = float(val)
    flags = {}
    for flag in ("reference", "baseline"):
        val = rv.get(flag, False)
        if not isinstance(val, bool):
            raise err(f"{where}.{flag}", f"must be true or false, got {val!r}")
        flags[flag] = val
    return Variant(name=name, label=label, latex=latex, set=flatten(vset), paper=clean_paper, **flags)


def _check_configs(spec: StudySpec, err) -> None:
    """Every key of every block exists and reads as its type (named by its block); then every
    run's merged config, variant x every scale the file mentions, passes `Config.validate`.

    Values are validated merged, not block by block: a variant's value may be valid only
    together with the base or the scale's sizes.
    """
    blocks = [("base", spec.base)]
    blocks += [(f"scale.{s}.set", st.set) for s, st in spec.scales.items()]
    blocks += [(f"variant[{i}] ('{v.name}').set", v.set) for i, v in enumerate(spec.variants)]
    for key, block in blocks:
        try:
            apply(Config(), block)
        except ConfigError as e:
            raise err(key, str(e)) from None
    for s in sorted({spec.default_scale, *spec.scales}):
        for i, v in enumerate(spec.variants):
            try:
                spec.config_for(v, scale=s)
            except ConfigError as e:
                raise err(f"variant[{i}] ('{v.name}') at scale {s}", str(e)) from None


def discover_studies(folder: str | Path = "studies", *, include_searches: bool = False) -> list[Path]:
    """Study files in a folder, sorted; `search_*.toml` (Optuna searches) left out by default."""
    paths = sorted(Path(folder).glob("*.toml"))
    if not include_searches:
        paths = [p for p in paths if not p.name.startswith("search_")]
    return paths
