"""FLOP counts of paper rows (fvcore, one clip) and the `avsf flops` command."""

from __future__ import annotations

import json
import re

import pytest

from avsf.cli import main
from avsf.cli.flops import format_table, gf
from avsf.config import build_config
from avsf.flops import count
from avsf.model.variants import VARIANTS


@pytest.mark.slow
@pytest.mark.parametrize("name", ["table5b/beta-1-8", "table6/slowfast", "table6/pool5", "table7/slowfast-r50"])
def test_paper_rows_count_within_three_percent(name):
    v = VARIANTS[name]
    gflops = count(build_config(base=v.overrides).model, input_size=v.input_size).gflops
    assert abs(gflops - v.paper_gflops) / v.paper_gflops < 0.03, (name, gflops, v.paper_gflops)


def test_detection_and_ssl_rows_are_registered_at_footnote_2s_input():
    for name in ("table7/slowfast-r50", "table7/avslowfast-r50", "table7/slowfast-r101-nl",
                 "table7/avslowfast-r101-nl", "tableA1/avslowfast-4x16", "tableA1/avslowfast-8x8",
                 "tableA1/avslowfast-16x4"):
        assert VARIANTS[name].input_size == (256, 320), name
    assert VARIANTS["tableA1/avslowfast-8x8"].paper_params_m == 38.5
    assert build_config(base=VARIANTS["table7/avslowfast-r50"].overrides).model.head == "detection"


def test_non_square_input_scales_the_visual_count():
    cfg = build_config(scale="tiny", overrides={"model.num_classes": 3}).model
    square, wide = count(cfg, input_size=32), count(cfg, input_size=(32, 64))
    assert wide.by_pathway["audio"] == square.by_pathway["audio"]
    ratio = (wide.by_pathway["slow"] + wide.by_pathway["fast"]) / (square.by_pathway["slow"] + square.by_pathway["fast"])
    assert 1.9 < ratio < 2.1  # twice the pixels (borders make it not exactly 2)


def test_counts_are_cached_by_config_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("AVSF_CACHE", str(tmp_path))
    cfg = build_config(scale="tiny", overrides={"model.num_classes": 3}).model
    first = count(cfg, input_size=32, cache=True)
    assert len(list((tmp_path / "flops").glob("*.json"))) == 1

    def no_tracing(*args, **kwargs):
        raise AssertionError("traced although the count is cached")

    monkeypatch.setattr("avsf.flops._trace", no_tracing)
    assert count(cfg, input_size=32, cache=True) == first
    cfg.beta_a = 1.0  # another config is another entry
    with pytest.raises(AssertionError, match="traced"):
        count(cfg, input_size=32, cache=True)


def test_flops_cli_json_on_a_config_file(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('scale = "tiny"\n[model]\nbeta_a = "1/4"\nnum_classes = 7\n')
    assert main(["flops", "--config", str(cfg), "--input-size", "32", "--json", "--no-cache"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["gflops"] > 0 and row["params_m"] > 0 and "audio" in row["by_pathway"]
    assert row["input"] == "32x32" and row["fs_stages"] == ["res3", "res4"]


def test_flops_cli_compares_with_the_paper_only_at_its_scale_and_input(capsys):
    assert main(["flops", "--variant", "table5b/beta-1-4", "--scale", "tiny", "--set", "model.num_classes=3",
                 "--input-size", "32", "--json", "--no-cache"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["variant"] == "table5b/beta-1-4" and row["paper_gflops"] == 36.8
    assert row["paper_comparable"] is False and row["delta_pct"] is None
    assert main(["flops", "--variant", "table5b/beta-1-4", "--scale", "tiny", "--input-size", "32x40",
                 "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert "does not apply" in text and "delta" not in text and "32x40" in text
    assert not re.search(r"\b0\.00(?!\d)", text)  # every pathway keeps its digits
    assert main(["flops", "--variant", "nope/none"]) == 2
    assert "unknown variant" in capsys.readouterr().err


def test_flops_cli_rejects_a_bad_input_size(capsys):
    for bad in ("0", "256x0", "256x320x3", "wide"):
        with pytest.raises(SystemExit):
            main(["flops", "--variant", "table5a/a-fs", "--input-size", bad])
        assert "--input-size" in capsys.readouterr().err


def _rows():
    base = {"input": "256x256", "audio_share": 0.1, "fs_stages": ["res3", "res4"], "paper_params_m": None}
    return [
        {**base, "variant": "a", "paper_gflops": 1.0, "gflops": 1.01, "delta_pct": 1.0, "params_m": 2.0,
         "paper_comparable": True},
        {**base, "variant": "longer/name", "paper_gflops": 100.0, "gflops": 0.00188, "delta_pct": None,
         "params_m": 20.0, "paper_comparable": False, "fs_stages": [], "paper_params_m": 38.5},
    ]


def test_list_table_is_aligned_and_says_where_the_paper_does_not_apply():
    lines = format_table(_rows()).splitlines()
    ours = lines[0].index("ours") + len("ours")
    assert all(line[:ours].endswith(x) for line, x in zip(lines[2:4], ("1.01", "0.00188")))
    assert "+1.0%" in lines[2] and "n/a" in lines[3] and "38.5" in lines[3] and "-100" not in lines[3]
    assert lines[-1].startswith("n/a:")
    assert gf(39.8712) == "39.87" and gf(0.000266) == "0.000266"
