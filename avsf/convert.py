"""Weights from pytorchvideo and PySlowFast in avsf's parameter names (key maps for avsf.weights).

    avsf convert peer.pt --from pytorchvideo --config studies/x.toml --out converted.pt
    load_weights(model, "SLOWFAST_8x8_R50.pyth")          # the layout is recognised by its names

Two key maps are registered with `avsf.weights.register_key_map` (the one loader,
`avsf.weights.load_weights`, applies them and reports loaded / missing / unexpected tensors):

- "pytorchvideo": `create_audio_visual_slowfast` and `create_slowfast` state dicts
  (`blocks.<i>.multipathway_blocks.<p>...`, `blocks.<i>.multipathway_fusion...`, the head's `proj`).
- "pyslowfast": PySlowFast `.pyth` checkpoints (`model_state`: `s1.pathway0_stem.conv`,
  `s2.pathway0_res0.branch2.a`, `s1_fuse.conv_f2s`, `head.projection`), and the AVSlowFast
  authors' fork of it (`s<k>_fuse.bn_f2s`, `s<k>_fuse.conv_a2fs_<n>`).

What maps is exactly what computes the same function in both code bases; tests/test_convert*.py
prove it by equal logits. What cannot map, by design, stays under its source name (reported as
unexpected; avsf's tensors there keep their initialisation and are reported as missing):

- pytorchvideo's audio residual stages (res2..res5, pathway 2): its res2/res3 "acoustic"
  bottleneck sums a 1x3 and a 3x1 branch, each with its own BatchNorm, where avsf has one 3x3
  conv (or two concatenated branches); and from res3 on it strides time in the leading 1x1 conv,
  where avsf strides in the 3x3 conv, so the same weights see different frames
  (`UNMAPPED_PYTORCHVIDEO`). Its audio stem, every A->FS lateral and the head's audio columns
  do map.
- PySlowFast's non-local blocks (`pathway0_nonlocal<j>`): its NLN configs use the "dot_product"
  form, avsf's block is the softmax form.
- The AVSlowFast fork's audio pathway (pathway2) and AVS projections: the fork's audio stem and
  time-frequency block modules are not public, so their names are not known here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from avsf.config import JUNCTIONS, Config
from avsf.weights import KEY_MAPS, WeightsError, register_key_map

PATHWAY_NAMES = ("slow", "fast", "audio")  # pathway index -> avsf module, in both code bases

UNMAPPED_PYTORCHVIDEO = (
    "pytorchvideo's audio residual stages (blocks.1-4.multipathway_blocks.2) compute another function "
    "than avsf's: time is strided in the 1x1 conv and res2/res3 sum two factorised branches; they are "
    "not mapped and avsf's audio stages keep their initialisation"
)

# A residual block's parts: source suffix -> avsf suffix (conv, then its BatchNorm).
_PV_BLOCK = {"branch1_conv": "shortcut.0", "branch1_norm": "shortcut.1",
             "branch2.conv_a": "a.0", "branch2.norm_a": "a.1", "branch2.conv_b": "b.0",
             "branch2.norm_b": "b.1", "branch2.conv_c": "c.0", "branch2.norm_c": "c.1"}
_PSF_BLOCK = {"branch1": "shortcut.0", "branch1_bn": "shortcut.1", "branch2.a": "a.0", "branch2.a_bn": "a.1",
              "branch2.b": "b.0", "branch2.b_bn": "b.1", "branch2.c": "c.0", "branch2.c_bn": "c.1"}


def _squeeze_to(value: Any, dims: int) -> Any:
    """A conv weight with singleton kernel axes (pytorchvideo's audio as (T, 1, F) in a Conv3d, a
    lateral's (k, 1, 1) kernel) as avsf's Conv2d / Conv1d weight of `dims` axes: size-1 kernel
    axes dropped until it has them (which one is dropped does not change the numbers)."""
    shape = list(value.shape)
    while len(shape) > dims:
        axis = next((a for a in range(2, len(shape)) if shape[a] == 1), None)
        if axis is None:
            return value  # not a singleton axis: load_weights reports the shape mismatch
        shape.pop(axis)
    return value.reshape(shape)


# ----------------------------------------------------------------------------- pytorchvideo
_PV_STEM = re.compile(r"blocks\.0\.multipathway_blocks\.([01])\.(conv|norm)\.(.+)")
_PV_AUDIO_STEM = re.compile(r"blocks\.0\.multipathway_blocks\.2\.(conv\.convs\.[01]|norm)\.(.+)")
_PV_RES = re.compile(r"blocks\.([1-4])\.multipathway_blocks\.([01])\.res_blocks\.(\d+)\.(.+)\.([^.]+)")
_PV_FS = re.compile(r"blocks\.([0-3])\.multipathway_fusion\.(?:block_fast_to_slow\.([01])|(conv_fast_to_slow|norm))\.(.+)")
_PV_AFS = re.compile(r"blocks\.([0-3])\.multipathway_fusion\.block_audio_to_fastslow\.([0134])\.(.+)")
_PV_HEAD = re.compile(r"blocks\.(\d+)\.proj\.(.+)")
_PV_AFS_PART = {"0": "reduce.0", "1": "reduce.1", "3": "project.0", "4": "project.1"}


def _pytorchvideo_name(key: str) -> tuple[str, int] | None:
    """(avsf name, dims of avsf's tensor for conv weights, 0 = unchanged) or None (unmapped)."""
    if m := _PV_STEM.fullmatch(key):
        return f"{PATHWAY_NAMES[int(m[1])]}.stem.{0 if m[2] == 'conv' else 1}.{m[3]}", 0
    if m := _PV_AUDIO_STEM.fullmatch(key):
        part = {"conv.convs.0": "time", "conv.convs.1": "freq", "norm": "bn"}[m[1]]
        return f"audio.stem.{part}.{m[2]}", 4
    if m := _PV_RES.fullmatch(key):
        part = _PV_BLOCK.get(m[4])
        if part is None:
            return None
        return f"{PATHWAY_NAMES[int(m[2])]}.stages.{int(m[1]) - 1}.{m[3]}.{part}.{m[5]}", 0
    if m := _PV_FS.fullmatch(key):
        part = m[2] if m[2] is not None else ("0" if m[3] == "conv_fast_to_slow" else "1")
        return f"fs_laterals.{JUNCTIONS[int(m[1])]}.conv.{part}.{m[4]}", 0
    if m := _PV_AFS.fullmatch(key):
        return f"av_laterals.{JUNCTIONS[int(m[1])]}.{_PV_AFS_PART[m[2]]}.{m[3]}", 3
    if m := _PV_HEAD.fullmatch(key):
        return f"head.fc.{m[2]}", 0
    return None


@register_key_map("pytorchvideo")
def from_pytorchvideo(state: dict[str, Any]) -> dict[str, Any]:
    """pytorchvideo (`create_audio_visual_slowfast`, `create_slowfast`) names -> avsf names.

    Tensors without an avsf counterpart keep their pytorchvideo name (load_weights reports them
    as unexpected); see the module docstring for which and why."""
    return _rename(state, _pytorchvideo_name)


# ----------------------------------------------------------------------------- PySlowFast
_PSF_STEM = re.compile(r"s1\.pathway([01])_stem\.(conv|bn)\.(.+)")
_PSF_RES = re.compile(r"s([2-5])\.pathway([01])_(res|nonlocal)(\d+)\.(.+)\.([^.]+)")
_PSF_FS = re.compile(r"s([1-4])_fuse\.(conv_f2s|bn|bn_f2s)\.(.+)")
_PSF_AFS = re.compile(r"s([1-4])_fuse\.(conv|bn)_a2fs_([01])\.(.+)")
_PSF_HEAD = re.compile(r"head\.projection\.(.+)")


def _nonlocal_positions(state: dict[str, Any]) -> dict[tuple[str, str], list[int]]:
    """(stage, pathway) -> block indices followed by a non-local block, from the names present."""
    found: dict[tuple[str, str], set[int]] = {}
    for key in state:
        if (m := _PSF_RES.fullmatch(key)) and m[3] == "nonlocal":
            found.setdefault((m[1], m[2]), set()).add(int(m[4]))
    return {k: sorted(v) for k, v in found.items()}


def _pyslowfast_namer(state: dict[str, Any]):
    """The name function for one checkpoint. avsf's stages hold non-local blocks in line (block,
    non-local, block ...) where PySlowFast numbers them apart (res<j>, nonlocal<j>), so a block's
    index counts the non-local blocks before it. The non-local blocks themselves are not mapped:
    PySlowFast's NLN configs use its "dot_product" form (affinity / N), avsf's block is the
    embedded-Gaussian (softmax) form; the same weights compute another function."""
    after = _nonlocal_positions(state)

    def name(key: str) -> tuple[str, int] | None:
        if m := _PSF_STEM.fullmatch(key):
            return f"{PATHWAY_NAMES[int(m[1])]}.stem.{0 if m[2] == 'conv' else 1}.{m[3]}", 0
        if m := _PSF_RES.fullmatch(key):
            part = _PSF_BLOCK.get(m[5])
            if m[3] == "nonlocal" or part is None:
                return None
            j = int(m[4])
            index = j + sum(1 for i in after.get((m[1], m[2]), []) if i < j)
            return f"{PATHWAY_NAMES[int(m[2])]}.stages.{int(m[1]) - 2}.{index}.{part}.{m[6]}", 0
        if m := _PSF_FS.fullmatch(key):
            return f"fs_laterals.{JUNCTIONS[int(m[1]) - 1]}.conv.{0 if m[2] == 'conv_f2s' else 1}.{m[3]}", 0
        if m := _PSF_AFS.fullmatch(key):
            part = ("reduce", "project")[int(m[3])]
            return f"av_laterals.{JUNCTIONS[int(m[1]) - 1]}.{part}.{0 if m[2] == 'conv' else 1}.{m[4]}", 3
        if m := _PSF_HEAD.fullmatch(key):
            return f"head.fc.{m[1]}", 0
        return None

    return name


@register_key_map("pyslowfast")
def from_pyslowfast(state: dict[str, Any]) -> dict[str, Any]:
    """PySlowFast (SlowFast, the AVSlowFast fork's laterals) names -> avsf names."""
    return _rename(state, _pyslowfast_namer(state))


def _rename(state: dict[str, Any], namer) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in KEY_MAPS["avsf"](state).items():  # DDP's module. prefix first
        mapped = namer(key)
        if mapped is None:
            out[key] = value
            continue
        name, dims = mapped
        if name in out:
            raise WeightsError(f"two source tensors map to '{name}' (the second is '{key}'); the file mixes layouts")
        out[name] = _squeeze_to(value, dims) if dims and name.endswith(".weight") else value
    return out


# ----------------------------------------------------------------------------- which layout
LAYOUTS = {
    "pytorchvideo": re.compile(r"blocks\.\d+\.(multipathway_blocks|multipathway_fusion|proj)\."),
    "pyslowfast": re.compile(r"(s1\.pathway\d_stem|s\d\.pathway\d_res\d+|head\.projection)\."),
}


def detect_key_map(state: dict[str, Any]) -> str:
    """The key map whose names a state dict uses: the layout most of its tensors match, else
    avsf's own (with the DDP / torch.compile prefixes stripped)."""
    names = list(KEY_MAPS["avsf"](state))
    counts = {layout: sum(1 for k in names if rx.match(k)) for layout, rx in LAYOUTS.items()}
    best = max(counts, key=counts.get)
    return best if counts[best] > len(names) // 2 else "avsf"


def notes_for(key_map: str) -> list[str]:
    """What a user should know about a conversion beyond the counts (printed after the report)."""
    if key_map == "pytorchvideo":
        return [UNMAPPED_PYTORCHVIDEO]
    if key_map == "pyslowfast":
        return ["PySlowFast's non-local blocks (dot_product form) and the AVSlowFast fork's audio pathway "
                "(pathway2) and AVS projections are not mapped (see avsf/convert.py)"]
    return []




# ----------------------------------------------------------------------------- a whole file
def convert(source: str | Path, cfg: Config, *, key_map: str | None = None, new_head: bool = False):
    """avsf's model for `cfg` with the weights of `source` (a file in any layout above).

    Returns (model, LoadReport). `model.num_classes` 0 (take the data's) becomes the source
    head's class count. `new_head`: a head of another class count keeps its initialisation
    (fine-tuning on other classes) instead of being an error.
    """
    from avsf.model import build_model
    from avsf.weights import load_weights, read_state_dict

    state, name = read_state_dict(source)
    chosen = key_map if key_map not in (None, "auto") else detect_key_map(state)
    mapped = KEY_MAPS[chosen](state)
    if cfg.model.num_classes == 0:
        head = mapped.get("head.fc.weight")
        if head is None:
            raise WeightsError(f"{name} has no classifier (head.fc after mapping its {chosen} names); set "
                               f"model.num_classes with --set")
        cfg.model.num_classes = int(head.shape[0])
    cfg.validate()
    model = build_model(cfg.model)
    # From the file again, so that every message names it (a second read of the file).
    return model, load_weights(model, source, key_map=chosen, new_heads=("head.*",) if new_head else ())


def save_converted(model, report, cfg: Config, out: str | Path) -> None:
    """An avsf checkpoint ({"model": state dict, ...}) that `train.init_from`, `avsf eval
    --checkpoint` and `load_weights` read; written atomically."""
    from avsf.io import atomic_torch_save

    atomic_torch_save(out, {"model": model.state_dict(), "config": cfg.to_dict(),
                            "converted": {"source": report.source, "key_map": report.key_map,
                                          "loaded": len(report.loaded), "missing": report.missing,
                                          "unexpected": report.unexpected}})
