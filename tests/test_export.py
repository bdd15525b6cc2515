"""`avsf export`: TorchScript and torch.export round trips (CI), ONNX where the onnx extra is
installed; the export is checked against eager before anything is written."""

from __future__ import annotations

import pytest
import torch

from _convert_helpers import randomise_bn
from avsf.config import build_config
from avsf.export import FORMATS, ExportError, Format, export_model, input_names, sample_inputs
from avsf.model import build_model
from avsf.run import RunDir


def _run(tmp_path, **overrides):
    """A run folder as the trainer leaves one: config.json and checkpoints/last.pt."""
    cfg = build_config(scale="tiny", overrides={"model.num_classes": 5, **overrides})
    torch.manual_seed(0)
    model = randomise_bn(build_model(cfg.model), seed=3)  # non-trivial BN: folding it must be exact
    run = RunDir(tmp_path / "run")
    run.ensure_writable()
    run.write_config(cfg)
    run.save_checkpoint({"model": model.state_dict(), "state": {"epoch": 1}})
    return run, cfg, model


def _load(fmt: str, path):
    if fmt == "torchscript":
        return torch.jit.load(str(path))
    if fmt == "exported-program":
        return torch.export.load(str(path)).module()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda *xs: torch.from_numpy(session.run(["logits"], {i.name: x.numpy() for i, x in
                                                                  zip(session.get_inputs(), xs)})[0])


def _roundtrip(tmp_path, capsys, fmt: str, **overrides):
    from avsf.cli import main

    run, cfg, model = _run(tmp_path, **overrides)
    assert main(["export", str(run.path), "--format", fmt]) == 0
    path = run.export_path(FORMATS[fmt].suffix)
    assert f"wrote {path}" in capsys.readouterr().out
    x = sample_inputs(cfg, 3, seed=9)  # a batch size the export never saw
    with torch.no_grad():
        want = model.eval()(dict(zip(input_names(cfg), x)))["logits"]
        got = _load(fmt, path)(*x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    assert want.std() > 1e-3


@pytest.mark.parametrize("fmt", ["torchscript", "exported-program"])
def test_export_round_trips(tmp_path, capsys, fmt):
    _roundtrip(tmp_path, capsys, fmt)


def test_export_slowfast_takes_two_inputs(tmp_path, capsys):
    _roundtrip(tmp_path, capsys, "torchscript", **{"model.pathways": "slowfast", "model.fusion_stages": [],
                                                   "model.avs_layers": []})


@pytest.mark.slow
def test_export_onnx_round_trips(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    _roundtrip(tmp_path, capsys, "onnx")


def test_an_export_that_differs_from_eager_writes_nothing(tmp_path, monkeypatch):
    _, cfg, model = _run(tmp_path)
    good = FORMATS["torchscript"]
    monkeypatch.setitem(FORMATS, "torchscript", Format("torchscript", good.suffix, good.build,
                                                       lambda m, xs: good.run(m, xs) + 1e-2, good.to_bytes))
    out = tmp_path / "m.ts.pt"
    with pytest.raises(ExportError, match="differs from eager on the sample batch of 2: max |diff| 0.01"):
        export_model(model, cfg, "torchscript", out)
    assert not out.exists()


def test_a_run_without_weights_or_an_unknown_format_is_refused(tmp_path, capsys):
    from avsf.cli import main

    run, _, _ = _run(tmp_path)
    run.checkpoint_path.unlink()
    assert main(["export", str(run.path), "--format", "torchscript"]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(run.path), "--format", "tflite"])
    assert not run.export_path(".ts.pt").exists()
