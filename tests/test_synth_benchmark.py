"""The built-in benchmark contains the mechanisms its studies probe (docs/data.md): checked on
rendered clips, not on the generator's parameters."""

import numpy as np
import pytest

from avsf.data import synth

SCALE = synth.SYNTH_SCALES["small"]


def _label(name: str) -> int:
    return synth.class_names().index(name)


def _flash_times(frames: np.ndarray) -> np.ndarray:
    """Frame times where the picture's brightness jumps up (a flash starts)."""
    level = frames.astype(np.float32).mean(axis=(1, 2, 3))
    rise = np.diff(level)
    return (np.flatnonzero(rise > 0.5 * rise.max()) + 1) / synth.FPS


def _onset_times(audio: np.ndarray) -> np.ndarray:
    """Times where the sound's 10 ms energy jumps up (a pluck starts)."""
    hop = synth.SAMPLE_RATE // 100
    env = np.sqrt(np.mean(audio[: len(audio) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    rise = np.diff(env)
    hits = np.flatnonzero(rise > 0.3 * rise.max()) + 1
    keep = hits[np.insert(np.diff(hits) > 5, 0, True)]  # one onset per pluck
    return keep / 100.0


def _gaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For every time in a, the distance to the nearest time in b."""
    return np.abs(a[:, None] - b[None, :]).min(axis=1)


@pytest.mark.parametrize("index", range(4))
def test_in_sync_plucks_start_on_the_flashes_and_out_of_sync_ones_half_a_beat_away(index):
    frames, audio = synth.render_clip(0, _label("in-sync"), "test", index, SCALE)
    assert np.median(_gaps(_onset_times(audio), _flash_times(frames))) < 0.1
    frames, audio = synth.render_clip(0, _label("out-of-sync"), "test", index, SCALE)
    assert np.median(_gaps(_onset_times(audio), _flash_times(frames))) > 0.3


def _tone(audio: np.ndarray) -> int:
    """Which competition tone the clip plays (the strongest of the four fundamentals)."""
    spec = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / synth.SAMPLE_RATE)
    power = [spec[(freqs > f * 0.97) & (freqs < f * 1.03)].max() for f in synth.COMPETITION_TONES]
    return int(np.argmax(power))


def test_competition_tone_names_the_class_only_in_part_of_the_clips():
    groups = synth.class_groups()["competition"]
    hits = [_tone(synth.render_clip(0, label, "train", i, SCALE)[1]) == k
            for k, label in enumerate(groups) for i in range(40)]
    # 160 clips: the share is COMPETITION_RELIABILITY up to sampling noise (3 standard errors)
    se = np.sqrt(synth.COMPETITION_RELIABILITY * (1 - synth.COMPETITION_RELIABILITY) / len(hits))
    assert abs(np.mean(hits) - synth.COMPETITION_RELIABILITY) < 3 * se


def test_competition_picture_is_a_moving_dot_on_a_static_background():
    frames, _ = synth.render_clip(0, synth.class_groups()["competition"][0], "train", 0, SCALE)
    moving = np.abs(np.diff(frames.astype(np.int16), axis=0)).max(axis=(0, 3)) > 10
    # only the dot's path changes: a thin band of the frame (horizontal motion), not the clutter
    assert 0 < moving.mean() < 0.35


def test_every_group_is_present_and_names_are_unique():
    assert set(synth.class_groups()) == {"visual", "audio", "sync", "competition"}
    assert len(set(synth.class_names())) == len(synth.CLASSES)


def test_the_config_names_exactly_the_generators_scales():
    from avsf.config import SYNTH_SCALE_NAMES

    assert tuple(synth.SYNTH_SCALES) == SYNTH_SCALE_NAMES


# ----------------------------------------------------------------------------- a larger test split
def test_a_larger_test_split_leaves_training_and_validation_clips_and_the_first_test_clips_unchanged(tmp_path):
    """data.synth_test_per_class: more test clips cost evaluation only, because the trained models
    see exactly the same files (docs/studies.md, "Power at this budget")."""
    few = {"train": 1, "val": 1, "test": 1}
    synth.generate(tmp_path / "a", "tiny", 0, workers=1, per_class=few)
    synth.generate(tmp_path / "b", "tiny", 0, workers=1, per_class={**few, "test": 2})
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*") if p.parent.name in synth.SPLITS)
    b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*") if p.parent.name in synth.SPLITS)
    assert set(a) < set(b) and len(b) == len(a) + 2 * len(synth.CLASSES)  # a second video + audio per class
    for rel in a:  # every file of the smaller set, byte for byte
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    for split in ("train.csv", "val.csv"):
        assert (tmp_path / "a" / split).read_text() == (tmp_path / "b" / split).read_text()


def test_the_test_split_size_keys_the_cache_folder_and_is_refused_for_other_sets(tmp_path):
    from avsf.config import ConfigError, build_config
    from avsf.data import dataset_info, synth_root

    def cfg(**over):
        return build_config(scale="tiny", overrides={"data.cache_dir": str(tmp_path), **over})

    assert synth_root(cfg()).name == f"synth-tiny-seed0-v{synth.VERSION}"
    assert synth_root(cfg(**{"data.synth_test_per_class": 7})).name == f"synth-tiny-test7-seed0-v{synth.VERSION}"
    sizes = dataset_info(cfg(**{"data.synth_test_per_class": 2})).split_sizes  # generated on first use
    assert sizes == {"train": 3 * len(synth.CLASSES), "val": len(synth.CLASSES), "test": 2 * len(synth.CLASSES)}
    with pytest.raises(ConfigError, match="data.synth_test_per_class.*'synth-epic'.*use 0"):
        cfg(**{"data.dataset": "synth-epic", "data.synth_test_per_class": 7})
    with pytest.raises(ConfigError, match="data.synth_test_per_class"):
        cfg(**{"data.synth_test_per_class": -1})
