"""Nothing silently wrong in data: manifests (encoding, BOM/CRLF, empty, times, paths outside the root,
string labels), prepare (dead workers, duplicates and conflicting labels, a full disk), label-free mode."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avsf.config import ConfigError, build_config
from avsf.data import build_loader, dataset_info, synth
from avsf.data import prepare as P
from avsf.data.errors import ManifestError, PrepareError
from avsf.data.manifest import read_manifest, read_source_manifest, write_manifest
from avsf.data.prepare import dedupe, label_table, prepare


def _clip(path: Path, n: int = 8, size=(40, 48), noise: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (n, *size, 3), dtype=np.uint8) if noise else np.full((n, *size, 3), 90, np.uint8)
    synth.encode_clip(path, frames, rng.uniform(-0.5, 0.5, int(n / 16 * 16000)).astype(np.float32), 16)


# ----------------------------------------------------------------------------- reading manifests
def test_bom_and_crlf_manifests_are_read(tmp_path):
    (tmp_path / "l.csv").write_bytes("\ufeffpath,label,start,end\r\na.mp4,dog,0.5,1.5\r\nb.mp4,cat,,\r\n".encode())
    rows = read_source_manifest(tmp_path / "l.csv")
    assert [(r.path.name, r.label, r.start, r.end, r.line) for r in rows] == [("a.mp4", "dog", 0.5, 1.5, 2),
                                                                               ("b.mp4", "cat", None, None, 3)]
    (tmp_path / "l.txt").write_bytes("\ufeffa.mp4 dog\r\nb.mp4 cat\r\n".encode())
    assert [(r.path.name, r.label) for r in read_source_manifest(tmp_path / "l.txt")] == [("a.mp4", "dog"),
                                                                                          ("b.mp4", "cat")]
    (tmp_path / "manifest.csv").write_bytes("\ufeffpath,label,duration,fps\r\na.webm,3,2,16\r\n".encode())
    (r,) = read_manifest(tmp_path / "manifest.csv")
    assert r.label == 3 and r.fps == 16


@pytest.mark.parametrize("content, match", [
    (b"a.mp4 caf\xe9\n", r"l\.txt, line 1: byte 0xe9 is not UTF-8; save the file as UTF-8"),
    (b"a.mp4 dog\nb.mp4 caf\xe9\n", r"l\.txt, line 2: byte 0xe9"),
    (b"", r"l\.txt: the file is empty"),
    (b"\n  \n", r"l\.txt: the file is empty"),
    (b"path,label\n", r"l\.txt: no rows after the header"),
    (b"# only a comment\n", r"l\.txt: no rows after the header"),
    (b"path,label,start\na.mp4,dog,abc\n", r"l\.txt, row 2: start 'abc' is not a time"),
    (b"path,label,start\na.mp4,dog,-3\n", r"l\.txt, row 2: start '-3' is not a time"),
    (b"path,label,start,end\na.mp4,dog,1:00:03,nan\n", r"row 2: end 'nan' is not a time"),
    (b"path,label,start,end\na.mp4,dog,5,2\n", r"l\.txt, row 2: end 2\.0 is not after start 5\.0"),
])
def test_bad_manifests_fail_clearly_before_work(tmp_path, content, match):
    (tmp_path / "l.txt").write_bytes(content)
    with pytest.raises(ManifestError, match=match):
        read_source_manifest(tmp_path / "l.txt")


def test_times_accept_clock_notation(tmp_path):
    (tmp_path / "l.csv").write_text("path,label,start,end\na.mp4,x,00:01:02.5,1:03\n")
    (r,) = read_source_manifest(tmp_path / "l.csv")
    assert (r.start, r.end) == (62.5, 63.0)


def test_paths_outside_the_root_need_allow_outside_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "l.txt").write_text(f"in/a.mp4 x\n../escape.mp4 y\n{tmp_path / 'abs.mp4'} z\n")
    with pytest.raises(ManifestError, match=r"l\.txt: 2 path\(s\) point outside .*row 2: .*escape\.mp4.*"
                                            r"--allow-outside-root"):
        read_source_manifest(root / "l.txt")
    rows = read_source_manifest(root / "l.txt", allow_outside_root=True)
    assert [r.path.name for r in rows] == ["a.mp4", "escape.mp4", "abs.mp4"]
    # a symlink the user placed inside the root is followed (lexical check)
    os.symlink(tmp_path, root / "link")
    (root / "m.txt").write_text("link/abs.mp4 z\n")
    assert len(read_source_manifest(root / "m.txt")) == 1


def test_cli_prepare_refuses_outside_root_and_names_the_flag(tmp_path, capsys):
    from avsf.cli import main

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "l.txt").write_text("../x.mp4 a\n")
    assert main(["data", "prepare", str(tmp_path / "d" / "l.txt"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "--allow-outside-root" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_labels_are_strings():
    from avsf.data.manifest import SourceRow

    def rows(*labels):
        return [SourceRow(Path(f"{i}.mp4"), lab) for i, lab in enumerate(labels)]

    assert label_table(rows("01", "1", "-1")) == ["-1", "01", "1"]  # three classes
    assert label_table(rows("2", "0")) == ["0", "1", "2"]  # plain integers keep their meaning as indices
    assert label_table(rows("0", "007")) == ["0", "007"]
    assert label_table(rows("cat", "10")) == ["10", "cat"]


# ----------------------------------------------------------------------------- prepare
def test_duplicates_and_conflicting_labels_are_dropped_by_rule(tmp_path):
    for n in ("a", "b", "c"):
        _clip(tmp_path / f"{n}.webm")
    lst = tmp_path / "l.txt"
    lst.write_text("a.webm dog\nb.webm cat\na.webm dog\nc.webm cat\nb.webm dog\n./a.webm dog\n")
    keep, dropped = dedupe(read_source_manifest(lst))
    assert keep == [0, 3]
    reasons = {d["row"]: d["reason"] for d in dropped}
    assert set(reasons) == {2, 3, 5, 6}
    assert reasons[3].startswith("duplicate of row 1") and reasons[6].startswith("duplicate of row 1")
    assert "different labels (row 2: cat, row 5: dog); none is kept" in reasons[2] and reasons[2] == reasons[5]
    rep = prepare(read_source_manifest(lst), tmp_path / "out", workers=1, progress=False)
    assert rep["ok"] == 2 and rep["skipped_already_prepared"] == 0 and len(rep["dropped"]) == 4
    assert json.loads((tmp_path / "out" / "report.json").read_text())["dropped"] == rep["dropped"]
    import csv

    with open(tmp_path / "out" / "manifest.csv") as f:
        assert [Path(r["source"]).name for r in csv.DictReader(f)] == ["a.webm", "c.webm"]
    again = prepare(read_source_manifest(lst), tmp_path / "out", workers=1, progress=False)
    assert again["skipped_already_prepared"] == 2  # duplicates are not counted as "already prepared"


def _crash_on_marked(monkeypatch, how):
    real = P.prepare_one

    def maybe_die(src, out_dir):
        if "crash" in Path(src.path).name:
            how()
        return real(src, out_dir)

    monkeypatch.setattr(P, "prepare_one", maybe_die)
    # Fork here, so the workers inherit the patch; the death handling under test does not depend on
    # the start method (prepare itself uses avsf.data.pools, which never forks).
    monkeypatch.setattr(P, "worker_context", lambda: multiprocessing.get_context("fork"))


@pytest.mark.parametrize("how, said", [(lambda: os._exit(3), "exited with status 3"),
                                       (lambda: os.kill(os.getpid(), 9), "killed by SIGKILL")])
def test_a_dead_worker_fails_its_file_and_prepare_finishes(tmp_path, monkeypatch, how, said):
    for n in ("a", "crash", "b", "c", "crash2", "d"):
        _clip(tmp_path / f"{n}.webm")
    lst = tmp_path / "l.txt"
    lst.write_text("".join(f"{n}.webm {n[0]}\n" for n in ("a", "crash", "b", "c", "crash2", "d")))
    _crash_on_marked(monkeypatch, how)
    rep = prepare(read_source_manifest(lst), tmp_path / "out", workers=2, progress=False)
    assert rep["ok"] == 4
    failed = {Path(f["path"]).name: f["reason"] for f in rep["failed"]}
    assert set(failed) == {"crash.webm", "crash2.webm"}
    assert all("worker process preparing it died" in r and said in r for r in failed.values())
    assert {f["row"] for f in rep["failed"]} == {2, 5}


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_full_disk_stops_prepare_with_advice(tmp_path):
    out = tmp_path / "small"
    if not _tmpfs(out, "200k"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        lst = tmp_path / "l.txt"
        names = [f"v{i}" for i in range(6)]
        for n in names:
            _clip(tmp_path / f"{n}.mp4", n=16, size=(64, 80), noise=True)  # ~95 kB prepared each
        lst.write_text("".join(f"{n}.mp4 x\n" for n in names))
        with pytest.raises(PrepareError, match=r"small: no space left on the device .*free space or choose another "
                                               r"--out, then run the same command again"):
            prepare(read_source_manifest(lst), out, workers=2, progress=False)
        assert not list(out.rglob("*.tmp*"))  # no half-written files left behind
    finally:
        subprocess.run(["umount", str(out)], capture_output=True)


# ----------------------------------------------------------------------------- label-free mode
def test_label_free_mode_never_reads_labels(tmp_path):
    _clip(tmp_path / "a.webm", n=20)
    synth.write_flac(tmp_path / "a.flac", np.zeros(20000, np.float32))
    row = {"path": "a.webm", "audio": "a.flac", "duration": "1.25", "fps": 16, "height": 40, "width": 48}
    write_manifest(tmp_path / "manifest.csv", [{**row, "label": lab} for lab in ("n/a", "", "-x", "3;y")])
    over = {"data.dataset": str(tmp_path), "train.batch_size": 2, "data.loader": "reference"}
    with pytest.raises(ManifestError, match=r"manifest\.csv, row 2"):
        dataset_info(build_config(scale="tiny", overrides=over))
    cfg = build_config(scale="tiny", overrides={**over, "data.label_free": True})
    info = dataset_info(cfg)
    assert info.label_free and info.split_sizes["train"] == 4
    got = list(build_loader(cfg, "train", "train"))
    assert len(got) == 2 and all("label" not in b and "verb" not in b for b in got)
    assert sorted(sum((b["index"].tolist() for b in got), [])) == [0, 1, 2, 3]
