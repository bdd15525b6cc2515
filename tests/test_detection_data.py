"""Detection data: `avsf data prepare --format ava` with broken rows, boxes through resize / crop /
flip (hand-computed and against the decoded pixels), jitter, detected boxes, the synthetic split."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avsf.cli import main
from avsf.config import ConfigError, build_config, validate_for_dataset
from avsf.data import AVLoader, dataset_info
from avsf.data.detection import (BoxAnnotations, Keyframe, jitter_boxes, map_boxes, read_ava_csv, read_detected_boxes,
                                 read_label_map)
from avsf.data.manifest import ManifestError, Row
from avsf.data.sampling import ClipSpec
from avsf.data.synth import encode_clip

WHITE_BOX = (0.25, 0.25, 0.5, 0.75)  # where the test videos' white rectangle stands (x1, y1, x2, y2)


def _video(path: Path, seconds: float = 3.0, size: tuple[int, int] = (48, 64)) -> None:
    """A black VP9/Opus WebM at 16 fps with a white rectangle at WHITE_BOX, and a quiet tone."""
    h, w = size
    frames = np.zeros((int(seconds * 16), h, w, 3), np.uint8)
    x1, y1, x2, y2 = WHITE_BOX
    frames[:, round(y1 * h):round(y2 * h), round(x1 * w):round(x2 * w)] = 255
    t = np.arange(int(seconds * 16000)) / 16000
    encode_clip(path, frames, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))


def _write(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


LABELS = ('label {\n  name: "stand"\n  label_id: 11\n  label_type: PERSON_MOVEMENT\n}\n'
          'label { name: "talk to" label_id: 79 label_type: PERSON_INTERACTION }\n')


@pytest.fixture(scope="module")
def ava_set(tmp_path_factory):
    """Two videos, AVA CSVs with good and broken rows, prepared through the CLI."""
    root = tmp_path_factory.mktemp("ava")
    (root / "videos").mkdir()
    _video(root / "videos" / "vidA.webm")
    _video(root / "videos" / "vidB.webm")
    train = _write(root / "ava_train_v2.2.csv", [
        ["vidA", "1", *WHITE_BOX, "11", "0"],
        ["vidA", "1", *WHITE_BOX, "79", "0"],  # the same person, a second action
        ["vidA", "2", "0.6", "0.1", "0.9", "0.5", "79", "1"],
        ["vidA", "2", "abc", "0.1", "0.9", "0.5", "11", "2"],  # 4: bad number
        ["vidA", "2", "0.6", "0.1", "1.2", "0.5", "11", "2"],  # 5: outside [0, 1]
        ["vidA", "2", "0.6", "0.5", "0.6", "0.9", "11", "2"],  # 6: degenerate
        ["vidZ", "1", *WHITE_BOX, "11", "0"],  # 7: unknown video
        ["vidA", "1", "0.1", "0.1", "0.2"],  # 8: too few columns
        ["vidA", "9", *WHITE_BOX, "11", "0"],  # 9: after the video's end
        ["vidA", "1", *WHITE_BOX, "40", "3"],  # 10: an action outside the label map
    ])
    val = _write(root / "val.csv", [["vidB", "1", *WHITE_BOX, "11", "0"], ["vidB", "2", *WHITE_BOX, "79", "0"]])
    (root / "labels.pbtxt").write_text(LABELS)
    rc = main(["data", "prepare", str(train), f"val={val}", f"test={val}", "--format", "ava", "--video-root",
               str(root / "videos"), "--labels", str(root / "labels.pbtxt"), "--out", str(root / "out"),
               "--workers", "1", "--no-progress"])
    assert rc == 0
    return root


def test_prepare_ava_reports_every_broken_row_with_file_and_row_and_keeps_it_out(ava_set):
    out = ava_set / "out"
    report = json.loads((out / "report.json").read_text())
    left = {(Path(p["file"]).name, p["row"]): p["reason"] for p in report["left_out"]}
    assert set(left) == {("ava_train_v2.2.csv", r) for r in (4, 5, 6, 7, 8, 9)}
    assert "'abc' is not a number" in left[("ava_train_v2.2.csv", 4)]
    assert "outside [0, 1] (x2=1.2)" in left[("ava_train_v2.2.csv", 5)]
    assert "degenerate box" in left[("ava_train_v2.2.csv", 6)]
    assert "unknown video 'vidZ'" in left[("ava_train_v2.2.csv", 7)]
    assert "5 columns" in left[("ava_train_v2.2.csv", 8)]
    assert "timestamp 9 lies outside video 'vidA'" in left[("ava_train_v2.2.csv", 9)]
    assert report["excluded_actions"] == {"40": 1}
    assert report["splits"] == {"train": 2, "val": 2, "test": 2} and report["keyframes"] == 6
    boxes = list(csv.DictReader(open(out / "boxes.csv")))
    train_a = [(b["timestamp"], b["label"], b["person_id"]) for b in boxes if b["video_id"] == "vidA"]
    assert train_a == [("1", "0", "0"), ("1", "1", "0"), ("2", "1", "1")]  # class = position in the label map
    meta = json.loads((out / "classes.json").read_text())
    assert meta["classes"] == ["stand", "talk to"] and meta["action_ids"] == [11, 79] and meta["task"] == "detection"
    assert meta["groups"] == {"PERSON_MOVEMENT": [0], "PERSON_INTERACTION": [1]}


def test_prepared_set_describes_itself_as_detection(ava_set):
    cfg = build_config(scale="tiny", overrides={"data.dataset": str(ava_set / "out"), "model.head": "detection",
                                                "eval.temporal_views": 1, "train.batch_size": 2})
    info = dataset_info(cfg)
    assert info.task == "detection" and info.split_sizes == {"train": 2, "val": 2, "test": 2}
    row = next(r for r in AVLoader(cfg, "train", "train", info=info).rows if r.extra["timestamp"] == "1")
    kf = info.annotations.truth(row)
    assert np.allclose(kf.boxes, [WHITE_BOX]) and kf.labels == [[0, 1]]  # one person, two actions
    assert row.keyframe == pytest.approx(1.0) and isinstance(row.label, list)
    validate_for_dataset(cfg, info)
    cfg.eval.temporal_views = 2
    with pytest.raises(ConfigError, match="eval.temporal_views: 2 is not allowed"):
        validate_for_dataset(cfg, info)
    cfg.eval.temporal_views, cfg.model.head = 1, "sigmoid"
    with pytest.raises(ConfigError, match="model.head: 'sigmoid' is not allowed; .* is a detection set"):
        validate_for_dataset(cfg, info)


def test_cli_refuses_bad_ava_inputs_before_any_work(ava_set, tmp_path, capsys):
    base = ["data", "prepare", "--format", "ava", "--out", str(tmp_path / "o"), "--no-progress"]
    assert main([*base, str(ava_set / "labels.pbtxt"), "--video-root", str(ava_set / "videos")]) == 2
    assert "cannot tell its split" in capsys.readouterr().err
    assert main([*base, "train=missing.csv", "--video-root", str(ava_set / "videos")]) == 2
    assert "missing.csv: AVA annotation CSV not found" in capsys.readouterr().err
    assert main([*base, f"train={ava_set / 'val.csv'}", "--video-root", str(ava_set / "videos"),
                 "--time-offset", "-1"]) == 2
    assert "--time-offset -1 is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_read_ava_csv_and_label_map_formats(tmp_path):
    path = _write(tmp_path / "a.csv", [["video_id", "timestamp"], ["v", "0902", "0.1", "0.2", "0.3", "0.4", "12"]])
    rows, problems = read_ava_csv(path)
    assert problems == [] and rows[0].timestamp == 902.0 and rows[0].person == "" and rows[0].row == 2
    (tmp_path / "v21.pbtxt").write_text('item {\n  name: "bend/bow (at the waist)"\n  id: 1\n}\n')
    assert read_label_map(tmp_path / "v21.pbtxt").names == ("bend/bow (at the waist)",)
    (tmp_path / "bad.pbtxt").write_text('label { name: "x" }')
    with pytest.raises(ManifestError, match="entry 1 needs name and label_id"):
        read_label_map(tmp_path / "bad.pbtxt")


# ----------------------------------------------------------------------------- boxes of a clip
def test_map_boxes_through_resize_crop_and_flip_by_hand():
    # frame resized to 40 x 80 (h x w), crop 32 at (y0, x0) = (4, 10): the box 0.25..0.75 x 0.5..1.0
    # is x 20..60, y 20..40 resized, x 10..50, y 16..36 in the crop, clipped to x 10..32, y 16..32
    px, vis = map_boxes(np.array([[0.25, 0.5, 0.75, 1.0], [0.9, 0.0, 1.0, 0.1]]), (40, 80), (4, 10, 32), False)
    assert px[0].tolist() == [10.0, 16.0, 32.0, 32.0]
    assert vis[0] == pytest.approx(22 * 16 / (40 * 20)) and vis[1] == 0.0  # the second box is outside
    flipped, _ = map_boxes(np.array([[0.25, 0.5, 0.75, 1.0]]), (40, 80), (4, 10, 32), True)
    assert flipped[0].tolist() == [0.0, 16.0, 22.0, 32.0]  # x -> 32 - x, the ends swapped


def test_jitter_moves_boxes_by_at_most_the_share_and_keeps_them_valid():
    box = np.array([[0.2, 0.2, 0.6, 0.4], [0.0, 0.99, 0.005, 1.0]])
    moved = jitter_boxes(box, 0.1, np.random.default_rng(0))
    assert np.all(np.abs(moved[0] - box[0]) <= 0.1 * np.array([0.4, 0.2, 0.4, 0.2]) + 1e-12)
    assert not np.allclose(moved[0], box[0])
    assert np.all(moved[:, 2:] > moved[:, :2]) and moved.min() >= 0 and moved.max() <= 1
    assert np.array_equal(moved, jitter_boxes(box, 0.1, np.random.default_rng(0)))


@pytest.mark.parametrize("mode", ["train", "test"])
def test_loader_boxes_frame_the_pixels_they_annotate(ava_set, mode):
    """The reference loader's `boxes` (after its random resize, crop and flip) enclose the white
    rectangle the CSV annotates, in the pixels the model sees."""
    cfg = build_config(scale="tiny", overrides={"data.dataset": str(ava_set / "out"), "model.head": "detection",
                                                "eval.temporal_views": 1, "data.loader": "reference",
                                                "data.box_jitter": 0.0, "data.crop_size": 40,
                                                "data.short_side_range": [44, 60], "data.test_crop_size": 48,
                                                "data.num_threads": 1, "train.batch_size": 2})
    checked = 0
    for epoch in range(4):
        for batch in AVLoader(cfg, "train", mode, epoch=epoch):
            white = batch["slow"].mean(dim=(1, 2)) > 0  # (B, H, W): normalised frames, white > mean
            for b in range(len(white)):
                on_white = batch["box_labels"][b].sum(dim=1) == 2  # keyframe 1's person: both actions
                if not on_white.any():
                    continue  # keyframe 2: its one person stands on black
                k = int(on_white.nonzero()[0])
                x1, y1, x2, y2 = batch["boxes"][b, k].tolist()
                ys, xs = torch.nonzero(white[b], as_tuple=True)
                assert bool(batch["box_mask"][b, k]) == (batch["box_visible"][b, k] >= 0.25)
                if batch["box_mask"][b, k]:
                    assert abs(xs.min() - x1) <= 1.5 and abs(xs.max() + 1 - x2) <= 1.5
                    assert abs(ys.min() - y1) <= 1.5 and abs(ys.max() + 1 - y2) <= 1.5
                    checked += 1
    assert checked >= 3


def test_detected_boxes_replace_the_truth_at_test_and_take_its_labels(tmp_path):
    det = _write(tmp_path / "det.csv", [["v", "902", "0.1", "0.1", "0.5", "0.5", "", "0.95"],
                                        ["v", "902", "0.6", "0.6", "0.9", "0.9", "", "0.85"],
                                        ["v", "902", "0.0", "0.0", "0.2", "0.2", "", "0.3"]])
    detected = read_detected_boxes(det, 0.8)
    assert len(detected[("v", 902.0)]) == 2
    cfg = build_config(scale="tiny", overrides={"data.box_jitter": 0.0})
    truth = {("v", 902.0): Keyframe(np.array([[0.1, 0.1, 0.5, 0.52]]), [[1, 2]])}
    ann = BoxAnnotations(truth, 3, cfg, detected)
    row = Row(Path("v.webm"), None, [1, 2], 4.0, 16.0, extra={"video_id": "v", "timestamp": "902"})
    boxes, labels, scores = ann.inputs(row, "test")
    assert boxes.shape == (2, 4) and labels.tolist() == [[0, 1, 1], [0, 0, 0]] and scores.tolist() == [0.95, 0.85]
    assert ann.inputs(row, "train")[0].tolist() == [[0.1, 0.1, 0.5, 0.52]]  # training keeps the truth
    spec = ClipSpec(0, 0, (0,), (40, 40), (0, 0, 40), False, 0)
    fields = ann.fields([row], [spec], "test")
    assert fields["boxes"].shape == (1, 2, 4) and fields["box_mask"].tolist() == [[True, True]]
    assert torch.allclose(fields["boxes"][0, 0], torch.tensor([4.0, 4.0, 20.0, 20.0]))
    bad = _write(tmp_path / "bad.csv", [["v", "902", "0.1", "0.1", "0.5", "x", "", "0.9"]])
    with pytest.raises(ManifestError, match=r"bad.csv, row 1: y2 'x' is not a number"):
        read_detected_boxes(bad, 0.8)


def test_synthetic_detection_split_is_deterministic_and_ava_shaped(tmp_path):
    from avsf.data.synth_detection import ACTIONS, SCALES, generate, render_video

    a = render_video(3, "train", 1, SCALES["tiny"])
    b = render_video(3, "train", 1, SCALES["tiny"])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    report = generate(tmp_path, "tiny", 0, workers=1)
    assert report["left_out"] == [] and report["keyframes"] == 3 * sum(SCALES["tiny"].videos.values())
    rows, problems = read_ava_csv(tmp_path / "ava" / "ava_train.csv")
    assert problems == [] and {r.timestamp for r in rows} == {1.0, 2.0, 3.0}
    meta = json.loads((tmp_path / "classes.json").read_text())
    assert meta["classes"] == [n for n, _ in ACTIONS] and meta["groups"]["sync"] == [3]


@pytest.mark.parametrize("mode", ["train", "test"])
def test_dali_and_reference_loaders_give_the_same_boxes(ava_set, mode):
    pytest.importorskip("nvidia.dali")
    batches = {}
    for loader in ("reference", "dali"):
        cfg = build_config(scale="tiny", overrides={"data.dataset": str(ava_set / "out"), "model.head": "detection",
                                                    "eval.temporal_views": 1, "data.loader": loader,
                                                    "data.device": "cpu", "data.num_threads": 1,
                                                    "train.batch_size": 2})
        batches[loader] = list(AVLoader(cfg, "train", mode, epoch=1))
    assert len(batches["dali"]) == len(batches["reference"]) > 0
    for ref, dali in zip(batches["reference"], batches["dali"]):
        for key in ("index", "boxes", "box_mask", "box_labels", "box_visible"):
            assert torch.equal(ref[key], dali[key]), key


def test_keyframe_rows_give_clips_centred_on_the_keyframe():
    from avsf.data.sampling import ClipGeometry, test_specs, train_spec

    cfg = build_config(scale="tiny", overrides={"eval.temporal_views": 3})  # 2 x 8 = 16 frames, Fast stride 4
    g = ClipGeometry.from_config(cfg)
    row = Row(Path("v.webm"), None, [0], 4.0, 16.0, keyframe=2.0)
    # the keyframe (frame 32) is the clip's middle frame: the span starts 8 frames before it
    assert train_spec(cfg, g, row, 0, (48, 48), epoch=3).frames == (24, 28, 32, 36)
    assert {s.frames for s in test_specs(cfg, g, row, 0, (48, 48))} == {(24, 28, 32, 36)}
    early = Row(Path("v.webm"), None, [0], 4.0, 16.0, keyframe=0.25)  # before the file's start: frame 0 repeats
    assert train_spec(cfg, g, early, 0, (48, 48), epoch=0).frames == (0, 0, 4, 8)
    assert train_spec(cfg, g, early, 0, (48, 48), epoch=0).audio_start == -4000  # silence before the start
