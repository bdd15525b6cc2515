"""A trained model out of avsf: TorchScript, ONNX or a torch.export program, checked against eager.

    avsf export runs/x --format torchscript        # -> runs/x/export/model.ts.pt
    path = export_run("runs/x", "onnx")             # the same from Python

The exported model takes positional tensors, the clip's pathways in a fixed order
(`input_names`: slow, fast, audio for AVSlowFast; slow, fast for SlowFast; audio for the Audio
model), batch first and of any batch size, and returns the logits (B, classes) — the same
numbers `model(batch)["logits"]` gives in eval mode (BatchNorm folded into the convs unless
`fuse=False`; only rounding differs). Before anything is written, the exported model runs on a
seeded sample batch and on a batch of one and must match eager within `RTOL`/`ATOL`; a mismatch
is an error naming the format and the difference. Files are written atomically.

Why positional: `torch.jit.script` cannot compile the dict-in / dict-out model (Python dicts
of optional keys, registry lookups), while tracing and torch.export of a positional wrapper
record exactly the eval computation.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avsf.config import Config, ConfigError

RTOL, ATOL = 1e-4, 1e-5  # atol is scaled by the largest |logit|
SAMPLE_BATCH = 2

INPUTS = {"avslowfast": ("slow", "fast", "audio"), "slowfast": ("slow", "fast"), "audio": ("audio",),
          "late-ensemble": ("slow", "fast", "audio")}
EXPORTABLE_HEADS = ("softmax", "sigmoid", "verb-noun")


class ExportError(ConfigError):
    """The model cannot be exported as asked, or the export does not match eager."""


def input_names(cfg: Config) -> tuple[str, ...]:
    if cfg.model.head not in EXPORTABLE_HEADS:
        raise ExportError(f"model.head: {cfg.model.head!r} needs inputs besides the clip (boxes, ...) and is not "
                          f"exported; exportable heads: {', '.join(EXPORTABLE_HEADS)}")
    return INPUTS[cfg.model.pathways]


class Positional(nn.Module):
    """The eval model with positional tensor inputs (in `names` order) and the logits as output."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.names, tensors)))["logits"]


def sample_inputs(cfg: Config, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded tensors of the shapes the loaders give at test time (crop `data.test_crop_size`)."""
    m, crop = cfg.model, cfg.data.test_crop_size or cfg.data.crop_size
    g = torch.Generator().manual_seed(seed)
    shapes = {"slow": (batch, 3, m.num_frames, crop, crop), "fast": (batch, 3, m.fast_frames, crop, crop),
              "audio": (batch, 1, m.audio_frames, m.mel_bins)}
    return tuple(torch.randn(shapes[n], generator=g) for n in input_names(cfg))


# ----------------------------------------------------------------------------- formats
@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    build: Callable[[Positional, tuple, tuple[str, ...]], Any]  # -> an exported object
    run: Callable[[Any, tuple], torch.Tensor]  # exported object, inputs -> logits
    to_bytes: Callable[[Any], bytes]


def _trace(model: Positional, example: tuple, names: tuple[str, ...]) -> torch.jit.ScriptModule:
    import warnings

    # The CPU execution helpers read shapes in Python before they ask torch.jit.is_tracing() and
    # the tracer warns about it; what the trace recorded is checked below against eager, on
    # two batch sizes, instead.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(model, example, check_trace=False)


def _script_bytes(traced: torch.jit.ScriptModule) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    return buf.getvalue()


def _dynamic_batch(names: tuple[str, ...]) -> tuple[dict[int, Any], ...]:
    batch = torch.export.Dim("batch", min=1, max=1024)
    return tuple({0: batch} for _ in names)


def _export(model: Positional, example: tuple, names: tuple[str, ...]) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(model, example, dynamic_shapes=(_dynamic_batch(names),))


def _program_bytes(program: torch.export.ExportedProgram) -> bytes:
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def _onnx(model: Positional, example: tuple, names: tuple[str, ...]) -> bytes:
    try:
        import onnxruntime  # noqa: F401  (checked here: the check below runs the model with it)
    except ImportError:
        raise ExportError("--format onnx needs onnx, onnxscript and onnxruntime: pip install -e .[onnx]") from None
    with torch.no_grad():
        program = torch.onnx.export(model, example, dynamo=True, input_names=list(names), output_names=["logits"],
                                    dynamic_shapes=(_dynamic_batch(names),), verbose=False)
    return program.model_proto.SerializeToString()


def _run_onnx(blob: bytes, inputs: tuple) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    return torch.from_numpy(session.run(["logits"], feeds)[0])


def _run_module(exported: Any, inputs: tuple) -> torch.Tensor:
    module = exported.module() if isinstance(exported, torch.export.ExportedProgram) else exported
    with torch.no_grad():
        return module(*inputs)


FORMATS = {
    "torchscript": Format("torchscript", ".ts.pt", _trace, _run_module, _script_bytes),
    "exported-program": Format("exported-program", ".pt2", _export, _run_module, _program_bytes),
    "onnx": Format("onnx", ".onnx", _onnx, _run_onnx, lambda blob: blob),
}


def _check(fmt: Format, exported: Any, eager: Positional, inputs: tuple, what: str) -> float:
    with torch.no_grad():
        want = eager(*inputs)
    got = fmt.run(exported, inputs)
    if got.shape != want.shape:
        raise ExportError(f"{fmt.name}: logits of shape {list(got.shape)} on {what}, eager gives {list(want.shape)}")
    scale = float(want.abs().max()) or 1.0
    diff = float((got - want).abs().max())
    if not torch.allclose(got, want, rtol=RTOL, atol=ATOL * scale):
        raise ExportError(f"{fmt.name}: the exported model differs from eager on {what}: max |diff| {diff:.3g} "
                          f"(largest |logit| {scale:.3g}; allowed rtol {RTOL}, atol {ATOL} x that); nothing written")
    return diff


def export_model(model: nn.Module, cfg: Config, fmt_name: str, out: str | Path, *, fuse: bool = True) -> dict[str, Any]:
    """Export `model` (built for `cfg`) to `out` in format `fmt_name`; returns what was checked."""
    from avsf.io import atomic_write_bytes
    from avsf.model.fuse import fuse_for_inference

    if fmt_name not in FORMATS:
        raise ExportError(f"--format {fmt_name!r} is not allowed; one of {', '.join(FORMATS)}")
    fmt, names = FORMATS[fmt_name], input_names(cfg)
    model = model.eval()
    eager = Positional(fuse_for_inference(model) if fuse else model, names).eval()
    sample = sample_inputs(cfg, SAMPLE_BATCH)
    exported = fmt.build(eager, sample, names)
    diffs = [_check(fmt, exported, eager, sample, f"the sample batch of {SAMPLE_BATCH}"),
             _check(fmt, exported, eager, sample_inputs(cfg, 1, seed=1), "a batch of 1")]
    atomic_write_bytes(out, fmt.to_bytes(exported))
    return {"format": fmt.name, "path": str(out), "inputs": list(names), "max_abs_diff": max(diffs),
            "fused": fuse, "shapes": {n: list(t.shape[1:]) for n, t in zip(names, sample)}}


def load_for_export(source: str | Path) -> tuple[nn.Module, Config]:
    """The model and config of a run folder (config.json + checkpoints/last.pt) or of a
    checkpoint `avsf convert` wrote (it carries its config). Every tensor must come from the file."""
    from avsf.config import config_from_dict
    from avsf.io import load_torch_file
    from avsf.model import build_model
    from avsf.run import RunDir
    from avsf.weights import WeightsError, load_weights

    p = Path(source)
    if p.is_dir():
        cfg = RunDir(p).load_config()
    else:
        ckpt = load_torch_file(p)
        if not (isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict)):
            raise ExportError(f"{p} carries no config; give a run folder, or a checkpoint written by avsf convert")
        cfg = config_from_dict(ckpt["config"])
    model = build_model(cfg.model)
    report = load_weights(model, p)
    if report.missing:
        raise WeightsError(f"{report}\n{p} lacks {len(report.missing)} of the model's tensors; nothing exported")
    return model, cfg


def default_out(source: str | Path, fmt_name: str) -> Path:
    """<run>/export/model<suffix> for a run folder; <file stem><suffix> beside a checkpoint."""
    from avsf.run import RunDir

    p, suffix = Path(source), FORMATS[fmt_name].suffix
    return RunDir(p).export_path(suffix) if p.is_dir() else p.with_name(p.name.split(".")[0] + suffix)


def export_run(source: str | Path, fmt_name: str, out: str | Path | None = None, *, fuse: bool = True) -> dict[str, Any]:
    if fmt_name not in FORMATS:
        raise ExportError(f"--format {fmt_name!r} is not allowed; one of {', '.join(FORMATS)}")
    model, cfg = load_for_export(source)
    return export_model(model, cfg, fmt_name, out or default_out(source, fmt_name), fuse=fuse)
