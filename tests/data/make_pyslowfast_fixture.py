"""Write tests/data/pyslowfast_slowfast.json from a PySlowFast checkout (maintainers only; CI
reads the JSON and never needs PySlowFast).

    python tests/data/make_pyslowfast_fixture.py /path/to/SlowFast   # a facebookresearch/SlowFast checkout

What it records, so that tests/test_convert_weights.py can prove the "pyslowfast" key map by
equal outputs without PySlowFast installed:
- "tiny": a small SlowFast built by PySlowFast's own `SlowFast(cfg)` (config below), the names
  and shapes of its state dict, and its eval output (softmax scores) on seeded inputs after its
  tensors were filled by tests/_convert_helpers.seeded_state (the test rebuilds the same
  tensors from names and shapes, converts them, and compares avsf's softmax scores);
- "r50_8x8" and "r50_nln_8x8": names and shapes of the model-zoo configurations
  SLOWFAST_8x8_R50 and SLOWFAST_NLN_8x8_R50 (the test checks every tensor lands in avsf's R50
  SlowFast with its shape).

PySlowFast imports packages its model code never calls (simplejson, psutil, cv2, detectron2,
newer pytorchvideo losses); this script puts empty stand-ins for them on the path, and builds
the model on the CPU (NUM_GPUS 0). The checkout itself is not modified.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _convert_helpers import seeded_clip, seeded_state  # noqa: E402

R50 = "configs/Kinetics/SLOWFAST_8x8_R50.yaml"
TINY = {  # PySlowFast config keys set on top of R50; the avsf side is TINY_AVSF
    "MODEL.ARCH": "slowfast", "MODEL.NUM_CLASSES": 7, "MODEL.DROPOUT_RATE": 0.0,
    "RESNET.DEPTH": 18, "RESNET.WIDTH_PER_GROUP": 8, "RESNET.NUM_BLOCK_TEMP_KERNEL": [[2, 2]] * 4, "SLOWFAST.BETA_INV": 2, "SLOWFAST.ALPHA": 2,
    "SLOWFAST.FUSION_CONV_CHANNEL_RATIO": 2, "SLOWFAST.FUSION_KERNEL_SZ": 5,
    "DATA.NUM_FRAMES": 4, "DATA.TRAIN_CROP_SIZE": 64, "DATA.TEST_CROP_SIZE": 64, "NUM_GPUS": 0,
}
TINY_AVSF = {  # avsf overrides of the tiny scale that build the same network
    "model.pathways": "slowfast", "model.stage_blocks": [2, 2, 2, 2], "model.width": 8, "model.beta_f": 0.5,
    "model.alpha_f": 2, "model.num_frames": 2, "model.fs_fusion_ratio": 2, "model.fs_fusion_kernel": 5,
    "model.fs_fusion_stages": ["pool1", "res2", "res3", "res4"], "model.fusion_stages": [], "model.avs_layers": [],
    "model.num_classes": 7, "model.dropout": 0.0, "data.crop_size": 64,
}
BATCH = 2


def _stand_ins() -> None:
    """Modules PySlowFast imports at module level for features a SlowFast forward never uses."""
    import json as _json

    fake = {"simplejson": _json, "psutil": types.ModuleType("psutil"), "cv2": types.ModuleType("cv2")}
    d2 = types.ModuleType("detectron2")
    d2.layers = types.ModuleType("detectron2.layers")
    d2.layers.ROIAlign = None
    fake.update({"detectron2": d2, "detectron2.layers": d2.layers})
    for name, mod in fake.items():
        sys.modules.setdefault(name, mod)


def _import_slowfast(repo: Path):
    work = Path(tempfile.mkdtemp())
    subprocess.run(["git", "-C", str(repo), "archive", "HEAD", "slowfast", "-o", str(work / "sf.tar")], check=True)
    subprocess.run(["tar", "xf", str(work / "sf.tar"), "-C", str(work)], check=True)
    # Its distributed helpers and losses import newer pytorchvideo names than the 0.1.5 release.
    dist = work / "slowfast/utils/distributed.py"
    text = dist.read_text()
    start = text.index("from pytorchvideo.layers.distributed import")
    end = text.index(")", start) + 1
    dist.write_text(text[:start] + "cat_all_gather = get_local_process_group = get_local_rank = get_local_size = "
                    "get_world_size = _init_distributed_training = None" + text[end:])
    losses = work / "slowfast/models/losses.py"
    losses.write_text(losses.read_text().replace(
        "from pytorchvideo.losses.soft_target_cross_entropy import SoftTargetCrossEntropyLoss",
        "SoftTargetCrossEntropyLoss = lambda **kw: None"))
    sys.path.insert(0, str(work))
    _stand_ins()
    import slowfast.models.video_model_builder as builder
    from slowfast.config.defaults import get_cfg

    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    return builder, get_cfg, commit


def _cfg(get_cfg, repo: Path, yaml: str, values: dict | None = None):
    """A model-zoo config file of the checkout, then `values` on top."""
    cfg = get_cfg()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{yaml}"], capture_output=True,
                               text=True, check=True).stdout)
        f.flush()
        cfg.merge_from_file(f.name)
    for key, value in (values or {}).items():
        node = cfg
        *path, leaf = key.split(".")
        for part in path:
            node = getattr(node, part)
        setattr(node, leaf, value)
    cfg.NUM_GPUS = 0
    return cfg


def _shapes(model) -> list[tuple[str, list[int]]]:
    return [(k, list(v.shape)) for k, v in model.state_dict().items()]


def main(repo: Path) -> None:
    builder, get_cfg, commit = _import_slowfast(repo)
    tiny = builder.SlowFast(_cfg(get_cfg, repo, R50, TINY)).eval()
    shapes = _shapes(tiny)
    tiny.load_state_dict(seeded_state(shapes))
    crop, frames = TINY["DATA.TRAIN_CROP_SIZE"], TINY["DATA.NUM_FRAMES"]
    slow = seeded_clip([BATCH, 3, frames // TINY["SLOWFAST.ALPHA"], crop, crop], 1)
    fast = seeded_clip([BATCH, 3, frames, crop, crop], 2)
    with torch.no_grad():
        scores = tiny([slow, fast])
    out = {
        "source": f"facebookresearch/SlowFast {commit}: slowfast.models.video_model_builder.SlowFast(cfg), eval mode",
        "tiny": {"pyslowfast_cfg": TINY, "avsf_overrides": TINY_AVSF, "batch": BATCH, "input_seeds": {"slow": 1, "fast": 2},
                 "shapes": shapes, "softmax_scores": [[round(float(v), 7) for v in row] for row in scores]},
    }
    for name, yaml in (("r50_8x8", R50), ("r50_nln_8x8", "configs/Kinetics/SLOWFAST_NLN_8x8_R50.yaml")):
        out[name] = {"config": yaml, "shapes": _shapes(builder.SlowFast(_cfg(get_cfg, repo, yaml)))}
    (HERE / "pyslowfast_slowfast.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
