"""`avsf study run --until-mdd`: seeds added round by round until every variant's MDD against the
baseline (the report's number) is at most the target, or --max-seeds; avsf.report.power."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _report_fakes import PredictingTrainer  # noqa: E402

from avsf.cli import main  # noqa: E402
from avsf.report.power import StudyPower, VariantPower, study_power  # noqa: E402

STUDY = """
name = "pdpower"
title = "t"
metric = "top1"
default_scale = "tiny"
[base]
model.pathways = "avslowfast"
[[variant]]
name = "pd0"
baseline = true
set = { model.drop_pathway = 0.0 }
[[variant]]
name = "pd0.5"
set = { model.drop_pathway = 0.5 }
[[variant]]
name = "pd0.8"
set = { model.drop_pathway = 0.8 }
[scale.tiny]
seeds = 2
set = { train.epochs = 1 }
"""


@pytest.fixture
def study(tmp_path, monkeypatch):
    import avsf.study.runner as runner

    path = tmp_path / "pdpower.toml"
    path.write_text(STUDY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "_default_train", lambda: PredictingTrainer(per_class=20))
    return path


def _seeds(folder: Path) -> list[int]:
    return sorted(int(p.name[4:]) for p in (folder / "pd0").iterdir() if (p / "result.json").exists())


def test_a_met_target_stops_after_the_study_seeds(study, capsys):
    assert main(["study", "run", str(study), "--until-mdd", "60"]) == 0
    assert _seeds(Path("runs/pdpower")) == [0, 1]
    err = capsys.readouterr().err
    assert "at 2 seeds, against MDD <= 60 points" in err and "every variant's MDD is at most 60 points" in err


def test_seeds_are_added_until_the_mdd_is_met_or_max_seeds(study, capsys):
    assert main(["study", "run", str(study)]) == 0
    two = study_power("runs/pdpower", 0.05)
    worst = max(v.mdd for v in two.variants)
    target = 100 * worst * 0.7  # not met at 2 seeds
    assert main(["study", "run", str(study), "--until-mdd", f"{target:.3f}", "--max-seeds", "6"]) == 0
    seeds = _seeds(Path("runs/pdpower"))
    assert seeds == list(range(len(seeds))) and len(seeds) > 2
    final = study_power("runs/pdpower", target / 100)
    assert final.met or len(seeds) == 6
    err = capsys.readouterr().err
    assert "going on to" in err
    # what it printed last is what the folder says now: the report's MDD
    assert f"at {len(seeds)} seeds, against MDD" in err


def test_an_unreachable_target_stops_at_max_seeds_and_keeps_the_runs(study, capsys):
    assert main(["study", "run", str(study), "--until-mdd", "0.01", "--max-seeds", "4"]) == 0
    assert _seeds(Path("runs/pdpower")) == [0, 1, 2, 3]
    assert "not reached at --max-seeds 4" in capsys.readouterr().err


def test_bad_combinations_are_refused_before_any_run(study, capsys):
    assert main(["study", "run", str(study), "--until-mdd", "5", "--variant", "pd0.8"]) == 2
    assert main(["study", "run", str(study), "--until-mdd", "5", "--seeds", "5", "--max-seeds", "3"]) == 2
    assert not Path("runs/pdpower").exists()
    with pytest.raises(SystemExit):
        main(["study", "run", str(study), "--until-mdd", "-1"])
    assert "must be a number > 0" in capsys.readouterr().err


def test_next_seeds_takes_the_largest_projection_at_least_one_more_and_at_most_the_cap():
    p = StudyPower(0.05, [VariantPower("a", 3, 0.04, 3), VariantPower("b", 3, 0.08, 7),
                          VariantPower("c", 3, 0.06, None)])
    assert not p.met
    assert p.next_seeds(3, 20) == 20  # c: beyond the projection's reach -> the cap
    assert p.next_seeds(3, 5) == 5
    p = StudyPower(0.05, [VariantPower("a", 3, 0.04, 3), VariantPower("b", 3, 0.08, 7)])
    assert p.next_seeds(3, 20) == 7
    p = StudyPower(0.05, [VariantPower("b", 6, 0.051, 5)])  # projected below today's: one more
    assert p.next_seeds(6, 20) == 7
    assert StudyPower(0.05, [VariantPower("a", 3, 0.05, 3)]).met
