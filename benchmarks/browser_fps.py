"""Frames per second in the browser: the demo page in headless Chromium, per exported model
and TF.js backend (webgl, wasm, cpu; webgpu where Chromium offers it), with everything a
frame costs on the page: TF.js upload of the frame, crop or fit warp, network, heatmap / PAF
decoding (the JS ports of kpose's decoders), tracking and One Euro smoothing (kpose's Tracker),
drawing. Median over the timed frames after warm-up frames; the frames are the real clip
../shared/data/videos/mmpose_demo.mp4 (960x540, several people), played in a loop at 30 fps
timestamps.

Models: each recipe's network, untrained, at the recipe's input size (speed does not depend on
the weights), the official EfficientPose RT (224x224) and tf-pose-estimation's OpenPose-
MobileNetV2 (368x432, what `kpose demo` serves by default). Top-down models run on the whole
frame as one person box, as the page runs them (no person detector). MoveNet Lightning is in
../shared only as TFLite (not loadable by TF.js): its published TF.js figures are quoted for
orientation (other devices, real GPUs).

    python benchmarks/browser_fps.py [--models efficientpose_rt,...] [--backends webgl,wasm,webgpu,cpu]
        [--frames-max 30] [--seconds 20] [--timeout 240] [--work /tmp/kpose_browser_fps]
        [--out benchmarks/results/browser_fps]

Writes OUT/browser_fps.json (every frame time, per-stage medians), OUT/browser_fps.md (tables)
and OUT/browser_fps.png (plot). Exported models are cached in WORK/models (--fresh re-exports).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web_demo"
SHARED = Path(os.environ.get("KPOSE_SHARED", REPO.parent / "shared"))
CLIP = SHARED / "data" / "videos" / "mmpose_demo.mp4"
RECIPES = ("efficientpose_rt", "openpose_lightweight", "openpose_mobilenet_v2", "openpose_vgg19")
OFFICIAL = ("efficientpose_rt_official", "tf_pose_mobilenet_v2")
BACKENDS = ("webgl", "wasm", "webgpu", "cpu")

# MoveNet SinglePose Lightning (192x192) in TF.js, as published by its authors: FPS, from
# github.com/tensorflow/tfjs-models/blob/master/pose-detection/src/movenet/README.md
# ("Performance"; Lightning | Thunder per cell there, Lightning quoted here).
MOVENET_SOURCE = "tfjs-models pose-detection/src/movenet/README.md, Performance table (Lightning)"
MOVENET_PUBLISHED = [
    ("MacBook Pro 15\" 2019, Intel Core i9, AMD Radeon Pro Vega 20", {"webgl": 104, "wasm": 42}),
    ("Desktop, Intel i9-10900K, Nvidia GTX 1070", {"webgl": 87, "wasm": 71}),
    ("iPhone 12", {"webgl": 51}),
    ("Pixel 5", {"webgl": 34}),
]


def _model(name: str):
    """The PoseModel behind a benchmark name, and a one-line description."""
    if name in RECIPES:
        from kpose.training import untrained_model

        model = untrained_model(name, {"init": None})
        return model, f"recipe `{name}`, untrained"
    if name == "efficientpose_rt_official":
        import kpose

        return kpose.load(SHARED / "peers" / "efficientpose" / "EfficientPoseRT.h5"), "official EfficientPose RT (.h5)"
    if name == "tf_pose_mobilenet_v2":
        from kpose.deploy.demo import default_model

        return default_model(), "tf-pose-estimation OpenPose-MobileNetV2 small (`kpose demo` default)"
    raise SystemExit(f"unknown model {name}; known: {', '.join(RECIPES + OFFICIAL)}")


def export_models(names, models_dir: Path, fresh: bool) -> dict:
    """Exports each model to TF.js into models_dir/NAME/ (cached) and returns its facts."""
    import kpose

    facts = {}
    for name in names:
        target = models_dir / name
        info_file = target / "bench_info.json"
        if fresh and target.exists():
            shutil.rmtree(target)
        if not info_file.exists():
            t = time.perf_counter()
            model, what = _model(name)
            with tempfile.TemporaryDirectory() as tmp:
                folder = kpose.export(model, "tfjs", output=tmp)
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(folder, target)
            info = {"what": what, "task": model.task, "input_size": list(model.input_size),
                    "skeleton": model.skeleton.name, "params": int(model.keras_model.count_params()),
                    "weights_mb": sum(p.stat().st_size for p in target.glob("*.bin")) / 1e6}
            info_file.write_text(json.dumps(info))
            print(f"exported {name} ({what}, {info['input_size']}) in {time.perf_counter() - t:.0f} s", flush=True)
        facts[name] = json.loads(info_file.read_text())
    return facts


def write_frames(frames_dir: Path) -> int:
    from PIL import Image

    from kpose.data.video import read_video

    frames_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for i, (frame, _) in enumerate(read_video(CLIP)):
        Image.fromarray(frame).save(frames_dir / f"frame_{i:04d}.png")
        n += 1
    return n


def build_page(page_dir: Path) -> None:
    subprocess.run(["node", "tools/build.mjs", "--out", str(page_dir), "--no-sourcemap"], cwd=WEB, check=True)


def _cell(r: dict | None) -> str:
    if r is None:
        return "–"
    if r.get("fps"):
        return f"**{r['fps']:.2f}** ({r['medianMs']:.0f} ms)"
    if r.get("unavailable"):
        return "n/a¹"
    return "timed out²" if "timed out" in r.get("error", "") else "error³"


def markdown(report: dict) -> str:
    res = {(r["model"], r["backend"]): r for r in report["results"]}
    backends = report["backends"]
    loads = [v for v in report.get("load_average", []) if v is not None]
    busy = f" 1-minute load average {min(loads):.1f}–{max(loads):.1f} during the runs (other jobs share the cores)." if loads else ""
    lines = [f"Frames/s (median ms per frame) in headless Chromium {report['browser']}, TF.js {report['tfjs']}, "
             f"{report['machine']}; frame {report['frame_size'][1]}x{report['frame_size'][0]}, tracking and "
             f"smoothing on, drawing included.{busy}", "",
             "| model | task | input (h×w) | params | " + " | ".join(backends) + " |",
             "|---|---|---|---|" + "---|" * len(backends)]
    for name, f in report["models"].items():
        cells = [_cell(res.get((name, b))) for b in backends]
        lines.append(f"| {name} ({f['what']}) | {f['task']} | {f['input_size'][0]}×{f['input_size'][1]} | "
                     f"{f['params'] / 1e6:.2f} M | " + " | ".join(cells) + " |")
    lines += ["", "Per-stage medians (ms). `estimatePoses` = frame upload (`tf.browser.fromPixels`, in \"upload + "
              "rest\") + warp + network (with the download of its maps) + decode + tracking; the rest of a frame "
              "is drawing:", "",
              "| model | backend | frames | people / frame | upload + rest | warp | network + download | decode | "
              "tracking | estimatePoses | whole frame |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        if r.get("fps"):
            s = r["stageMedianMs"]
            if "upload" in s:
                rest = f"{s['upload']:.1f}"
            else:  # measured before the per-frame median was kept: difference of the medians
                rest = f"≈{max(0.0, s['estimatePoses'] - s['crop'] - s['inference'] - s['decode'] - s['tracking']):.0f}"
            lines.append(f"| {r['model']} | {r['backend']} | {r['frames']} | {r['peoplePerFrame']:.1f} | {rest} | "
                         f"{s['crop']:.1f} | {s['inference']:.1f} | {s['decode']:.1f} | {s['tracking']:.2f} | "
                         f"{s['estimatePoses']:.1f} | {r['medianMs']:.1f} |")
    notes = sorted({f"{r['backend']}: {r['unavailable']}" for r in report["results"] if r.get("unavailable")})
    errors = sorted({f"{r['model']} {r['backend']}: {r['error']}" for r in report["results"] if r.get("error")})
    lines += [""]
    if notes:
        lines += ["¹ not offered: " + "; ".join(notes)]
    if any("timed out" in e for e in errors):
        lines += [f"² stopped after {report['timeout_s']} s (load, warm-up and the timed frames together)"]
    if any("timed out" not in e for e in errors):
        lines += ["³ " + "; ".join(e for e in errors if "timed out" not in e)]
    lines += ["", f"MoveNet SinglePose Lightning (192×192), published TF.js FPS, other devices ({MOVENET_SOURCE}):", "",
              "| device | webgl | wasm (SIMD + threads) |", "|---|---|---|"]
    for device, fps in MOVENET_PUBLISHED:
        lines.append(f"| {device} | {fps.get('webgl', '–')} | {fps.get('wasm', '–')} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    res = {(r["model"], r["backend"]): r for r in report["results"]}
    names = list(report["models"])
    backends = [b for b in report["backends"] if any(res.get((n, b), {}).get("fps") for n in names)]
    fig, (ax, ref) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / max(len(backends), 1)
    x = np.arange(len(names))
    for i, b in enumerate(backends):
        fps = [res.get((n, b), {}).get("fps") or 0 for n in names]
        bars = ax.bar(x + (i - (len(backends) - 1) / 2) * width, fps, width, label=b)
        for bar, v, n in zip(bars, fps, names):
            if v:
                ax.annotate(f"{v:.2g}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
            elif (n, b) in res:
                ax.annotate("timed out" if "timed out" in res[(n, b)].get("error", "") else "n/a",
                            (bar.get_x() + bar.get_width() / 2, 0.02), xycoords=("data", "axes fraction"),
                            ha="center", va="bottom", rotation=90, fontsize=7, color=bar.get_facecolor())
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{n}\n{report['models'][n]['input_size'][0]}×{report['models'][n]['input_size'][1]}" for n in names],
                  fontsize=8)
    ax.set_ylabel("frames / s (log)")
    ax.set_title(f"kpose in headless Chromium: {report['machine_short']}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    devices = [d.split(",")[0] for d, _ in MOVENET_PUBLISHED]
    for i, b in enumerate(("webgl", "wasm")):
        vals = [fps.get(b, 0) for _, fps in MOVENET_PUBLISHED]
        ref.bar(np.arange(len(devices)) + (i - 0.5) * 0.4, vals, 0.4, label=b)
    ref.set_xticks(np.arange(len(devices)), devices, fontsize=7, rotation=20)
    ref.set_title("MoveNet Lightning, published\n(other devices, real GPUs)", fontsize=10)
    ref.legend(fontsize=8)
    ref.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(RECIPES + OFFICIAL))
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--frames-max", type=int, default=30)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--timeout", type=int, default=240, help="seconds per model and backend (load + warm-up + frames)")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "kpose_browser_fps")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "browser_fps")
    p.add_argument("--fresh", action="store_true", help="export the models again")
    p.add_argument("--report-only", action="store_true", help="rewrite the table and plot from OUT/browser_fps.json")
    a = p.parse_args(argv)
    if a.report_only:
        report = json.loads((a.out / "browser_fps.json").read_text())
        write_report(report, a.out)
        return 0
    names = a.models.split(",")
    for b in a.backends.split(","):
        if b not in BACKENDS:
            raise SystemExit(f"unknown backend {b}; known: {', '.join(BACKENDS)}")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        raise SystemExit(f"no Chromium at {chromium} (apt-get install chromium, or set CHROMIUM)")
    if not CLIP.exists():
        raise SystemExit(f"{CLIP} not found (set KPOSE_SHARED)")
    a.work.mkdir(parents=True, exist_ok=True)
    a.out.mkdir(parents=True, exist_ok=True)
    facts = export_models(names, a.work / "models", a.fresh)
    frames_dir = a.work / "frames"
    shutil.rmtree(frames_dir, ignore_errors=True)
    n_frames = write_frames(frames_dir)
    build_page(a.work / "page")
    raw = a.out / "browser_fps.raw.json"
    cmd = ["node", "tools/browser_fps.mjs", "--dist", str(a.work / "page"), "--models", str(a.work / "models"),
           "--frames", str(frames_dir), "--out", str(raw), "--names", ",".join(names), "--backends", a.backends,
           "--warmup", str(a.warmup), "--frames-max", str(a.frames_max), "--seconds", str(a.seconds),
           "--timeout", str(a.timeout)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=WEB, check=True)
    measured = json.loads(raw.read_text())
    tfjs = json.loads((WEB / "node_modules" / "@tensorflow" / "tfjs" / "package.json").read_text())["version"]
    ok = [r for r in measured["results"] if r.get("fps")]
    renderer = next((r.get("webglRenderer") for r in ok if r.get("webglRenderer")), None)
    cores = os.cpu_count()
    report = {
        "command": "python benchmarks/browser_fps.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"), "browser": measured["browser"], "tfjs": tfjs,
        "machine": f"{cores} CPU cores ({platform.machine()}), no GPU: WebGL on {renderer or 'SwiftShader'} (software)",
        "machine_short": f"{cores} CPU cores, no GPU (WebGL = SwiftShader)",
        "load_average": [r.get("loadAverage") for r in measured["results"]],
        "frame_size": next((r["frameSize"] for r in ok), [540, 960]), "frames_in_clip": n_frames,
        "backends": a.backends.split(","), "timeout_s": a.timeout, "models": facts, "results": measured["results"],
        "movenet_published": {"source": MOVENET_SOURCE, "fps": MOVENET_PUBLISHED},
    }
    (a.out / "browser_fps.json").write_text(json.dumps(report, indent=1))
    write_report(report, a.out)
    return 0


def write_report(report: dict, out: Path) -> None:
    md = markdown(report)
    (out / "browser_fps.md").write_text(f"# Browser FPS ({report['date']})\n\n`{report['command']}`\n\n{md}")
    plot(report, out / "browser_fps.png")
    print(md)
    print(f"wrote {out / 'browser_fps.md'}, {out / 'browser_fps.png'}, {out / 'browser_fps.json'}")


if __name__ == "__main__":
    raise SystemExit(main())
