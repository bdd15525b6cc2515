"""What study files and search files (studies/*.toml) share.

Both are TOML with these top-level keys::

    name = "droppathway"        # required: a folder name (runs/<name>/, reports/<name>/)
    title = "..."               # optional (default: the name)
    description = "..."         # optional: one paragraph for the report
    default_scale = "small"     # optional: tiny | small | paper (default "small")

    [base]                      # config keys applied to every run of the file
    model.pathways = "avslowfast"

    [scale.small]               # one table per scale: a run count and config overrides
    seeds = 2                   # a study's seeds (a search says `trials` instead)
    set = { train.epochs = 3 }

A run's config is layered: the scale's sizes (`avsf.config.SCALES`) -> ``[base]`` ->
``[scale.<s>].set`` -> the file's own layer (a study variant's ``set``, a search trial's
parameters) -> command-line ``--set``. Errors read ``<file>: key '<key>': <what is wrong>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from avsf.config import SCALES, Config, ConfigError, apply, build_config, flatten

DEFAULT_SCALE = "small"
COMMON_KEYS = frozenset({"name", "title", "description", "default_scale", "base", "scale"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SpecError(ConfigError):
    """A study or search file is wrong; the message names the file and the key."""


def default_train() -> Callable[..., dict]:
    """The trainer a study or search runs unless given one (imported late: it loads torch)."""
    from avsf.train import train

    return train


@dataclass
class ScaleSettings:
    """One ``[scale.<s>]`` table: how many runs (a study's seeds, a search's trials) and config keys."""

    count: int = 1
    set: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)  # a study's pretraining runs at this scale

    @property
    def seeds(self) -> int:
        return self.count

    @property
    def trials(self) -> int:
        return self.count


@dataclass(kw_only=True)
class TomlSpec:
    """The part of a study or search file both share; see the module docstring."""

    name: str
    title: str = ""
    description: str = ""
    default_scale: str = DEFAULT_SCALE
    base: dict[str, Any] = field(default_factory=dict)
    scales: dict[str, ScaleSettings] = field(default_factory=dict)
    source: str = ""

    def scale_settings(self, scale: str | None) -> ScaleSettings | None:
        """The file's table for `scale` (None when it has none); an unknown scale is an error."""
        scale = scale or self.default_scale
        if scale not in SCALES:
            raise SpecError(f"unknown scale '{scale}' (choose one of: {', '.join(SCALES)})")
        return self.scales.get(scale)

    def layered_config(self, scale: str | None, layer: dict[str, Any],
                       overrides: dict[str, Any] | list[str] | None = None) -> Config:
        """Scale sizes -> [base] -> [scale.<s>].set -> `layer` -> `overrides`, validated."""
        scale = scale or self.default_scale
        settings = self.scale_settings(scale)
        merged = {**self.base, **(settings.set if settings else {}), **layer}
        return build_config(scale=scale, base=merged, overrides=overrides)


class SpecReader:
    """Typed reads from one parsed file; every error names the file and the key."""

    def __init__(self, source: str, error: type[SpecError]) -> None:
        self.source, self.error = source, error

    def err(self, key: str, msg: str) -> SpecError:
        return self.error(f"{self.source}: key '{key}': {msg}")

    def no_unknown(self, tree: dict[str, Any], known: Any, where: str = "") -> None:
        unknown = sorted(set(tree) - set(known))
        if unknown:
            raise self.err(f"{where}{unknown[0]}", f"unknown key (known: {', '.join(sorted(known))})")

    def table(self, tree: dict[str, Any], key: str, hint: str, where: str = "") -> dict[str, Any]:
        value = tree.get(key, {})
        if not isinstance(value, dict):
            raise self.err(f"{where}{key}", f"must be a table, e.g. {hint}")
        return value

    def config_table(self, tree: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
        """A table of config keys (`[base]`, `set = {...}`), flattened to dotted keys."""
        return flatten(self.table(tree, key, f"{key} = {{ model.drop_pathway = 0.8 }}", where))

    def string(self, tree: dict[str, Any], key: str, *, where: str = "", default: str = "",
               required: bool = False) -> str:
        if key not in tree:
            if required:
                raise self.err(f"{where}{key}", "is required")
            return default
        value = tree[key]
        if not isinstance(value, str):
            raise self.err(f"{where}{key}", f"must be a string, got {value!r}")
        if required and not value.strip():
            raise self.err(f"{where}{key}", "must not be empty")
        return value

    def folder_name(self, tree: dict[str, Any], key: str = "name", where: str = "") -> str:
        value = self.string(tree, key, where=where, required=True)
        if not _NAME_RE.match(value):
            raise self.err(f"{where}{key}", f"'{value}' must be a folder name (letters, digits, '_', '-', '.')")
        return value

    def flag(self, tree: dict[str, Any], key: str, where: str = "") -> bool:
        value = tree.get(key, False)
        if not isinstance(value, bool):
            raise self.err(f"{where}{key}", f"must be true or false, got {value!r}")
        return value

    def number(self, tree: dict[str, Any], key: str, *, where: str = "", default: Any = None,
               integer: bool = False, low: float | None = None, low_open: bool = False) -> Any:
        """A number (an integer where asked) at or above `low` (above, with `low_open`)."""
        if key not in tree:
            return default
        value = tree[key]
        kinds = (int,) if integer else (int, float)
        ok = isinstance(value, kinds) and not isinstance(value, bool) and value == value
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if not ok:
            bound = "" if low is None else f" {'>' if low_open else '>='} {low:g}"
            raise self.err(f"{where}{key}", f"must be {'an integer' if integer else 'a number'}{bound}, got {value!r}")
        return value

    def header(self, tree: dict[str, Any]) -> dict[str, str]:
        """name, title, description and default_scale, checked."""
        name = self.folder_name(tree)
        default_scale = self.string(tree, "default_scale", default=DEFAULT_SCALE)
        if default_scale not in SCALES:
            raise self.err("default_scale", f"unknown scale '{default_scale}' (choose one of: {', '.join(SCALES)})")
        return {"name": name, "title": self.string(tree, "title") or name,
                "description": self.string(tree, "description"), "default_scale": default_scale}

    def scales(self, tree: dict[str, Any], count_key: str, default_count: int,
               extra: tuple[str, ...] = ()) -> dict[str, ScaleSettings]:
        """The ``[scale.<s>]`` tables: `count_key` (seeds | trials), `set`, and the `extra` tables
        of config keys the file type knows (a study's `pretrain`)."""
        raw = self.table(tree, "scale", "[scale.small] with seeds/trials and set")
        out: dict[str, ScaleSettings] = {}
        for sname, rs in raw.items():
            key = f"scale.{sname}"
            if sname not in SCALES:
                raise self.err(key, f"unknown scale '{sname}' (choose one of: {', '.join(SCALES)})")
            if not isinstance(rs, dict):
                raise self.err(key, f"must be a table with '{count_key}' and optional 'set'")
            known = (count_key, "set", *extra)
            bad = sorted(set(rs) - set(known))
            if bad:
                raise self.err(f"{key}.{bad[0]}",
                               f"unknown key (known: {', '.join(known)}); config keys go in {key}.set")
            count = self.number(rs, count_key, where=f"{key}.", default=default_count, integer=True, low=1)
            out[sname] = ScaleSettings(count=count, set=self.config_table(rs, "set", f"{key}."),
                                       **{name: self.config_table(rs, name, f"{key}.") for name in extra})
        return out

    def check_keys(self, blocks: list[tuple[str, dict[str, Any]]]) -> None:
        """Every key of every config block exists and reads as its type; the error names the block.

        Values are validated on the merged config of each run (a value may be valid only
        together with the base or the scale's sizes), not here.
        """
        for key, block in blocks:
            try:
                apply(Config(), block)
            except ConfigError as e:
                raise self.err(key, str(e)) from None

    def scale_blocks(self, spec: TomlSpec) -> list[tuple[str, dict[str, Any]]]:
        return [("base", spec.base)] + [(f"scale.{s}.set", st.set) for s, st in spec.scales.items()]

    def scales_to_check(self, spec: TomlSpec) -> list[str]:
        """The scales whose runs are built on load: the default one and every one the file mentions."""
        return sorted({spec.default_scale, *spec.scales})
