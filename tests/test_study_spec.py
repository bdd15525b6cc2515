"""Study files: validated on load, errors name the key; the shipped files match the paper."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsf.config import SCALES, build_config
from avsf.model.variants import ROWS, VARIANTS
from avsf.study.spec import StudyError, discover_studies, load_study, study_from_dict

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "studies"

GOOD = """
name = "t"
title = "A test"
paper_table = "5c"
metric = "top1"
[base]
model.pathways = "avslowfast"
[[variant]]
name = "a"
label = "A"
set = { model.drop_pathway = 0.0 }
paper = { top1 = 75.2, top5 = 91.8 }
[[variant]]
name = "b"
set = { model.drop_pathway = 0.8, train.epochs = 9 }
[scale.small]
seeds = 2
set = { train.epochs = 3 }
"""


def _load(tmp_path, text):
    p = tmp_path / "t.toml"
    p.write_text(text)
    return load_study(p)


def test_good_file_loads_and_orders_overrides(tmp_path):
    spec = _load(tmp_path, GOOD)
    assert spec.variant_names == ["a", "b"]
    assert spec.default_scale == "small"
    assert spec.seeds() == [0, 1]
    assert spec.seeds("tiny") == [0]  # no [scale.tiny]: one seed
    a = spec.config_for("a", seed=1)
    assert a.model.drop_pathway == 0.0 and a.train.epochs == 3 and a.train.seed == 1
    assert a.data.crop_size == SCALES["small"]["data.crop_size"]  # the small scale's size
    b = spec.config_for("b")
    assert b.train.epochs == 9  # the variant wins over the scale table
    assert spec.config_for("a", overrides=["train.epochs=1"]).train.epochs == 1  # CLI wins over all
    assert spec.variant("a").paper == {"top1": 75.2, "top5": 91.8}


@pytest.mark.parametrize(
    "old,new,key",
    [
        ('title = "A test"', 'title = "A test"\nbogus = 1', "'bogus'"),
        ('name = "a"', 'name = "b"', "variant[1].name"),
        ('set = { model.drop_pathway = 0.0 }', 'set = { model.drop_pathwya = 0.0 }', "variant[0] ('a').set"),
        ('set = { model.drop_pathway = 0.0 }', 'set = { model.drop_pathway = "high" }', "model.drop_pathway"),
        ("paper = { top1 = 75.2, top5 = 91.8 }", 'paper = { top1 = "75.2" }', "variant[0] ('a').paper.top1"),
        ("paper = { top1 = 75.2, top5 = 91.8 }", "paper = { top9 = 1.0 }", "paper.top9"),
        ('metric = "top1"', 'metric = "accuracy"', "'metric'"),
        ("[scale.small]", "[scale.huge]", "'scale.huge'"),
        ("seeds = 2", "seeds = 0", "scale.small.seeds"),
        ("seeds = 2", "seeds = 2\nepochs = 3", "scale.small.epochs"),
        ("set = { train.epochs = 3 }", "set = { train.epoch = 3 }", "scale.small.set"),
        ('model.pathways = "avslowfast"', "model.pathway = 1", "'base'"),
        ('name = "t"', 'name = "a b/c"', "'name'"),
        ('label = "A"', "label = 3", "label"),
    ],
)
def test_errors_name_the_key(tmp_path, old, new, key):
    assert old in GOOD
    with pytest.raises(StudyError) as e:
        _load(tmp_path, GOOD.replace(old, new, 1))
    assert key in str(e.value)
    assert "t.toml" in str(e.value)


def test_missing_variants_and_name(tmp_path):
    with pytest.raises(StudyError, match="'variant'.*at least one"):
        _load(tmp_path, 'name = "x"\n')
    with pytest.raises(StudyError, match="'name'.*required"):
        _load(tmp_path, '[[variant]]\nname = "a"\n')
    with pytest.raises(StudyError, match="not valid TOML"):
        _load(tmp_path, "name = \n")
    with pytest.raises(StudyError, match="does not exist"):
        load_study(tmp_path / "nope.toml")


EXPECTED = {
    "droppathway": ("5c", ["pd0", "pd0.2", "pd0.5", "pd0.8", "slowfast"]),
    "fusion": ("5a", ["a-f-s", "a-fs", "av-nonlocal"]),
    "audio_channels": ("5b", ["beta1_8", "beta1_4", "beta1_2", "beta1"]),
    "avs_layers": ("5d", ["none", "res5", "res4-5", "res3-4-5"]),
    "fusion_stages": ("6", ["slowfast", "late-ensemble", "pool5", "res4-pool5", "res3-4-pool5", "res2-3-4-pool5",
                            "pool5-pd0", "res3-4-pool5-pd0"]),
    "audio_only": ("A.3", ["audio", "slowfast", "avslowfast"]),
    "audio_kernels": ("Sec. 3.4", ["3x3", "table1", "factorised"]),
}


def test_every_paper_ablation_has_a_valid_study_file():
    found = {p.stem: load_study(p) for p in discover_studies(STUDIES)}
    assert set(EXPECTED) <= set(found)
    for name, (table, variants) in EXPECTED.items():
        spec = found[name]
        assert spec.name == name and spec.paper_table == table
        assert spec.variant_names == variants
        for scale in ("tiny", "small", "paper"):
            assert scale in spec.scales
            for v in spec.variants:
                spec.config_for(v, scale=scale)  # every run's config builds


def test_search_files_are_not_studies(tmp_path):
    (tmp_path / "search_x.toml").write_text("")
    (tmp_path / "a.toml").write_text("")
    assert [p.name for p in discover_studies(tmp_path)] == ["a.toml"]


def test_paper_numbers_copied_from_the_paper():
    dp = load_study(STUDIES / "droppathway.toml")
    pd = [v for v in dp.variants if not v.reference]
    assert [(v.label, v.set["model.drop_pathway"], v.paper["top1"], v.paper["top5"]) for v in pd] == [
        ("-", 0.0, 75.2, 91.8), ("0.2", 0.2, 76.0, 92.5), ("0.5", 0.5, 76.7, 92.7), ("0.8", 0.8, 77.0, 92.7),
    ]
    assert dp.variant("slowfast").paper["top1"] == 75.6  # the visual-only reference (Table 6)
    fs = load_study(STUDIES / "fusion_stages.toml")
    # the paper rows, then the two "Pd 0" mechanism checks (not paper rows: no numbers)
    assert [v.paper.get("gflops") for v in fs.variants] == [36.1, None, 38.4, 39.1, 39.8, 40.2, None, None]
    assert [v.reference for v in fs.variants[-2:]] == [True, True]
    assert fs.baseline_variant().name == "slowfast"
    b = load_study(STUDIES / "audio_channels.toml")
    assert [v.set["model.beta_a"] for v in b.variants] == [1 / 8, 1 / 4, 1 / 2, 1.0]
    assert [v.paper["gflops"] for v in b.variants] == [36.0, 36.8, 39.8, 51.9]
    f = load_study(STUDIES / "fusion.toml")
    assert [(v.paper["top1"], v.paper["gflops"]) for v in f.variants] == [(75.3, 51.4), (77.0, 39.8), (77.2, 39.9)]
    a = load_study(STUDIES / "avs_layers.toml")
    assert [v.paper["top1"] for v in a.variants] == [76.4, 76.7, 76.9, 77.0]
    ao = load_study(STUDIES / "audio_only.toml")
    assert ao.variant("audio").paper == {"top1": 24.8, "top5": 43.3, "gflops": 14.2}


def test_a_variant_takes_its_rows_numbers_and_config(tmp_path):
    text = GOOD.replace('set = { model.drop_pathway = 0.0 }\npaper = { top1 = 75.2, top5 = 91.8 }',
                        'row = "table5c/pd0"')
    spec = _load(tmp_path, text)
    a = spec.variant("a")
    assert a.row == "table5c/pd0" and a.paper == {"top1": 75.2, "top5": 91.8}
    assert a.set == {"model.drop_pathway": 0.0} and spec.config_for(a).model.drop_pathway == 0.0
    # its own `set` replaces the row's config; the numbers still come from the row
    own = _load(tmp_path, text.replace('row = "table5c/pd0"', 'row = "table5a/a-f-s"\nset = { model.beta_a = 0.25 }'))
    assert own.variant("a").set == {"model.beta_a": 0.25}
    assert own.variant("a").paper == {"top1": 75.3, "top5": 91.8, "gflops": 51.4}
    # study.json keeps the resolved variant and reads back to the same spec
    back = study_from_dict(spec.to_dict(), source="study.json")
    assert back.variant("a") == a and back.to_dict()["variants"] == spec.to_dict()["variants"]


@pytest.mark.parametrize("variant, key, words", [
    ('row = "table5c/pd9"', "variant[0] ('a').row", "'table5c/pd9' is not a registered paper row"),
    ('row = "table5c/pd0"\npaper = { top1 = 70.0 }', "variant[0] ('a').paper", "the numbers come from row"),
])
def test_bad_rows_name_the_key(tmp_path, variant, key, words):
    text = GOOD.replace('set = { model.drop_pathway = 0.0 }\npaper = { top1 = 75.2, top5 = 91.8 }', variant)
    with pytest.raises(StudyError) as e:
        _load(tmp_path, text)
    assert f"key '{key}'" in str(e.value) and words in str(e.value)


def test_values_are_checked_on_the_merged_config(tmp_path):
    # 1/64 of the tiny width leaves no audio channel: a value only the merged config can judge
    text = GOOD.replace("[scale.small]", '[scale.tiny]\nseeds = 1\n[scale.small]').replace(
        'set = { model.drop_pathway = 0.8, train.epochs = 9 }', 'set = { model.beta_a = 0.015625 }')
    with pytest.raises(StudyError, match=r"key 'variant\[1\] \('b'\) at scale small': model.beta_a: 0.015625"):
        _load(tmp_path, text)
    with pytest.raises(StudyError, match=r"key 'variant\[0\] \('a'\) at scale small': model.fusion: 'a-fss'"):
        _load(tmp_path, GOOD.replace('set = { model.drop_pathway = 0.0 }', 'set = { model.fusion = "a-fss" }'))
    with pytest.raises(StudyError, match=r"train.precision: 'fp16' is not allowed"):
        _load(tmp_path, GOOD.replace('model.pathways = "avslowfast"', 'train.precision = "fp16"'))


def test_paper_reference_reads_as_the_paper_writes_it(tmp_path):
    spec = _load(tmp_path, GOOD)
    for table, ref in [("5c", "Table 5c"), ("A.3", "Table A.3"), ("Sec. 3.4", "Sec. 3.4"), ("", "the paper")]:
        spec.paper_table = table
        assert spec.paper_ref == ref


def test_registry_rows_are_valid_and_numbered():
    assert set(VARIANTS) == {n for n, r in ROWS.items() if r.gflops is not None}
    for name, r in ROWS.items():
        assert name.startswith(r.table + "/") and r.paper, name  # every row carries a paper number
        build_config(scale="paper", base=r.overrides)
    assert ROWS["table5c/pd0.8"].paper == {"top1": 77.0, "top5": 92.7}
    assert ROWS["table4/avslowfast-r101-nl"].paper == {"mAP": 43.7, "gflops": 278.0}


def test_shipped_studies_cite_registered_rows():
    for path in discover_studies(STUDIES):
        for v in load_study(path).variants:
            if v.paper:
                assert v.row in ROWS and v.paper == ROWS[v.row].paper, (path.name, v.name)


CLAIMS = GOOD.replace('metric = "top1"', 'metric = "top1"\nhypothesis = "b beats a"\nmechanism = "because"') + """
[[claim]]
text = "b beats a"
better = "b"
worse = "a"

[[claim]]
text = "b beats a on top-5 too"
better = "b"
worse = "a"
metric = "top5"
"""


def test_hypothesis_mechanism_and_claims_load_and_roundtrip(tmp_path):
    spec = _load(tmp_path, CLAIMS)
    assert (spec.hypothesis, spec.mechanism) == ("b beats a", "because")
    assert [(c.text, c.better, c.worse, c.metric) for c in spec.claims] == [
        ("b beats a", "b", "a", "top1"), ("b beats a on top-5 too", "b", "a", "top5")]
    tree = spec.to_dict()
    assert tree["claims"][1] == {"text": "b beats a on top-5 too", "better": "b", "worse": "a", "metric": "top5"}
    back = study_from_dict(tree, source="study.json")
    assert back.claims == spec.claims and back.hypothesis == spec.hypothesis and back.mechanism == spec.mechanism
    assert _load(tmp_path, GOOD).claims == []  # all optional


@pytest.mark.parametrize("old, new, key, words", [
    ('better = "b"\nworse = "a"\n\n', 'better = "c"\nworse = "a"\n\n', "claim[0].better", "'c' is not a variant"),
    ('worse = "a"\nmetric', 'worse = "z"\nmetric', "claim[1].worse", "'z' is not a variant of this study"),
    ('better = "b"\nworse = "a"\n\n', 'better = "a"\nworse = "a"\n\n', "claim[0].worse", "with itself"),
    ('text = "b beats a"\n', '', "claim[0].text", "is required"),
    ('metric = "top5"', 'metric = "top7"', "claim[1].metric", "'top7' is not a result number"),
    ('metric = "top5"', 'metric = "top5"\nstrength = 2', "claim[1].strength", "unknown key"),
    ('hypothesis = "b beats a"', 'hypothesis = 3', "hypothesis", "must be a string"),
    ('mechanism = "because"', 'mechanism = ["x"]', "mechanism", "must be a string"),
])
def test_bad_claims_name_the_file_and_key(tmp_path, old, new, key, words):
    assert old in CLAIMS
    with pytest.raises(StudyError) as e:
        _load(tmp_path, CLAIMS.replace(old, new, 1))
    assert str(e.value).startswith(f"{tmp_path / 't.toml'}: key '{key}': ") and words in str(e.value)
