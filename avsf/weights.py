"""Weights in: read a run folder, a checkpoint or a bare state dict safely and load what matches.

    report = load_weights(model, "runs/x")             # a run folder: its checkpoints/last.pt
    report = load_weights(model, "model.pyth", new_heads=("head.*",))
    print(report)                                      # loaded / missing / unexpected / shapes

Every file is read with `torch.load(weights_only=True)` (avsf.io.load_torch_file): tensors and
plain containers only, so a crafted file cannot run code while it loads; it is refused with a
clear error.

Layouts understood: a bare state dict, `{"model_state": ...}` (PySlowFast), `{"model": ...}`
(avsf checkpoints), `{"state_dict": ...}`. Parameter names are translated by a key map, picked
by name from `KEY_MAPS`; `register_key_map` adds one (avsf/convert.py adds pytorchvideo's and
PySlowFast's). Without a `key_map` the layout is recognised by its names
(`avsf.convert.detect_key_map`); avsf's own map strips the prefixes DDP (`module.`) and
torch.compile (`_orig_mod.`) put in front of every name.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsf.config import ConfigError
from avsf.io import load_torch_file

KeyMap = Callable[[dict[str, Any]], dict[str, Any]]

KEY_MAPS: dict[str, KeyMap] = {}
"""Key maps by name: state dict in the source's names -> state dict in avsf's names."""


class WeightsError(ConfigError):
    """A weights source cannot be read or does not fit the model; the message names it."""


def register_key_map(name: str) -> Callable[[KeyMap], KeyMap]:
    """Decorator: `@register_key_map("pytorchvideo")` makes `load_weights(..., key_map="pytorchvideo")` use it."""

    def add(fn: KeyMap) -> KeyMap:
        if name in KEY_MAPS:
            raise ValueError(f"key map '{name}' is registered twice")
        KEY_MAPS[name] = fn
        return fn

    return add


@register_key_map("avsf")
def strip_wrapper_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """avsf's own names, without the `module.` (DDP) or `_orig_mod.` (torch.compile) prefixes."""
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


# ----------------------------------------------------------------------------- reading
def find_state_dict(obj: Any, source: str) -> dict[str, Any]:
    """The tensor dict inside a loaded file (see the module docstring for the layouts)."""
    import torch

    if isinstance(obj, dict):
        for key in ("model_state", "model", "state_dict"):
            if isinstance(obj.get(key), dict):
                return find_state_dict(obj[key], source)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(obj):
            return tensors
    shown = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__
    raise WeightsError(f"{source}: no state dict found (top level: {shown}); expected a dict of tensors, or one "
                       f"under 'model_state', 'model' or 'state_dict'")


def read_state_dict(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(state dict, name of the source) from a run folder, a checkpoint file or a loaded dict."""
    if isinstance(source, dict):
        return find_state_dict(source, "the given state dict"), "the given state dict"
    p = checkpoint_file(source)
    return find_state_dict(load_torch_file(p), str(p)), str(p)


def checkpoint_file(source: str | Path) -> Path:
    """The file a weights source names: a run folder's checkpoints/last.pt, or the file itself;
    an error naming it when there is none (nothing is read)."""
    from avsf.io import UnreadableFile

    p = Path(source).expanduser()
    if p.is_dir():
        from avsf.run import RunDir

        p = RunDir(p).checkpoint_path
        if not p.is_file():
            raise WeightsError(f"{source} holds no checkpoint ({p} is missing); give a finished run folder or a "
                               f"checkpoint file")
    elif not p.is_file():
        raise UnreadableFile(f"{p} does not exist (give a run folder or a checkpoint file)")
    return p


# ----------------------------------------------------------------------------- loading
@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model tensors the source lacks: keep their init
    unexpected: list[str] = field(default_factory=list)  # source tensors the model lacks: ignored
    new_heads: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, source, model shape)
    fresh: list[str] = field(default_factory=list)  # in the source, left out on request (`fresh` patterns)
    fresh_reason: str = ""
    key_map: str = "avsf"  # the names the source used (a KEY_MAPS name; "custom" for a callable)

    def __str__(self) -> str:
        total = len(self.loaded) + len(self.missing) + len(self.new_heads) + len(self.fresh)
        layout = f" ({self.key_map} names)" if self.key_map != "avsf" else ""
        lines = [f"weights from {self.source}{layout}: {len(self.loaded)} of {total} model tensors loaded, "
                 f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                 f"{len(self.new_heads)} new head tensors (shape differs; freshly initialised)"
                 + (f", {len(self.fresh)} kept fresh ({self.fresh_reason or 'asked'})" if self.fresh else "")]
        for what, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                           ("new head", [f"{k} {list(a)} -> {list(b)}" for k, a, b in self.new_heads]),
                           ("kept fresh", self.fresh)):
            if keys:
                lines.append(f"  {what}: " + ", ".join(keys[:10]) + (f" ... (+{len(keys) - 10})" if len(keys) > 10 else ""))
        return "\n".join(lines)


def _resolve_map(key_map: str | KeyMap | None, state: dict[str, Any]) -> tuple[str, KeyMap]:
    if key_map is None or key_map == "auto":  # the layout its names show (avsf.convert.LAYOUTS)
        from avsf.convert import detect_key_map

        key_map = detect_key_map(state)
    if callable(key_map):
        return "custom", key_map
    if key_map not in KEY_MAPS:
        import avsf.convert  # noqa: F401  (registers pytorchvideo's and PySlowFast's maps)
    if key_map not in KEY_MAPS:
        raise WeightsError(f"unknown key map '{key_map}' (known: {', '.join(sorted(KEY_MAPS))})")
    return key_map, KEY_MAPS[key_map]


def load_weights(model: Any, source: str | Path | dict[str, Any], *, strict_shapes: bool = True,
                 new_heads: Iterable[str] = (), key_map: str | KeyMap | None = None, fresh: Iterable[str] = (),
                 fresh_reason: str = "") -> LoadReport:
    """Copy the tensors of `source` whose names (after `key_map`) and shapes match into `model`.

    A tensor whose shape differs is an error naming it, unless its name matches one of the
    `new_heads` patterns (fnmatch, e.g. "head.*": a classifier for another class count), which
    then keeps its fresh initialisation; with `strict_shapes=False` every such tensor does.
    Tensors matching a `fresh` pattern are never loaded (e.g. the classifier of a linear probe,
    which trains a new one; `fresh_reason` says why in the report). Nothing matching at all is
    an error. Returns the report (print it).
    """
    state, name = read_state_dict(source)
    map_name, mapping = _resolve_map(key_map, state)
    state = mapping(state)
    heads, keep_fresh = tuple(new_heads), tuple(fresh)
    own = model.state_dict()
    report = LoadReport(source=name, fresh_reason=fresh_reason, key_map=map_name)
    keep = {}
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(k)
        elif any(fnmatch.fnmatchcase(k, f) for f in keep_fresh):
            report.fresh.append(k)
        elif tuple(v.shape) != tuple(own[k].shape):
            if not strict_shapes or any(fnmatch.fnmatchcase(k, h) for h in heads):
                report.new_heads.append((k, tuple(v.shape), tuple(own[k].shape)))
            else:
                raise WeightsError(f"{name}: tensor '{k}' has shape {list(v.shape)}, the model's is "
                                   f"{list(own[k].shape)}; is it the same architecture (model.* keys)?")
        else:
            keep[k] = v
            report.loaded.append(k)
    report.missing = [k for k in own if k not in state]
    if not keep:
        raise WeightsError(
            f"{name}: none of its {len(state)} tensors matches the model's {len(own)} by name and shape "
            f"(file: {', '.join(list(state)[:3])} ...; model: {', '.join(list(own)[:3])} ...); "
            f"weights from another code base need a key map (known: {', '.join(sorted(KEY_MAPS))})"
        )
    model.load_state_dict(keep, strict=False)
    return report
