"""The synthetic EPIC-like and Charades-like sets (avsf.data.synth_tasks): determinism, what
carries each label, the file layout, and the `data.dataset` names that generate them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avsf.config import build_config
from avsf.data import BUILTIN_SETS, dataset_info, synth_root
from avsf.data import synth_tasks as T
from avsf.data.manifest import read_manifest

EPIC_TINY, CH_TINY = T.EPIC_SCALES["tiny"], T.CHARADES_SCALES["tiny"]


@pytest.fixture(scope="module")
def epic_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth-epic")
    T.generate_epic(out, "tiny", 0, workers=1)
    return out


@pytest.fixture(scope="module")
def charades_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth-charades")
    T.generate_charades(out, "tiny", 0, workers=1)
    return out


def _blob(frames: np.ndarray, colour) -> np.ndarray:
    """(N, 3): centroid y, centroid x and area of the pixels close to `colour` in each frame."""
    near = np.abs(frames.astype(float) / 255 - np.asarray(colour)).max(axis=3) < 0.12
    ys, xs = np.mgrid[0:frames.shape[1], 0:frames.shape[2]]
    area = near.sum(axis=(1, 2))
    n = np.maximum(area, 1)
    return np.stack([(near * ys).sum(axis=(1, 2)) / n, (near * xs).sum(axis=(1, 2)) / n, area], axis=1)


def _peak_hz(audio: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(len(audio), 1 / T.SAMPLE_RATE)[spec.argmax()])


# ----------------------------------------------------------------------------- synth-epic
def test_epic_clip_is_deterministic_and_keyed_by_its_row():
    a = T.render_epic_clip(0, 1, 2, "train", 0, EPIC_TINY)
    b = T.render_epic_clip(0, 1, 2, "train", 0, EPIC_TINY)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for other in (T.render_epic_clip(0, 1, 2, "train", 1, EPIC_TINY), T.render_epic_clip(1, 1, 2, "train", 0, EPIC_TINY),
                  T.render_epic_clip(0, 1, 2, "test", 0, EPIC_TINY)):
        assert not np.array_equal(a[0], other[0])


def test_epic_verb_is_the_motion():
    sc = T.EPIC_SCALES["small"]
    tomato = T.NOUN_LOOK["tomato"][1]
    spread = {}
    for verb, name in enumerate(T.VERBS):
        cy, cx, area = _blob(T.render_epic_clip(0, verb, 0, "train", 0, sc)[0], tomato).T
        spread[name] = (cy.std(), cx.std(), area.std() / area.mean())
    assert spread["stir"][0] > 5 and spread["stir"][1] > 5  # circles: both coordinates move
    assert spread["shake"][1] > 5 and spread["shake"][0] < 0.5  # side to side only
    assert spread["lift"][0] > 5 and spread["lift"][1] < 0.5  # up and down only
    assert max(spread["squeeze"][:2]) < 0.5 and spread["squeeze"][2] > 0.3  # stays, swells and shrinks


def test_epic_noun_is_the_look_or_the_sound():
    for noun, (name, group) in enumerate(T.NOUNS):
        frames, audio = T.render_epic_clip(0, 0, noun, "val", 0, EPIC_TINY)
        if group == "visual":  # the noun's own colour is in the picture
            assert _blob(frames, T.NOUN_LOOK[name][1])[:, 2].min() > 10, name
        else:  # every sound noun is the same grey lid: no colour tells them apart
            px = frames.astype(int)
            grey = (np.abs(px[..., 0] - px[..., 1]) < 12) & (np.abs(px[..., 1] - px[..., 2]) < 12) & (px[..., 0] > 110)
            assert grey.sum(axis=(1, 2)).min() > 10, name
            for look in T.NOUN_LOOK.values():
                assert _blob(frames, look[1])[:, 2].max() == 0, name
    kettle = T.render_epic_clip(0, 0, 3, "val", 0, EPIC_TINY)[1]
    fridge = T.render_epic_clip(0, 0, 4, "val", 0, EPIC_TINY)[1]
    assert 2000 <= _peak_hz(kettle) <= 3000 and _peak_hz(fridge) < 400  # whistle vs hum


def test_epic_files_labels_and_dataset_info(epic_dir):
    info = json.loads((epic_dir / "classes.json").read_text())
    assert info["verbs"] == list(T.VERBS) and info["nouns"] == [n for n, _ in T.NOUNS]
    assert info["groups"] == {"noun_visual": [0, 1, 2], "noun_audio": [3, 4, 5]}
    for split in T.SPLITS:
        rows = read_manifest(epic_dir / f"{split}.csv")
        pairs = [(r.verb, r.noun) for r in rows]
        assert sorted(set(pairs)) == [(v, n) for v in range(4) for n in range(6)]  # every action, equally often
        assert len(pairs) == 24 * EPIC_TINY.counts[split]
        assert all(r.label == r.verb and r.path.exists() and r.audio.exists() for r in rows)
    assert len(read_manifest(epic_dir / "manifest.csv", split="test")) == 24
    cfg = build_config(scale="tiny", overrides={"data.dataset": str(epic_dir)})
    d = dataset_info(cfg)
    assert d.verb_noun and not d.multi_label and (d.num_verbs, d.num_nouns) == (4, 6)
    assert d.noun_names[3] == "kettle" and d.groups["noun_audio"] == [3, 4, 5]


def test_epic_output_does_not_depend_on_the_worker_count(epic_dir, tmp_path):
    T.generate_epic(tmp_path, "tiny", 0, workers=2)
    for name in ("train.csv", "test.csv", "manifest.csv"):
        assert (tmp_path / name).read_text() == (epic_dir / name).read_text()
    clip = read_manifest(epic_dir / "test.csv")[5]
    rel = clip.path.relative_to(epic_dir)
    assert (tmp_path / rel).read_bytes() == clip.path.read_bytes()
    assert (tmp_path / rel.with_suffix(".flac")).read_bytes() == clip.audio.read_bytes()


# ----------------------------------------------------------------------------- synth-charades
def test_spans_one_to_three_distinct_actions_inside_the_video():
    rng = np.random.default_rng(3)
    seen_counts = set()
    for index in range(60):
        spans = T.draw_spans(rng, index, 8.0)
        seen_counts.add(len(spans))
        assert spans[0].action == index % len(T.ACTIONS)  # every class comes round
        assert len({s.action for s in spans}) == len(spans)
        for s in spans:
            assert 0 <= s.start < s.end <= 8.0
            assert T.MIN_SPAN * 8 - 0.02 <= s.end - s.start <= T.MAX_SPAN * 8 + 0.02
    assert seen_counts == {1, 2, 3}


def test_cut_labels_are_the_actions_covering_half_of_the_cut():
    spans = [T.Span(0, 1.0, 5.0), T.Span(4, 0.0, 3.0), T.Span(6, 4.0, 8.0)]
    # the cut [1, 5): action 0 covers all of it, 4 covers 2 of 4 s (half), 6 covers 1 of 4 s
    assert T.cut_labels(spans, 1.0, 5.0) == [0, 4]
    assert T.cut_labels(spans, 4.0, 8.0) == [6]
    assert T.cut_labels(spans, 0.0, 3.0) == [0, 4]  # 0 covers 2 of 3 s


def _video_with(kinds: set[str], split: str = "train"):
    """The first tiny video whose actions are all of the given groups, and only one action."""
    for index in range(200):
        frames, audio, spans = T.render_charades_video(0, split, index, CH_TINY)
        if len(spans) == 1 and T.ACTIONS[spans[0].action][1] in kinds:
            return frames, audio, spans[0]
    raise AssertionError(f"no video with one {kinds} action in 200")


def test_a_heard_action_leaves_the_picture_still_and_sounds_in_its_span():
    frames, audio, span = _video_with({"audio"})
    assert np.abs(frames.astype(int) - frames[0].astype(int)).max() == 0  # nothing moves
    t = np.arange(len(audio)) / T.SAMPLE_RATE
    inside = audio[(t > span.start + 0.3) & (t < span.end - 0.3)]
    outside = audio[(t < span.start - 0.1) | (t > span.end + 0.1)]
    assert np.sqrt((inside ** 2).mean()) > 1.4 * np.sqrt((outside ** 2).mean())


def test_a_seen_action_moves_only_during_its_span():
    frames, _, span = _video_with({"visual"})
    change = np.abs(np.diff(frames.astype(int), axis=0)).max(axis=(1, 2, 3))
    t = (np.arange(len(change)) + 1) / T.FPS
    assert change[(t < span.start - 0.1) | (t > span.end + 0.1)].max() == 0
    assert change[(t > span.start + 0.3) & (t < span.end - 0.3)].max() > 20


def _spans_csv(path: Path) -> dict[str, list[tuple[int, float, float]]]:
    """spans_<split>.csv in Charades' layout: video id -> [(class, start, end)] from "c004 1.81 3.88;..."."""
    import csv

    with open(path, newline="") as f:
        return {r["id"]: [(int(c[1:]), float(a), float(b)) for c, a, b in (x.split() for x in r["actions"].split(";"))]
                for r in csv.DictReader(f)}


def test_charades_files_cuts_and_video_labels(charades_dir):
    import csv

    info = json.loads((charades_dir / "classes.json").read_text())
    assert info["groups"] == {"visual": [0, 1, 2, 3], "audio": [4, 5, 6]}
    spans = {s: _spans_csv(charades_dir / f"spans_{s}.csv") for s in T.SPLITS}
    assert len(spans["train"]) == CH_TINY.counts["train"]
    with open(charades_dir / "train.csv", newline="") as f:
        train = list(csv.DictReader(f))
    assert len(train) == sum(len(v) for v in spans["train"].values())  # one cut per span
    for row in train:
        t0, t1 = float(row["start"]), float(row["end"])
        cut = [c for c, a, b in spans["train"][row["video"]] if abs(a - t0) < 1 / T.FPS and abs(b - t1) < 1 / T.FPS]
        assert cut and cut[0] in [int(x) for x in row["label"].split(";") if x]  # cut at its span, labelled with it
    test = read_manifest(charades_dir / "test.csv")
    assert len(test) == CH_TINY.counts["test"] and all(abs(r.duration - CH_TINY.duration_s) < 1e-6 for r in test)
    for r, src in zip(test, spans["test"].values()):
        assert r.label == sorted(c for c, _, _ in src)  # the video's label: every action in it
    assert set().union(*(r.label for r in test)) == set(range(len(T.ACTIONS)))  # each class has a positive
    d = dataset_info(build_config(scale="tiny", overrides={"data.dataset": str(charades_dir)}))
    assert d.multi_label and d.num_classes == 7 and not d.verb_noun


# ----------------------------------------------------------------------------- data.dataset names
def test_generated_sets_have_their_own_versioned_cache_folders(tmp_path):
    def root(name):
        return synth_root(build_config(scale="tiny", overrides={"data.dataset": name, "data.cache_dir": str(tmp_path)}))

    from avsf.data import synth

    assert root("synth").name == f"synth-tiny-seed0-v{synth.VERSION}"  # the benchmark keeps its own version
    assert root("synth-epic").name == f"synth-epic-tiny-seed0-v{BUILTIN_SETS['synth-epic'].version}"
    assert root("synth-charades").name.startswith("synth-charades-tiny-seed0-v")


def test_dataset_name_generates_the_set_on_first_use(tmp_path):
    cfg = build_config(scale="tiny", overrides={"data.dataset": "synth-charades", "data.cache_dir": str(tmp_path)})
    info = dataset_info(cfg)
    assert info.root == synth_root(cfg) and info.multi_label and info.class_names[4] == "phone-ringing"
    assert info.split_sizes["test"] == CH_TINY.counts["test"]


def test_unknown_scale_is_named():
    with pytest.raises(ValueError, match="data.synth_scale: 'huge' is not allowed for synth-epic; choose one of: tiny, small"):
        T.generate_epic("/nonexistent", "huge")


def test_cli_writes_a_task_set_where_asked(epic_dir, tmp_path, capsys):
    from avsf.cli import main

    assert main(["data", "synth", "--dataset", "synth-epic", "--scale", "tiny", "--out", str(tmp_path), "--workers", "1",
                 "--no-progress"]) == 0
    assert "wrote 72 clips" in capsys.readouterr().out
    assert (tmp_path / "manifest.csv").read_text() == (epic_dir / "manifest.csv").read_text()


def test_cli_offers_every_built_in_set(capsys):
    from avsf.cli import main

    with pytest.raises(SystemExit):
        main(["data", "synth", "--help"])
    offered = capsys.readouterr().out.split("--dataset {", 1)[1].split("}", 1)[0].split(",")
    assert set(offered) == set(BUILTIN_SETS)


def test_cli_test_per_class_sizes_only_the_benchmarks_test_split(tmp_path, capsys):
    from avsf.cli import main

    assert main(["data", "synth", "--dataset", "synth-epic", "--scale", "tiny", "--out", str(tmp_path / "e"),
                 "--test-per-class", "3", "--no-progress"]) == 2
    assert "--test-per-class sizes the benchmark's test split" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()  # refused before anything is written
    assert main(["data", "synth", "--scale", "tiny", "--out", str(tmp_path / "s"), "--workers", "1",
                 "--test-per-class", "2", "--no-progress"]) == 0
    assert "'test': 26" in capsys.readouterr().out


def test_cli_offers_every_synth_scale(capsys):
    from avsf.cli import main
    from avsf.config import synth_scale_names

    with pytest.raises(SystemExit):
        main(["data", "synth", "--help"])
    offered = capsys.readouterr().out.split("--scale {", 1)[1].split("}", 1)[0].split(",")
    assert tuple(offered) == synth_scale_names()
