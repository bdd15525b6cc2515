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
    hypothesis = "..."              # optional: what the study expects to find, in one sentence
    mechanism = "..."               # optional: why it should (the paper's explanation)
    paper_dataset = "Charades"      # optional: what the paper's numbers were measured on (default Kinetics-400)
    paper_views = 30                # optional: the paper's cost column is GFLOPs x views (Tables 3, 4; 0: none)
    data_prepare = "avsf data prepare ..."  # optional: how to make the prepared folder data.dataset
                                    # names; `avsf study run` checks it exists before the first run

    [base]                          # config keys applied on top of the scale's sizes
    model.pathways = "avslowfast"

    [[variant]]
    name = "pd0"                    # run folder runs/<name>/<variant>/seed<k>/
    label = "-"                     # the paper's row label
    row = "table5c/pd0"             # a registered paper row (avsf.model.variants.ROWS): its
                                    # numbers, and its config overrides unless `set` is given
    # or, for a row the registry does not have, the config and the numbers spelled out:
    #   set = { model.drop_pathway = 0.0 }
    #   paper = { top1 = 75.2, top5 = 91.8 }   # the paper's Kinetics-400 numbers
    # optional: latex = "..." (row label in LaTeX), reference = true (a reference row,
    # e.g. visual-only SlowFast, shown apart and never the "winner"), baseline = true
    # (the baseline of the per-class gain figure)

    [scale.small]                   # one table per scale: seeds and config overrides
    seeds = 2
    set = { train.epochs = 4 }
    pretrain = { train.epochs = 8 } # optional: config keys of the pretraining runs at this scale

    # "pretrain, then probe" (docs/ssl.md): a variant with
    #   pretrain = { set = { train.rot_weight = 1.0 } }    # optional name = "..." (a shared pretraining)
    # is trained from a pretraining run of its own (once per seed, into <study>/_pretrain/<name>/seed<k>/),
    # which the runner trains first; the variant's run starts from it (train.init_from).
    [pretrain]                      # optional: config keys of every pretraining run
    train.objective = "pretext"

    [[claim]]                       # optional, repeatable: a testable comparison of two variants
    text = "high Pd beats no DropPathway"
    better = "pd0.8"                # variant names of this file
    worse = "pd0"
    metric = "top1"                 # optional: the study's `metric` unless given

Config keys are applied in this order: scale sizes (``avsf.config.SCALES``) -> ``[base]``
-> ``[scale.<s>].set`` -> the variant's ``set`` (or its row's overrides) -> command-line
``--set`` -> ``train.seed`` (avsf.study.tomlspec: what study and search files share).
A pretraining run's config: the same up to the variant's ``set``, then ``[pretrain]`` ->
``[scale.<s>].pretrain`` -> the variant's ``pretrain.set`` -> ``--set`` -> ``train.seed``.
Everything is validated on load, every run's config included; a `StudyError` names the file
and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsf.config import Config, ConfigError, read_toml
from avsf.model.variants import PAPER_KEYS, ROWS
from avsf.study.tomlspec import COMMON_KEYS, SpecError, SpecReader, TomlSpec

RESULT_METRICS = (
    "top1",
    "top5",
    "mAP",
    "val_top1",
    "top1_visual",
    "top1_audio",
    "top1_sync",
    # verb-noun data (EPIC; top1/top5 are the action's) and the noun groups of synth-epic
    "top1_verb",
    "top5_verb",
    "top1_noun",
    "top5_noun",
    "top1_noun_visual",
    "top1_noun_audio",
    # mAP over a class group: multi-label classification (synth-charades) and detection
    # (avsf.eval.detection's frame mAP)
    "mAP_visual",
    "mAP_audio",
    "mAP_sync",
)
"""Numbers in result.json a study may rank variants by (`metric`)."""

_TOP_KEYS = COMMON_KEYS | {"paper_table", "metric", "row_header", "notes", "variant", "hypothesis", "mechanism",
                           "claim", "paper_views", "data_prepare", "paper_dataset", "pretrain"}
_VARIANT_KEYS = {"name", "label", "latex", "row", "set", "paper", "reference", "baseline", "pretrain"}
_PRETRAIN_KEYS = {"name", "set"}
PRETRAIN_FOLDER = "_pretrain"
"""Where a study's pretraining runs live: <study>/_pretrain/<name>/seed<k>/ (no variant can be
named so: variant names start with a letter or digit)."""
_CLAIM_KEYS = {"text", "better", "worse", "metric"}


class StudyError(SpecError):
    """A study file is wrong; the message names the file and the key."""


@dataclass
class Pretrain:
    """A variant's pretraining run: trained first (per seed), and the variant starts from it."""

    name: str
    set: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "set": dict(self.set)}


@dataclass
class Variant:
    """One row of a study: its config layer and the paper's numbers for it (from its `row`)."""

    name: str
    label: str
    set: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, float] = field(default_factory=dict)
    latex: str = ""
    reference: bool = False
    baseline: bool = False
    row: str = ""  # the registered paper row (avsf.model.variants.ROWS) it reproduces, if any
    pretrain: Pretrain | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "latex": self.latex,
            "row": self.row,
            "set": dict(self.set),
            "paper": dict(self.paper),
            "reference": self.reference,
            "baseline": self.baseline,
            "pretrain": self.pretrain.to_dict() if self.pretrain else None,
        }


@dataclass
class Claim:
    """A testable statement of the study: `better` beats `worse` on `metric` (variant names)."""

    text: str
    better: str
    worse: str
    metric: str

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "better": self.better, "worse": self.worse, "metric": self.metric}


@dataclass(kw_only=True)
class StudySpec(TomlSpec):
    variants: list[Variant]
    paper_table: str = ""
    metric: str = "top1"
    row_header: str = ""
    notes: str = ""
    hypothesis: str = ""
    mechanism: str = ""
    claims: list[Claim] = field(default_factory=list)
    paper_views: int = 0  # > 0: the paper's GFLOPs are per view of this many (report: GFLOPs x views)
    paper_dataset: str = ""  # what the paper's numbers were measured on ("": Kinetics-400, R-50 4x16)
    data_prepare: str = ""  # the command that prepares the folder data.dataset names
    pretrain: dict[str, Any] = field(default_factory=dict)  # [pretrain]: keys of every pretraining run

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise StudyError(f"study '{self.name}' has no variant '{name}' (variants: {', '.join(self.variant_names)})")

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants]

    @property
    def paper_ref(self) -> str:
        """Where in the paper the study comes from: "Table 5c", "Table A.3", "Sec. 3.4"."""
        t = self.paper_table
        if not t:
            return "the paper"
        if t[0].isdigit() or (len(t) > 1 and t[0].isalpha() and t[1] == "."):
            return f"Table {t}"
        return t

    def seeds(self, scale: str | None = None, n: int | None = None) -> list[int]:
        settings = self.scale_settings(scale)
        count = (settings.seeds if settings else 1) if n is None else n
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
        pretrain: bool = False,
    ) -> Config:
        """The fully resolved config of one run: variant x seed at a scale; `pretrain`: the
        variant's pretraining run instead (it must have one)."""
        v = variant if isinstance(variant, Variant) else self.variant(variant)
        layer, name = v.set, f"{self.name}/{v.name}/seed{seed}"
        if pretrain:
            if v.pretrain is None:
                raise StudyError(f"study '{self.name}': variant '{v.name}' has no pretraining run")
            settings = self.scale_settings(scale)
            layer = {**v.set, **self.pretrain, **(settings.pretrain if settings else {}), **v.pretrain.set}
            name = f"{self.name}/{PRETRAIN_FOLDER}/{v.pretrain.name}/seed{seed}"
        cfg = self.layered_config(scale, layer, overrides)
        cfg.train.seed = int(seed)
        cfg.name = name
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
            "hypothesis": self.hypothesis,
            "mechanism": self.mechanism,
            "claims": [c.to_dict() for c in self.claims],
            "paper_views": self.paper_views,
            "paper_dataset": self.paper_dataset,
            "data_prepare": self.data_prepare,
            "pretrain": dict(self.pretrain),
            "variants": [v.to_dict() for v in self.variants],
            "scales": {k: {"seeds": s.seeds, "set": dict(s.set), "pretrain": dict(s.pretrain)}
                       for k, s in self.scales.items()},
            "source": self.source,
        }


# ----------------------------------------------------------------------------- loading


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file; errors name the file and the key."""
    return study_from_dict(read_toml(path, what="study", error=StudyError), source=str(path))


def study_from_dict(tree: dict[str, Any], *, source: str = "<study>") -> StudySpec:
    """Validate a parsed study tree (TOML, or `StudySpec.to_dict()` from study.json)."""
    r = SpecReader(source, StudyError)
    tree = dict(tree)
    # study.json stores the arrays of tables under plural names
    for plural, key in (("variants", "variant"), ("scales", "scale"), ("claims", "claim")):
        if plural in tree and key not in tree:
            tree[key] = tree.pop(plural)
    tree.pop("source", None)
    r.no_unknown(tree, _TOP_KEYS)
    head = r.header(tree)
    metric = _metric(r, tree, "metric", "top1")
    variants = _variants(tree, r)
    spec = StudySpec(
        **head,
        variants=variants,
        hypothesis=r.string(tree, "hypothesis"),
        mechanism=r.string(tree, "mechanism"),
        claims=_claims(tree, r, metric, [v.name for v in variants]),
        paper_views=r.number(tree, "paper_views", default=0, integer=True, low=0),
        data_prepare=r.string(tree, "data_prepare"),
        paper_dataset=r.string(tree, "paper_dataset"),
        paper_table=r.string(tree, "paper_table"),
        metric=metric,
        row_header=r.string(tree, "row_header"),
        notes=r.string(tree, "notes"),
        base=r.config_table(tree, "base"),
        pretrain=r.config_table(tree, "pretrain"),
        scales=r.scales(tree, "seeds", 1, extra=("pretrain",)),
        source=source,
    )
    _check_configs(spec, r)
    return spec


def _metric(r: SpecReader, tree: dict[str, Any], key: str, default: str, where: str = "") -> str:
    metric = r.string(tree, key, where=where, default=default)
    if metric not in RESULT_METRICS:
        raise r.err(f"{where}{key}", f"'{metric}' is not a result number (choose one of: {', '.join(RESULT_METRICS)})")
    return metric


def _claims(tree: dict[str, Any], r: SpecReader, metric: str, names: list[str]) -> list[Claim]:
    raw = tree.get("claim", [])
    if not isinstance(raw, list):
        raise r.err("claim", "must be an array of tables ([[claim]] with text, better, worse)")
    claims = []
    for i, rc in enumerate(raw):
        where = f"claim[{i}]"
        if not isinstance(rc, dict):
            raise r.err(where, "must be a table with text, better, worse")
        r.no_unknown(rc, _CLAIM_KEYS, f"{where}.")
        side = {}
        for key in ("better", "worse"):
            side[key] = r.string(rc, key, where=f"{where}.", required=True)
            if side[key] not in names:
                raise r.err(f"{where}.{key}", f"'{side[key]}' is not a variant of this study "
                                              f"(variants: {', '.join(names)})")
        if side["better"] == side["worse"]:
            raise r.err(f"{where}.worse", f"compares '{side['worse']}' with itself")
        claims.append(Claim(text=r.string(rc, "text", where=f"{where}.", required=True), **side,
                            metric=_metric(r, rc, "metric", metric, f"{where}.")))
    return claims


def _variants(tree: dict[str, Any], r: SpecReader) -> list[Variant]:
    raw = tree.get("variant")
    if not raw:
        raise r.err("variant", "a study needs at least one [[variant]]")
    if not isinstance(raw, list):
        raise r.err("variant", "must be an array of tables ([[variant]])")
    variants = [_variant(rv, i, r) for i, rv in enumerate(raw)]
    seen: set[str] = set()
    for i, v in enumerate(variants):
        if v.name in seen:
            raise r.err(f"variant[{i}].name", f"duplicate variant name '{v.name}'")
        seen.add(v.name)
    if sum(v.baseline for v in variants) > 1:
        raise r.err("variant.baseline", "at most one variant may be the baseline")
    if all(v.reference for v in variants):
        raise r.err("variant.reference", "at least one variant must not be a reference row")
    return variants


def _variant(rv: Any, i: int, r: SpecReader) -> Variant:
    where = f"variant[{i}]"
    if not isinstance(rv, dict):
        raise r.err(where, "must be a table")
    r.no_unknown(rv, _VARIANT_KEYS, f"{where}.")
    name = r.folder_name(rv, where=f"{where}.")
    where = f"variant[{i}] ('{name}')."
    row = r.string(rv, "row", where=where)
    paper = _paper(rv, row, r, where)
    vset = r.config_table(rv, "set", where)
    if row and "set" not in rv:
        vset = dict(ROWS[row].overrides)
    return Variant(name=name, label=r.string(rv, "label", where=where, default=name), row=row,
                   latex=r.string(rv, "latex", where=where), set=vset, paper=paper,
                   reference=r.flag(rv, "reference", where), baseline=r.flag(rv, "baseline", where),
                   pretrain=_pretrain(rv, name, r, where))


def _pretrain(rv: dict[str, Any], variant: str, r: SpecReader, where: str) -> Pretrain | None:
    """A variant's `pretrain = { name = "...", set = {...} }` (None without one)."""
    if rv.get("pretrain") is None:  # study.json writes null for a variant without one
        return None
    table = r.table(rv, "pretrain", 'pretrain = { set = { train.objective = "pretext" } }', where)
    r.no_unknown(table, _PRETRAIN_KEYS, f"{where}pretrain.")
    name = r.folder_name(table, where=f"{where}pretrain.") if "name" in table else variant
    return Pretrain(name=name, set=r.config_table(table, "set", f"{where}pretrain."))


def _paper(rv: dict[str, Any], row: str, r: SpecReader, where: str) -> dict[str, float]:
    """The variant's paper numbers: its row's, or its own `paper` table where it has no row."""
    paper = r.table(rv, "paper", "paper = { top1 = 77.0, top5 = 92.7 }", where)
    clean: dict[str, float] = {}
    for k in paper:
        if k not in PAPER_KEYS:
            raise r.err(f"{where}paper.{k}", f"unknown number (known: {', '.join(PAPER_KEYS)})")
        clean[k] = float(r.number(paper, k, where=f"{where}paper."))
    if not row:
        return clean
    if row not in ROWS:
        raise r.err(f"{where}row", f"'{row}' is not a registered paper row (known: {', '.join(ROWS)})")
    # study.json repeats the row's numbers; a file that types other numbers has two sources
    if clean and clean != ROWS[row].paper:
        raise r.err(f"{where}paper", f"the numbers come from row '{row}' ({ROWS[row].paper}); drop `paper`")
    return ROWS[row].paper


def _check_configs(spec: StudySpec, r: SpecReader) -> None:
    """Every block's keys exist; every run's merged config (variant x every scale the file
    mentions) passes `Config.validate`."""
    r.check_keys(r.scale_blocks(spec) + [(f"variant[{i}] ('{v.name}').set", v.set)
                                         for i, v in enumerate(spec.variants)]
                 + [("pretrain", spec.pretrain)]
                 + [(f"scale.{k}.pretrain", st.pretrain) for k, st in spec.scales.items()]
                 + [(f"variant[{i}] ('{v.name}').pretrain.set", v.pretrain.set)
                    for i, v in enumerate(spec.variants) if v.pretrain])
    for s in r.scales_to_check(spec):
        for i, v in enumerate(spec.variants):
            try:
                cfg = spec.config_for(v, scale=s)
            except ConfigError as e:
                raise r.err(f"variant[{i}] ('{v.name}') at scale {s}", str(e)) from None
            if v.pretrain is not None:
                _check_pretrain(spec, r, i, v, s, cfg)


def _check_pretrain(spec: StudySpec, r: SpecReader, i: int, v: Variant, scale: str, cfg: Config) -> None:
    """A variant's pretraining run: a valid config, the only source of the variant's weights, and
    one config per pretraining name (variants that share one share the run)."""
    from avsf.run import config_diff

    where = f"variant[{i}] ('{v.name}').pretrain"
    if cfg.train.init_from:
        raise r.err(where, f"the variant starts from its pretraining run, so it must not set train.init_from "
                           f"({cfg.train.init_from!r})")
    try:
        pre = spec.config_for(v, scale=scale, pretrain=True)
    except ConfigError as e:
        raise r.err(f"{where} at scale {scale}", str(e)) from None
    for j, other in enumerate(spec.variants[:i]):
        if other.pretrain is not None and other.pretrain.name == v.pretrain.name:
            diff = config_diff(spec.config_for(other, scale=scale, pretrain=True).to_dict(), pre.to_dict())
            if diff:
                raise r.err(f"{where}.name", f"'{v.pretrain.name}' is also variant[{j}] ('{other.name}')'s pretraining "
                                             f"run, with another config at scale {scale} ({'; '.join(diff[:3])}); "
                                             f"give one of them another name")


def discover_studies(folder: str | Path = "studies", *, include_searches: bool = False) -> list[Path]:
    """Study files in a folder, sorted; `search_*.toml` (Optuna searches) left out by default."""
    paths = sorted(Path(folder).glob("*.toml"))
    if not include_searches:
        paths = [p for p in paths if not p.name.startswith("search_")]
    return paths
