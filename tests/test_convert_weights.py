"""Weights interop (avsf/convert.py): pytorchvideo and PySlowFast tensors in avsf's names, proven
by equal outputs; `avsf convert` writes a checkpoint with a report; nothing matching is an error.

pytorchvideo 0.1.5 is in the `test` extra; without it the pytorchvideo tests skip (the PySlowFast
ones read tests/data/pyslowfast_slowfast.json and need nothing else).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from _convert_helpers import randomise_bn, seeded_clip, seeded_state
from avsf.config import build_config
from avsf.convert import UNMAPPED_PYTORCHVIDEO, detect_key_map
from avsf.model import build_model
from avsf.weights import WeightsError, load_weights

FIXTURE = Path(__file__).parent / "data" / "pyslowfast_slowfast.json"


def _pairs():
    pytest.importorskip("pytorchvideo", reason="pytorchvideo (the test extra) is not installed")
    from bench import pairs

    return pairs


class _AudioStage(nn.Module):
    """avsf's audio stage in pytorchvideo's audio layout (B, C, T, 1, F)."""

    def __init__(self, stage: nn.Module):
        super().__init__()
        self.stage = stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(x.squeeze(3)).unsqueeze(3)


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_pytorchvideo_avslowfast_logits_equal(scale):
    """The bench's pair: every mapped tensor (visual pathways, Fast->Slow and A->FS laterals, audio
    stem, head) computes the same. The audio residual stages cannot map (UNMAPPED_PYTORCHVIDEO):
    the peer runs avsf's own audio stages there, so any other difference would show."""
    pairs = _pairs()
    p = pairs.pair(scale)
    torch.manual_seed(0)
    peer = randomise_bn(pairs.build_peer(p.model_cfg, p.crop), seed=1)
    ours = randomise_bn(build_model(p.model_cfg), seed=2)
    report = load_weights(ours, peer.state_dict())  # the layout is recognised by its names
    assert report.key_map == "pytorchvideo"
    assert {k.split(".")[0] for k in report.missing} == {"audio", "drop_pathway"}
    assert all(".multipathway_blocks.2.res_blocks." in k for k in report.unexpected)
    assert all(k.startswith("audio.stages.") for k in report.missing if not k.startswith("drop_pathway."))
    for i in range(1, 5):
        peer.blocks[i].multipathway_blocks[2] = _AudioStage(ours.audio.stages[i - 1])
    x = pairs.inputs(p.model_cfg, p.crop, 2, seed=3)
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # the peer prints in forward
        want = peer.eval()(pairs.peer_inputs(x))
    with torch.no_grad():
        got = ours.eval()(x)["logits"]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert want.std() > 0.01  # a real comparison, not two constants


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_pytorchvideo_slowfast_every_tensor_maps_and_logits_equal(scale):
    pairs = _pairs()
    cfg = pairs.slowfast_config(scale)
    torch.manual_seed(0)
    peer = randomise_bn(pairs.build_peer_slowfast(cfg.model, cfg.data.crop_size), seed=1)
    ours = build_model(cfg.model)
    report = load_weights(ours, peer.state_dict(), key_map="pytorchvideo")
    assert (report.missing, report.unexpected, len(report.loaded)) == ([], [], len(ours.state_dict()))
    x = pairs.inputs(cfg.model, cfg.data.crop_size, 2, seed=4)
    with torch.no_grad():
        want = peer.eval()([x["slow"], x["fast"]])
        got = ours.eval()(x)["logits"]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def test_pyslowfast_tiny_scores_equal():
    """PySlowFast's own SlowFast (recorded by tests/data/make_pyslowfast_fixture.py): its tensors,
    rebuilt from names and shapes, converted and loaded into avsf give its softmax scores."""
    tiny = _fixture()["tiny"]
    state = seeded_state(tiny["shapes"])
    assert detect_key_map(state) == "pyslowfast"
    cfg = build_config(scale="tiny", overrides=tiny["avsf_overrides"])
    model = build_model(cfg.model)
    report = load_weights(model, {"model_state": state, "epoch": 5})
    assert (report.missing, report.unexpected) == ([], [])
    crop, b = cfg.data.crop_size, tiny["batch"]
    x = {"slow": seeded_clip([b, 3, cfg.model.num_frames, crop, crop], tiny["input_seeds"]["slow"]),
         "fast": seeded_clip([b, 3, cfg.model.fast_frames, crop, crop], tiny["input_seeds"]["fast"])}
    with torch.no_grad():
        scores = model.eval()(x)["logits"].softmax(1)
    torch.testing.assert_close(scores, torch.tensor(tiny["softmax_scores"]), rtol=0, atol=2e-6)


def _r50_slowfast(**overrides):
    from bench.pairs import R50_8X8, SLOWFAST_DESIGN

    return build_model(build_config(scale="paper", overrides={**SLOWFAST_DESIGN, **R50_8X8, **overrides}).model)


def test_pyslowfast_r50_model_zoo_layout_loads_every_tensor():
    """SLOWFAST_8x8_R50's names and shapes (PySlowFast's model zoo layout) all land in avsf's R50 SlowFast."""
    state = seeded_state(_fixture()["r50_8x8"]["shapes"])
    model = _r50_slowfast()
    report = load_weights(model, {"model_state": state})
    assert (report.missing, report.unexpected, len(report.loaded)) == ([], [], len(state))


def test_pyslowfast_nonlocal_blocks_shift_indices_and_stay_unmapped():
    """SLOWFAST_NLN_8x8_R50: blocks after a non-local block land at avsf's in-line index; the
    non-local tensors themselves (dot_product form, not avsf's softmax form) are not mapped."""
    state = seeded_state(_fixture()["r50_nln_8x8"]["shapes"])
    # that config file sets FUSION_KERNEL_SZ 5 (SLOWFAST_8x8_R50 has 7)
    model = _r50_slowfast(**{"model.nonlocal_stages": ["res3", "res4"], "model.fs_fusion_kernel": 5})
    report = load_weights(model, {"model_state": state})
    nonlocal_src = [k for k in state if "_nonlocal" in k]
    assert sorted(report.unexpected) == sorted(nonlocal_src) and nonlocal_src
    assert report.missing and all(".theta." in k or ".phi." in k or ".g." in k or ".out." in k for k in report.missing)
    # res4 = b0 b1 nl b2 b3 nl b4 b5 nl (non-local after blocks 1, 3, 5): PySlowFast's res4 block 4 is avsf's 6
    own = model.state_dict()
    assert torch.equal(own["slow.stages.2.6.a.0.weight"], state["s4.pathway0_res4.branch2.a.weight"])
    assert torch.equal(own["slow.stages.2.3.c.1.running_var"], state["s4.pathway0_res2.branch2.c_bn.running_var"])


def _pyth(tmp_path: Path) -> Path:
    """A PySlowFast-layout checkpoint as its training writes one (epoch, model_state, optimizer, cfg text)."""
    tiny = _fixture()["tiny"]
    path = tmp_path / "checkpoint_epoch_00005.pyth"
    torch.save({"epoch": 5, "model_state": seeded_state(tiny["shapes"]), "optimizer_state": {"state": {}},
                "cfg": "MODEL:\n  ARCH: slowfast\n"}, path)
    return path


def _convert_args(src: Path, out: Path) -> list[str]:
    sets = [f"--set={k}={json.dumps(v)}" for k, v in _fixture()["tiny"]["avsf_overrides"].items()]
    return ["convert", str(src), "--out", str(out), "--scale", "tiny", "--config", str(_tiny_toml(src.parent)), *sets]


def _tiny_toml(folder: Path) -> Path:
    path = folder / "sf.toml"
    path.write_text('scale = "tiny"\n')
    return path


def test_avsf_convert_pyth_prints_report_and_writes_a_loadable_checkpoint(tmp_path, capsys):
    from avsf.cli import main

    src, out = _pyth(tmp_path), tmp_path / "converted.pt"
    assert main(_convert_args(src, out)) == 0
    printed = capsys.readouterr().out
    assert f"weights from {src} (pyslowfast names): 374 of 374 model tensors loaded, 0 missing, 0 unexpected" in printed
    assert "note: PySlowFast's non-local blocks" in printed
    cfg = build_config(scale="tiny", overrides=_fixture()["tiny"]["avsf_overrides"])
    fresh = build_model(cfg.model)
    report = load_weights(fresh, out)  # avsf's own layout now: train.init_from / eval --checkpoint read it
    assert report.key_map == "avsf" and not report.missing
    want = seeded_state(_fixture()["tiny"]["shapes"])["s5.pathway1_res1.branch2.c.weight"]
    assert torch.equal(fresh.state_dict()["fast.stages.3.1.c.0.weight"], want)
    # The converted file carries its config: avsf export takes it as it is.
    assert main(["export", str(out), "--format", "torchscript"]) == 0
    assert (tmp_path / "converted.ts.pt").is_file()


def test_a_file_matching_nothing_fails_clearly_and_writes_nothing(tmp_path, capsys):
    from avsf.cli import main

    src, out = tmp_path / "other.pt", tmp_path / "converted.pt"
    torch.save({"encoder.layer1.weight": torch.zeros(3, 3), "decoder.bias": torch.zeros(3)}, src)
    assert main(["convert", str(src), "--out", str(out), "--scale", "tiny", "--config", str(_tiny_toml(tmp_path)),
                 "--set", "model.num_classes=5"]) == 2
    err = capsys.readouterr().err
    assert str(src) in err and "none of its 2 tensors matches" in err and "key map" in err
    assert not out.exists()
    with pytest.raises(WeightsError, match="encoder.layer1.weight"):
        load_weights(build_model(build_config(scale="tiny", overrides={"model.num_classes": 5}).model), src)


def test_pytorchvideo_notes_name_the_unmapped_audio_stages():
    from avsf.convert import notes_for

    assert notes_for("pytorchvideo") == [UNMAPPED_PYTORCHVIDEO]
    assert "audio residual stages" in UNMAPPED_PYTORCHVIDEO
