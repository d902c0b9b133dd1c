"""The `kpose` commands behind the command line (kpose.cli parses the arguments): each takes the
parsed arguments and returns the exit status. Each imports what it needs when it runs, so
`kpose --help` starts without TensorFlow."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

# kpose predict prints every keypoint of this many images at most; more get a progress bar.
PRINT_LIMIT = 5


class UsageError(Exception):
    """A command line that asks for something the command cannot do (exit 2, like argparse's)."""


def cmd_train(a: argparse.Namespace) -> int:
    from kpose.recipe import parse_override
    from kpose.training import train

    if a.resume:
        if a.recipe or a.name:
            raise UsageError("--resume continues a run with its own recipe.yaml and folder; give no recipe "
                             "or --name")
        run = train(resume=a.resume, progress=not a.quiet, strategy=a.strategy)
    else:
        if not a.recipe:
            raise UsageError("give a recipe (kpose recipes lists them) or --resume RUN")
        overrides = dict(parse_override(s) for s in a.set)
        run = train(a.recipe, data=a.data, epochs=a.epochs, batch_size=a.batch_size,
                    overrides=overrides, runs_dir=a.runs_dir, progress=not a.quiet,
                    qat=True if a.qat else None, init=a.init, strategy=a.strategy, name=a.name)
    print(json.dumps({k: v for k, v in run.metrics.items() if isinstance(v, float)}, indent=2))
    print(f"run folder: {run.dir}" if run.dir else "run folder: written by the chief worker")
    return 0


def parse_box(text: str) -> list[float]:
    parts = [float(v) for v in text.split(",")]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"--box {text!r}: expected x,y,w,h")
    return parts


def parse_scales(text: str) -> list[float]:
    try:
        scales = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scales {text!r}: expected factors like 1,1.5") from None
    if not scales or min(scales) <= 0:
        raise argparse.ArgumentTypeError(f"--scales {text!r}: factors must be positive")
    return scales


def cmd_predict(a: argparse.Namespace) -> int:
    from kpose.batch_predict import predict_sources, summary_line
    from kpose.data.video import is_video

    if (a.track or a.smooth) and not all(is_video(p) for p in a.sources):
        raise UsageError("--track and --smooth are for videos (.mp4, .avi, .mov, .mkv, .webm)")
    if a.box and any(is_video(p) for p in a.sources):
        raise UsageError("--box is for images; on a video a top-down model sees whole frames")
    jsonl = a.json if isinstance(a.json, str) else None
    if jsonl is not None and not jsonl.endswith((".jsonl", ".json")):
        raise UsageError(f"--json {jsonl}: give a .jsonl file name (or .json with --coco); without a "
                         "name --json writes <image>_pose.json beside each drawing")
    if (a.coco or a.resume) and jsonl is None:
        raise UsageError(f"{'--coco' if a.coco else '--resume'} goes with --json FILE")
    if a.json is True and a.save is None:
        raise UsageError("--json without a file writes <image>_pose.json into the --save folder: give "
                         "--save DIR, or --json FILE.jsonl")
    s = predict_sources(a.model, a.sources, batch_size=a.batch_size, jsonl=jsonl, coco=a.coco, save_dir=a.save,
                        json_files=a.json is True, resume=a.resume, boxes=a.box, flip_test=a.flip_test,
                        scales=a.scales, threshold=a.threshold, track=a.track, smooth=a.smooth,
                        max_frames=a.max_frames, workers=a.workers, print_limit=PRINT_LIMIT, detector=a.detector)
    print(summary_line(s, jsonl, a.save))
    # Unreadable images do not fail a run of many; a run where nothing could be read does.
    return 1 if s["failed"] and not (s["images"] or s["videos"]) else 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from kpose.evaluation import evaluate

    metrics = evaluate(a.model, data=a.data, split=a.split, detections=a.detections,
                       results_file=a.results, batch_size=a.batch_size, flip_test=a.flip_test,
                       scales=a.scales)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from kpose.deploy.exporter import FORMATS, export, export_all, parity_markdown

    if not (a.all or a.check):
        print(export(a.model, a.format, a.precision, a.out, calibration=a.calibration,
                     quantization=a.tfjs_quantization, heatmaps=a.heatmaps, float_layers=a.float_layers))
        return 0
    report = export_all(a.model, a.out, check=a.check, images=a.images, calibration=a.calibration,
                        formats=FORMATS if a.all else (a.format,),
                        precisions=None if a.all else (a.precision,),
                        tfjs_quantization=a.tfjs_quantization, heatmaps=a.heatmaps,
                        num_images=a.num_images, float_layers=a.float_layers)
    if not a.check:
        print("\n".join(e["path"] for e in report["formats"]))
        return 0
    print(parity_markdown(report))
    print(f"report: {Path(report['output']) / 'parity.md'}")
    return 0 if report["passed"] else 1


def cmd_quantize(a: argparse.Namespace) -> int:
    from kpose.model_io import load_model, saved_config
    from kpose.training.distill import check_float, distill_qat

    if not Path(a.model).is_file():  # a model folder: refuse a QAT one before building its QAT network
        check_float(saved_config(a.model))
    model = load_model(a.model)
    out = Path(a.out) if a.out else Path(a.model).parent / (Path(a.model).stem + "_qat")
    given = {k: v for k, v in (("steps", a.steps), ("batch_size", a.batch_size), ("lr", a.lr),
                               ("feature_weight", a.feature_weight)) if v is not None}
    qat = distill_qat(model, a.data, seed=a.seed, **given)
    qat.save(out)
    print(f"QAT model: {out}\nexport it: kpose export {out} --format tflite --precision qat")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    if a.check_image and not a.check:
        raise UsageError("--check-image goes with --check")
    from kpose.deploy.chromium import find_chromium
    from kpose.deploy.demo import build_demo, demo_model, serve
    from kpose.deploy.demo_check import check_demo

    if a.check:
        find_chromium()  # no browser: say so before the export
    model = demo_model(a.model)
    dist = build_demo(model, a.out, quantization=a.tfjs_quantization)
    if a.check:
        report = check_demo(dist, model, image=a.check_image)
        print(report.summary())
        return 0 if report.passed else 1
    if a.build_only:
        print(dist)
        return 0
    return serve(dist, a.port)


def cmd_recipes(a: argparse.Namespace) -> int:
    from kpose.recipe import load_recipe, recipes

    for name in recipes():
        r = load_recipe(name)
        m = r["model"]
        print(f"{name:24s} {m['family']}/{m['variant']} input {m['input_size']} "
              f"skeleton {r['skeleton']} data {r['data']['train']}")
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from kpose.models import FAMILIES, build_network
    from kpose.models.flops import count_flops, count_parameters
    from kpose.recipe import load_recipe, recipes
    from kpose.skeletons import get_skeleton

    skeleton = get_skeleton(a.skeleton)
    by_arch: dict[tuple[str, str], list[str]] = {}
    for name in recipes():
        m = load_recipe(name)["model"]
        by_arch.setdefault((m["family"], m["variant"]), []).append(name)
    print(f"{'family':22s} {'variant':13s} {'task':9s} {'input':9s} {'params':>9s} {'GMACs':>8s} {'stride':>6s}  "
          f"{'recipe':28s} description")
    for family in FAMILIES.values():
        if a.family and family.name != a.family:
            continue
        for variant in family.variants:
            size = tuple(a.size) if a.size else family.variant_input_sizes.get(variant, family.reference_input_size)
            if family.cost is not None:
                # From the family's config without a build (EfficientPose IV takes tens of
                # seconds to build); tests check it equals the built network's counts.
                params, macs = family.cost(variant, skeleton.num_keypoints, len(skeleton.limbs), size, False)
            else:
                net = build_network({"family": family.name, "variant": variant, "input_size": list(size),
                                     "skeleton": skeleton.to_dict()})
                params, macs = count_parameters(net), count_flops(net, size)
            # Input pixels per cell of the deployed output (the heatmaps decoding reads).
            stride = min(o.stride for o in family.outputs(variant, skeleton.num_keypoints, len(skeleton.limbs))
                         if o.inference)
            print(f"{family.name:22s} {variant:13s} {family.task:9s} {size[0]}x{size[1]:<5d} "
                  f"{params / 1e6:8.2f}M {macs / 1e9:8.2f} {stride:6d}  "
                  f"{','.join(by_arch.get((family.name, variant), ['-'])):28s} {family.description}", flush=True)
    return 0


def cmd_data_pack(a: argparse.Namespace) -> int:
    from kpose.data.pack import pack
    from kpose.data.tfrecords import INDEX

    kw = {} if a.shard_size is None else {"shard_size": a.shard_size}
    index = pack(a.spec, a.out, split=a.split, skeleton=a.skeleton, progress=not a.quiet, **kw)
    c = index["counts"]
    print(f"{c['images']} images, {c['people']} people, {c['ignore_regions']} ignore regions in "
          f"{len(index['shards'])} shards; index: {Path(a.out) / INDEX}")
    print(f"train from them with --data tfrecord:{a.out}")
    return 0
