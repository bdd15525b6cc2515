"""FLOP counts of paper rows (fvcore, one 256x256 clip) and the `avsf flops` command."""

from __future__ import annotations

import json

import pytest

from avsf.cli import main
from avsf.cli.flops import format_table
from avsf.config import build_config
from avsf.flops import count
from avsf.model.variants import VARIANTS


@pytest.mark.slow
@pytest.mark.parametrize("name", ["table5b/beta-1-8", "table6/slowfast"])
def test_paper_rows_count_within_three_percent(name):
    v = VARIANTS[name]
    gflops = count(build_config(base=v.overrides).model, input_size=v.input_size).gflops
    assert abs(gflops - v.paper_gflops) / v.paper_gflops < 0.03, (name, gflops, v.paper_gflops)


def test_every_named_row_of_the_issue_exists():
    expected = {
        "table5a/a-fs", "table5a/a-f-s", "table5a/av-nonlocal",
        "table5b/beta-1-8", "table5b/beta-1-4", "table5b/beta-1-2", "table5b/beta-1",
        "table6/slowfast", "table6/pool5", "table6/res4-pool5", "table6/res3-4-pool5",
        "table6/res2-3-4-pool5", "tableA3/audio-only", "table3/slowfast-r50", "table3/avslowfast-r50",
        "table3/slowfast-r101", "table3/avslowfast-r101", "table4/slowfast-r101-nl",
        "table4/avslowfast-r101-nl",
    }
    assert set(VARIANTS) == expected
    for v in VARIANTS.values():  # every row builds a valid config
        build_config(base=v.overrides)


def test_flops_cli_json_on_a_config_file(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('scale = "tiny"\n[model]\nbeta_a = "1/4"\nnum_classes = 7\n')
    assert main(["flops", "--config", str(cfg), "--input-size", "32", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["gflops"] > 0 and row["params_m"] > 0 and "audio" in row["by_pathway"]


def test_flops_cli_variant_with_override_and_bad_key(capsys):
    assert main(["flops", "--variant", "table5b/beta-1-4", "--scale", "tiny", "--set", "model.num_classes=3",
                 "--input-size", "32", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["variant"] == "table5b/beta-1-4" and row["paper_gflops"] == 36.8
    assert main(["flops", "--variant", "nope/none"]) == 2
    assert "unknown variant" in capsys.readouterr().err


def test_list_table_is_aligned():
    rows = [
        {"variant": "a", "paper_gflops": 1.0, "gflops": 1.01, "delta_pct": 1.0, "params_m": 2.0, "audio_share": 0.1},
        {"variant": "longer/name", "paper_gflops": 100.0, "gflops": 99.0, "delta_pct": -1.0, "params_m": 20.0,
         "audio_share": 0.0},
    ]
    lines = format_table(rows).splitlines()
    assert len({len(line) for line in lines}) == 1  # every line the same width
    assert "paper GFLOPs" in lines[0] and "+1.0%" in lines[2]
