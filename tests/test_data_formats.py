"""Public datasets' annotation files on small hand-made examples: EPIC-Kitchens-55 (the paper's split),
UCF101 / HMDB51 official folds (data.fold), Charades clips cut to their spans with video-level
aggregation, and the CLI's format list."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avsf.config import ConfigError, build_config
from avsf.data import build_loader, dataset_info, load_rows, synth
from avsf.data.errors import ManifestError
from avsf.data.formats import FORMATS, read_charades_csv, read_epic_csv, read_format, read_hmdb51, read_ucf101
from avsf.data.manifest import read_manifest
from avsf.data.prepare import prepare


def _video(path: Path, seconds: float = 2.0, codec: str = "libvpx-vp9") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * 16)
    frames = np.full((n, 40, 48, 3), 80, np.uint8)
    synth.encode_clip(path, frames, np.zeros(int(seconds * 16000), np.float32), 16, codec=codec,
                      with_audio=path.suffix != ".avi")  # AVI cannot carry Opus


# ----------------------------------------------------------------------------- EPIC-Kitchens-55
EPIC55_HEADER = ("uid,participant_id,video_id,narration,start_timestamp,stop_timestamp,start_frame,stop_frame,"
                 "verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n")


def test_epic55_reads_the_paper_split_and_class_counts(tmp_path):
    for vid in ("P01/P01_01", "P25/P25_03", "P26/P26_01"):
        _video(tmp_path / "videos" / "train" / f"{vid}.MP4", codec="mpeg4")
    (tmp_path / "epic55.csv").write_text(
        EPIC55_HEADER
        + "0,P01,P01_01,open door,00:00:00.10,00:00:01.20,6,72,open,3,door,8,['door'],[8]\n"
        + "1,P25,P25_03,take cup,00:00:00.50,00:00:01.50,30,90,take,0,cup,351,['cup'],[351]\n"
        + "2,P26,P26_01,wash pan,00:00:00.00,00:00:01.00,0,60,wash,124,pan,20,['pan'],[20]\n")
    src = read_format("epic55", tmp_path / "epic55.csv", tmp_path / "videos")
    assert [r.extra["split"] for r in src.rows] == ["train", "train", "val"]  # P01-P25 train, P26-P31 val
    assert src.rows[0].path == tmp_path / "videos" / "train" / "P01" / "P01_01.MP4"
    assert (src.rows[2].start, src.rows[2].end, src.rows[2].label) == (0.0, 1.0, "124:20")
    assert src.info == {"format": "epic55", "num_verbs": 125, "num_nouns": 352}
    rep = prepare(src, tmp_path / "out", workers=1, progress=False)
    assert rep["ok"] == 3
    info = dataset_info(build_config(scale="tiny", overrides={"data.dataset": str(tmp_path / "out")}))
    assert info.verb_noun and (info.num_verbs, info.num_nouns) == (125, 352)
    assert info.split_sizes == {"train": 2, "val": 1, "test": 0}
    (val,) = read_manifest(tmp_path / "out" / "manifest.csv", "val")
    assert (val.verb, val.noun) == (124, 20) and abs(val.duration - 1.0) < 0.07
    with pytest.raises(ManifestError, match=r"row 3: .*outside epic's 97 verbs / 300 nouns; is this the other EPIC"):
        read_epic_csv(tmp_path / "epic55.csv", tmp_path, version="epic")  # noun 351 exists only in EPIC-55


@pytest.mark.parametrize("row, match", [
    ("0,P01,P01_01,x,00:00:00.10,00:00:01.20,6,72,v,125,n,8,[],[]\n", r"row 2: verb_class 125 .* 125 verbs"),
    ("0,P01,P01_01,x,00:00:02.10,00:00:01.20,6,72,v,1,n,8,[],[]\n", r"row 2: the segment .* is empty or reversed"),
    ("0,X7,P01_01,x,00:00:00.10,00:00:01.20,6,72,v,1,n,8,[],[]\n", r"row 2: participant_id 'X7'"),
    ("0,P01,P01_01,x,00:00:00.10,00:00:01.20,6,72,v,one,n,8,[],[]\n", r"row 2: verb_class/noun_class 'one'"),
])
def test_epic55_bad_rows_are_named(tmp_path, row, match):
    (tmp_path / "e.csv").write_text(EPIC55_HEADER + row)
    with pytest.raises(ManifestError, match=match):
        read_epic_csv(tmp_path / "e.csv", tmp_path, version="epic55")


# ----------------------------------------------------------------------------- UCF101 / HMDB51 folds
def _ucf(tmp_path: Path) -> tuple[Path, Path]:
    lists, root = tmp_path / "ucfTrainTestlist", tmp_path / "UCF-101"
    lists.mkdir()
    # classInd order is the class index; deliberately not alphabetical here
    (lists / "classInd.txt").write_text("1 Zumba\r\n2 Archery\r\n")
    vids = {"Zumba": ["v_Zumba_g01_c01.avi", "v_Zumba_g02_c01.avi"],
            "Archery": ["v_Archery_g01_c01.avi", "v_Archery_g02_c01.avi"]}
    for cls, names in vids.items():
        for n in names:
            _video(root / cls / n, seconds=1.0, codec="mpeg4")
    (lists / "trainlist01.txt").write_text("Zumba/v_Zumba_g02_c01.avi 1\nArchery/v_Archery_g02_c01.avi 2\n")
    (lists / "testlist01.txt").write_text("Zumba/v_Zumba_g01_c01.avi\nArchery/v_Archery_g01_c01.avi\n")
    (lists / "trainlist02.txt").write_text("Zumba/v_Zumba_g01_c01.avi 1\nArchery/v_Archery_g01_c01.avi 2\n")
    (lists / "testlist02.txt").write_text("Zumba/v_Zumba_g02_c01.avi\nArchery/v_Archery_g02_c01.avi\n")
    return lists, root


def test_ucf101_folds_prepare_and_load_by_data_fold(tmp_path):
    lists, root = _ucf(tmp_path)
    src = read_ucf101(lists, root)
    assert src.classes == ["Zumba", "Archery"] and src.info == {"format": "ucf101", "folds": [1, 2]}
    folds = {r.path.name: r.extra["folds"] for r in src.rows}
    assert folds["v_Zumba_g02_c01.avi"] == {1: "train", 2: "test"}
    out = tmp_path / "out"
    assert prepare(src, out, workers=1, progress=False)["ok"] == 4
    assert json.loads((out / "classes.json").read_text())["folds"] == [1, 2]

    def cfg(fold):
        return build_config(scale="tiny", overrides={"data.dataset": str(out), "data.fold": fold,
                                                     "data.loader": "reference", "train.batch_size": 2})

    info = dataset_info(cfg(1))
    assert info.class_names == ["Zumba", "Archery"] and info.split_sizes == {"train": 2, "val": 2, "test": 2}
    train1 = {(r.path.name.split("_")[1], r.label) for r in load_rows(out, "train", fold=1)}
    assert train1 == {("Zumba", 0), ("Archery", 1)}
    def stems(split, fold):  # prepared files are named <source stem>_<hash>.webm
        return sorted(Path(r.path).name.rsplit("_", 1)[0] for r in load_rows(out, split, fold=fold))

    assert stems("test", 1) == ["v_Archery_g01_c01", "v_Zumba_g01_c01"]
    assert stems("test", 2) == stems("train", 1) == ["v_Archery_g02_c01", "v_Zumba_g02_c01"]
    assert [r.path for r in load_rows(out, "val", fold=2)] == [r.path for r in load_rows(out, "test", fold=2)]
    (b,) = list(build_loader(cfg(2), "train", "train"))
    assert sorted(b["label"].tolist()) == [0, 1]
    with pytest.raises(ConfigError, match=r"data.fold: 0 is not allowed .* official folds 1, 2"):
        dataset_info(cfg(0))
    with pytest.raises(ConfigError, match=r"data.fold: 3 is not allowed .* folds 1, 2; set data.fold to 1 \| 2"):
        dataset_info(cfg(3))


@pytest.mark.parametrize("name, text, match", [
    ("trainlist01.txt", "Zumba/v_Zumba_g02_c01.avi 2\n", r"trainlist01\.txt, line 1: .*must name the same class"),
    ("trainlist01.txt", "Nope/v_Nope_g02_c01.avi 1\n", r"trainlist01\.txt, line 1"),
    ("testlist01.txt", "Zumba/v_Zumba_g02_c01.avi\n", r"is both train and test in fold 1"),
])
def test_ucf101_bad_lists_are_named(tmp_path, name, text, match):
    lists, root = _ucf(tmp_path)
    (lists / name).write_text(text)
    if name.startswith("test"):  # the same video as the train list's first line
        (lists / "trainlist01.txt").write_text("Zumba/v_Zumba_g02_c01.avi 1\n")
    with pytest.raises(ManifestError, match=match):
        read_ucf101(lists, root)


def test_hmdb51_split_files(tmp_path):
    d = tmp_path / "testTrainMulti_7030_splits"
    d.mkdir()
    (d / "wave_test_split1.txt").write_text("w1.avi 1 \nw2.avi 2 \nw3.avi 0 \n")
    (d / "wave_test_split2.txt").write_text("w1.avi 2 \nw2.avi 1 \nw3.avi 1 \n")
    (d / "clap_test_split1.txt").write_text("c1.avi 1 \n")
    src = read_hmdb51(d, tmp_path / "hmdb")
    assert src.classes == ["clap", "wave"] and src.info["folds"] == [1, 2]
    by = {r.path.name: (r.label, r.extra["folds"]) for r in src.rows}
    assert by["w3.avi"] == ("wave", {1: "", 2: "train"})  # 0 = not used in fold 1
    assert by["c1.avi"] == ("clap", {1: "train"}) and src.rows[0].path.parent.name in ("clap", "wave")
    (d / "clap_test_split1.txt").write_text("c1.avi 7\n")
    with pytest.raises(ManifestError, match=r"clap_test_split1\.txt, line 1: expected '<video>\.avi 0\|1\|2'"):
        read_hmdb51(d, tmp_path / "hmdb")


# ----------------------------------------------------------------------------- Charades
def test_charades_clips_cut_to_spans_with_overlap_labels(tmp_path, caplog):
    (tmp_path / "ch.csv").write_text("id,subject,actions,length\n"
                                     "AB12,s1,c1 0.0 10.0;c2 2.0 6.0;c3 0.0 10.0;c4 9.0 30.0;c5 25 30,20\n"
                                     "CD34,s2,,5\n")
    with caplog.at_level("WARNING", logger="avsf.data"):
        src = read_charades_csv(tmp_path / "ch.csv", tmp_path)
    got = [(r.start, r.end, r.label, r.extra["video"]) for r in src.rows]
    # (0,10): c1, c3 cover all of it, c2 4 s of 10, c4 1 s; (2,6): c1, c2, c3; (9,20): c4 (clipped at length 20)
    assert got == [(0.0, 10.0, ["c1", "c3"], "AB12"), (2.0, 6.0, ["c1", "c2", "c3"], "AB12"),
                   (9.0, 20.0, ["c4"], "AB12")]
    assert any("row 2" in r.message and "c5 25 30" in r.message for r in caplog.records)
    whole = read_charades_csv(tmp_path / "ch.csv", tmp_path, whole_videos=True).rows
    assert [(r.label, r.start) for r in whole] == [(["c1", "c2", "c3", "c4"], None)]


def test_charades_prepare_cuts_the_clips(tmp_path):
    _video(tmp_path / "AB12.mp4", seconds=3.0, codec="mpeg4")
    (tmp_path / "ch.csv").write_text("id,actions,length\nAB12,c9 0.5 1.5;c2 1.1 3.0,3\n")
    out = tmp_path / "out"
    rep = prepare(read_format("charades", tmp_path / "ch.csv", tmp_path), out, workers=1, progress=False)
    assert rep["ok"] == 2 and not rep["dropped"]
    rows = read_manifest(out / "manifest.csv")
    assert [r.video for r in rows] == ["AB12", "AB12"]
    # one class each, still multi-label (written "1;"): c2 covers 0.4 s of the first clip, c9 0.4 s of the second
    assert [round(r.duration, 1) for r in rows] == [1.0, 1.9] and [r.label for r in rows] == [[1], [0]]
    assert json.loads((out / "classes.json").read_text())["classes"] == ["c2", "c9"]


def test_cli_format_list_matches_the_readers():
    from avsf.cli.data import PREPARE_FORMATS

    assert PREPARE_FORMATS == (*FORMATS, "ava")  # ava: avsf.data.detection
    with pytest.raises(ManifestError, match="--format ucf101 needs --video-root"):
        read_format("ucf101", "x")
