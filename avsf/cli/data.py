"""`avsf data synth | prepare | preview | bench`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from avsf.cli.common import add_progress_flag, add_scale_option, add_set_option, non_negative_int, non_negative_ms, positive_int

# avsf.data.formats.FORMATS and "ava" (avsf.data.detection), spelled out so that building the parser does
# not import torch (a test keeps them equal)
PREPARE_FORMATS = ("list", "kinetics", "epic", "epic55", "charades", "ucf101", "hmdb51", "ava")


def register(sub) -> None:
    p = sub.add_parser("data", description="Audiovisual data: generate the built-in synthetic benchmark, prepare "
                       "your own videos, look at what the model sees, and measure loader throughput.")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True
    _register_synth(dsub)
    _register_prepare(dsub)
    _register_preview(dsub)
    _register_bench(dsub)


def _register_synth(dsub) -> None:
    s = dsub.add_parser(
        "synth", help="write the built-in synthetic AV benchmark (deterministic per seed)",
        description="Generate the built-in synthetic audiovisual benchmark (13 classes whose label is carried by the "
        "picture, the sound, their synchrony, or a faint picture cue competing with a partly reliable sound) as "
        "VP9/Opus WebM clips with FLAC sidecars and train/val/test manifests. The same "
        "scale and seed always give the same files. Training on data.dataset = \"synth\" generates it on "
        "first use; this command writes it where you choose.")
    s.add_argument("--out", required=True, metavar="DIR", help="folder to write (manifests, videos, audio)")
    # the names of avsf.config.SYNTH_SCALE_NAMES, spelled out for the same reason as --dataset's
    s.add_argument("--scale", choices=("tiny", "small", "gpu"), default="small",
                   help="tiny: 3/1/1 train/val/test clips per class at 48x40 (tests); small: 24/12/40 at 48x40 "
                   "(the studies); gpu: small's counts at 160x128, which NVDEC accepts (default: small)")
    s.add_argument("--test-per-class", type=non_negative_int, default=0, metavar="N",
                   help="test clips per class of the benchmark (--dataset synth); 0 keeps the scale's count. The "
                   "training and validation clips do not change with it (data.synth_test_per_class)")
    s.add_argument("--seed", type=non_negative_int, default=0, help="generator seed (default 0)")
    # the names of avsf.data.BUILTIN_SETS, spelled out: importing avsf.data here would load torch for --help
    s.add_argument("--dataset", choices=("synth", "synth-epic", "synth-charades", "synth-detection"), default="synth",
                   help="which built-in set: the benchmark (default), the synthetic EPIC-Kitchens (verb/noun) or "
                   "Charades (multi-label, long videos) counterparts (docs/tasks.md), or the detection split "
                   "(docs/detection.md)")
    s.add_argument("--workers", type=positive_int, default=2, help="encoding processes (default 2)")
    add_progress_flag(s)
    s.set_defaults(func=run_synth)


def _register_prepare(dsub) -> None:
    r = dsub.add_parser("prepare", help="turn a list of your videos into loader-ready files + manifest.csv",
                        description="MANIFEST: 'path label' per line, or CSV with header path,label (paths relative "
                        "to the manifest, inside its folder unless --allow-outside-root). With --format F, MANIFEST is "
                        "that dataset's annotation file (ucf101/hmdb51: its split-list folder) and --video-root says "
                        "where the videos are (docs/data.md). With --format ava, MANIFEST is one or more AVA annotation "
                        "CSVs, each SPLIT=FILE or FILE (split read from its name: train, val or test), the videos "
                        "<video_id>.<ext> under --video-root (docs/detection.md).")
    r.add_argument("manifest", metavar="MANIFEST", nargs="+", help="the list of source videos (see above)")
    r.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write; point data.dataset at it")
    r.add_argument("--format", choices=PREPARE_FORMATS, default="list", help="what MANIFEST is (default: list)")
    r.add_argument("--video-root", metavar="DIR", help="videos folder for every --format but list")
    r.add_argument("--labels", metavar="PBTXT", help="ava: the action list (ava_action_list_v2.2.pbtxt); rows of "
                   "other actions are left out (default: every action id that occurs is a class)")
    r.add_argument("--time-offset", type=float, default=0.0, metavar="S", help="ava: seconds to subtract from the "
                   "CSV timestamps to get seconds of the video file (0 for AVA's full movies, 900 for 15-minute cuts)")
    r.add_argument("--chunk-seconds", type=float, default=0.0, metavar="S", help="ava: cut each video into pieces "
                   "of S seconds (plus 1.5 s each side) so clips decode from short files (default 0: whole videos)")
    r.add_argument("--kinetics-sounds", action="store_true", help="keep only the paper's 32 Kinetics-Sounds classes")
    r.add_argument("--split", default=None, help="kinetics: keep only this split")
    r.add_argument("--whole-videos", action="store_true",
                   help="charades: one row per whole video instead of one clip per annotated span")
    r.add_argument("--allow-outside-root", action="store_true",
                   help="read manifest paths that lead outside the manifest's (or --video-root's) folder")
    r.add_argument("--workers", type=positive_int, default=2, help="transcoding processes (default 2)")
    add_progress_flag(r)
    r.set_defaults(func=run_prepare)


def _register_preview(dsub) -> None:
    v = dsub.add_parser(
        "preview", help="PNGs of what the model sees (Slow/Fast frames + log-mel)",
        description="Draw clips through a loader exactly as training (or testing) does and write one PNG per "
        "view: the Slow and Fast frames (de-normalised) and the log-mel spectrogram, with the label.")
    v.add_argument("--manifest", default=None, metavar="M",
                   help="a loader-ready CSV (default: the synthetic benchmark's train.csv, generated if needed)")
    v.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs")
    v.add_argument("-n", "--num", type=positive_int, default=4, help="clips to draw (default 4)")
    _loader_options(v, ("dali", "reference"), "reference",
                    "decoder pipeline to draw through (default: reference, PyAV)")
    v.set_defaults(func=run_preview)


def _register_bench(dsub) -> None:
    b = dsub.add_parser(
        "bench", help="loader throughput (clips/s, decoded frames/s); DALI vs reference at equal threads",
        description="Time the data pipeline alone (no model): clips and decoded frames per second over a number of "
        "batches after one warm-up batch, for DALI, the reference loader, or both at the same thread count.")
    b.add_argument("--threads", type=positive_int, default=2, help="decoder threads / worker processes (default 2)")
    b.add_argument("--batches", type=positive_int, default=20, help="batches to time (after one warm-up batch)")
    b.add_argument("--step-ms", type=non_negative_ms, default=0.0,
                   help="sleep this long after each batch, as a GPU training step would take (shows overlap)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    _loader_options(b, ("dali", "reference", "both"), "both", "which loader to time (default: both, and their ratio)")
    b.set_defaults(func=run_bench)


def _loader_options(p, loaders: tuple[str, ...], default: str, loader_help: str) -> None:
    """--loader, --scale, --mode, --set: what preview and bench draw clips through."""
    p.add_argument("--loader", choices=loaders, default=default, help=loader_help)
    add_scale_option(p, default="small")
    p.add_argument("--mode", choices=("train", "test"), default="train",
                   help="train: random crop, flip and start; test: the multi-view test crops (default: train)")
    add_set_option(p, dest="sets", applies_to="the loader's config")


def run_synth(args) -> int:
    from avsf.data import BUILTIN_SETS, synth_split_options

    if args.test_per_class and args.dataset != "synth":
        print(f"avsf data synth: --test-per-class sizes the benchmark's test split (--dataset synth), not "
              f"{args.dataset}'s: leave it out", file=sys.stderr)
        return 2
    info = BUILTIN_SETS[args.dataset].generate(args.out, args.scale, args.seed, workers=args.workers,
                                                 progress=not args.no_progress,
                                                 **synth_split_options(args.test_per_class))
    print(f"wrote {sum(info['split_sizes'].values())} clips ({info['split_sizes']}) to {args.out} "
          f"in {info['generation_s']:.1f} s")
    return 0


def run_prepare(args) -> int:
    from avsf.data.errors import ManifestError, PrepareError
    from avsf.data.formats import read_format
    from avsf.data.prepare import prepare

    if args.format == "ava":
        from avsf.data.detection import run_prepare_ava

        return run_prepare_ava(args)
    if len(args.manifest) > 1:
        print(f"avsf data prepare: {len(args.manifest)} MANIFEST files given; only --format ava reads several",
              file=sys.stderr)
        return 2
    args.manifest = args.manifest[0]
    try:
        source = read_format(args.format, args.manifest, args.video_root, allow_outside_root=args.allow_outside_root,
                             split=args.split, kinetics_sounds=args.kinetics_sounds, whole_videos=args.whole_videos)
        report = prepare(source, args.out, workers=args.workers, progress=not args.no_progress)
    except (ManifestError, PrepareError) as e:
        print(f"avsf data prepare: {e}", file=sys.stderr)
        return 2
    print(f"{report['ok']} of {report['total']} usable ({report['skipped_already_prepared']} already prepared); "
          f"{len(report['failed'])} failed, {len(report['dropped'])} dropped (duplicates / conflicting labels), "
          f"{len(report['no_audio'])} without audio -> {Path(args.out) / 'report.json'}")
    for f in (report["dropped"] + report["failed"])[:20]:
        print(f"  row {f['row']}: {f['path']}: {f['reason']}")
    return 0


def _cfg(scale, sets, **over):
    from avsf.config import build_config

    return build_config(scale=scale, overrides={**over, **dict(_kv(s) for s in sets)})


def _kv(text):
    from avsf.config import parse_override

    return parse_override(text)


def run_preview(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from avsf.data import AVLoader, dataset_info
    from avsf.data.manifest import read_manifest

    cfg = _cfg(args.scale, args.sets, **{"data.loader": args.loader, "train.batch_size": 1})
    if args.manifest:
        m = Path(args.manifest)
        cfg.data.dataset = str(m.parent)
        rows = read_manifest(m)
    else:
        info = dataset_info(cfg)
        m = info.root / "train.csv"
        rows = read_manifest(m)
    info = dataset_info(cfg)
    rows = rows[: args.num]
    loader = AVLoader(cfg, "preview", args.mode, info=info, rows=rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mean = torch.tensor(cfg.data.pixel_mean).view(3, 1, 1, 1)
    std = torch.tensor(cfg.data.pixel_std).view(3, 1, 1, 1)
    written = 0
    for batch in loader:
        for b in range(batch["fast"].shape[0]):
            idx, view = int(batch["index"][b]), int(batch["view"][b]) if "view" in batch else 0
            slow = (batch["slow"][b] * std + mean).clamp(0, 1)
            fast = (batch["fast"][b] * std + mean).clamp(0, 1)
            nf = fast.shape[1]
            fig = plt.figure(figsize=(max(8, nf * 1.2), 6))
            gs = fig.add_gridspec(3, nf)
            for t in range(slow.shape[1]):
                ax = fig.add_subplot(gs[0, t])
                ax.imshow(slow[:, t].permute(1, 2, 0).numpy())
                ax.set_title(f"slow {t}", fontsize=7)
                ax.axis("off")
            for t in range(nf):
                ax = fig.add_subplot(gs[1, t])
                ax.imshow(fast[:, t].permute(1, 2, 0).numpy())
                ax.set_title(f"fast {t}", fontsize=7)
                ax.axis("off")
            ax = fig.add_subplot(gs[2, :])
            ax.imshow(batch["audio"][b, 0].T.numpy(), origin="lower", aspect="auto", cmap="magma")
            ax.set_xlabel("log-mel frame (16 ms)")
            ax.set_ylabel("mel bin")
            label = batch["label"][b].tolist() if "label" in batch else (int(batch["verb"][b]), int(batch["noun"][b]))
            name = info.class_names[label] if isinstance(label, int) and label < len(info.class_names) else label
            fig.suptitle(f"{Path(rows[idx].path).name}  label={name}  view={view}  loader={loader.backend}", fontsize=9)
            path = out / f"clip{idx:03d}_view{view}.png"
            fig.savefig(path, dpi=80)
            plt.close(fig)
            written += 1
    print(f"wrote {written} previews to {out}")
    return 0


def run_bench(args) -> int:
    from avsf.data.bench import bench_loader

    loaders = ["dali", "reference"] if args.loader == "both" else [args.loader]
    results = {}
    for name in loaders:
        cfg = _cfg(args.scale, args.sets, **{"data.loader": name, "data.num_threads": args.threads})
        results[name] = bench_loader(cfg, args.mode, args.batches, step_ms=args.step_ms)
        if not args.json:
            r = results[name]
            print(f"{name:9s} ({r['device']}, {args.threads} threads): {r['clips_per_s']:7.1f} clips/s, "
                  f"{r['frames_per_s']:8.1f} decoded frames/s, waiting {r['wait_share']:.0%} "
                  f"({r['clips']} clips in {r['seconds']} s, {args.scale} scale, {args.mode} mode"
                  f"{f', {args.step_ms:g} ms step' if args.step_ms else ''})")
    if len(results) == 2 and results["reference"]["clips_per_s"]:
        ratio = results["dali"]["clips_per_s"] / results["reference"]["clips_per_s"]
        results["ratio_dali_over_reference"] = round(ratio, 2)
        if not args.json:
            print(f"DALI / reference: {ratio:.2f}x")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0
