"""web_demo/: the JS decoders against the Python codecs, and the demo page in a browser.

* the committed golden vectors (web_demo/test/golden) are what the Python codecs write
  today (regenerated here, so they cannot go stale);
* `npm test`: the JS ports reproduce them (positions to 1e-9, identical peaks, people
  and order);
* end to end: an exported TF.js model in headless Chromium, driven through the demo
  page's own library, gives the keypoints of PoseModel.predict within a pixel (whole
  image and person boxes); a bottom-up model (a constant graph returning PafCodec
  targets) gives PafCodec.decode's people, letterboxed back to the image; the page's
  controls work (test/ui_smoke.mjs: model list, upload, fake webcam, backend switch).

Needs node (skipped without it). The browser test needs Chromium ($CHROMIUM or
/usr/bin/chromium) and skips without it, unless KPOSE_REQUIRE_BROWSER=1 (CI), which
turns a missing node or browser into a failure.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web_demo"
GOLDEN = WEB / "test" / "golden"
REQUIRE_BROWSER = os.environ.get("KPOSE_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _missing(what: str, required: bool = REQUIRE_BROWSER):
    if required:
        pytest.fail(f"{what} (KPOSE_REQUIRE_BROWSER=1)")
    pytest.skip(what)


def _run(cmd, timeout=600, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=WEB, capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def npm():
    """web_demo with its npm packages (npm ci when node_modules is absent)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        _missing("node/npm not on PATH")
    if not (WEB / "node_modules" / "@tensorflow" / "tfjs").exists():
        _run(["npm", "ci", "--no-audit", "--no-fund"])
    return WEB


# ---------------------------------------------------------------------------
# golden vectors

def _array(d: dict) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(d["zlib_b64"]))
    return np.frombuffer(raw, np.dtype(d["dtype"]).newbyteorder("<")).reshape(d["shape"])


def _assert_same(committed, fresh, where: str) -> None:
    """Equal structure, strings, integers, flags and orders; floats and arrays equal up
    to 1e-6 (numpy's exp/log and BLAS may round differently on another CPU; any change
    of the codecs' behaviour is far larger)."""
    if isinstance(committed, dict) and "zlib_b64" in committed:
        a, b = _array(committed), _array(fresh)
        assert a.shape == b.shape, where
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6, err_msg=where)
    elif isinstance(committed, dict):
        assert isinstance(fresh, dict) and committed.keys() == fresh.keys(), f"{where}: keys differ"
        for k in committed:
            _assert_same(committed[k], fresh[k], f"{where}.{k}")
    elif isinstance(committed, list):
        assert isinstance(fresh, list) and len(committed) == len(fresh), f"{where}: lengths differ"
        for i, (a, b) in enumerate(zip(committed, fresh)):
            _assert_same(a, b, f"{where}[{i}]")
    elif isinstance(committed, float) or isinstance(fresh, float):
        assert abs(committed - fresh) <= 1e-6 * max(1.0, abs(committed)), f"{where}: {committed} != {fresh}"
    else:
        assert committed == fresh, f"{where}: {committed!r} != {fresh!r}"


def test_golden_vectors_are_current(tmp_path):
    subprocess.run([sys.executable, str(WEB / "tools" / "write_golden.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, cwd=REPO)
    committed = sorted(p.name for p in GOLDEN.glob("*.json"))
    assert committed == sorted(p.name for p in tmp_path.glob("*.json")) and committed
    identical = 0
    for name in committed:
        old, new = (GOLDEN / name).read_text(), (tmp_path / name).read_text()
        identical += old == new
        _assert_same(json.loads(old), json.loads(new), name)
    print(f"golden vectors: {identical}/{len(committed)} files byte-identical when regenerated")


def test_js_decoders_match_python(npm):
    out = _run(["npm", "test", "--silent"], timeout=300).stdout
    summary = [line for line in out.splitlines() if line.startswith(("# pass", "# fail", "# max", "# tests"))]
    assert "# fail 0" in out, out[-4000:]
    print("\n".join(summary))


# ---------------------------------------------------------------------------
# browser end to end

@pytest.fixture(scope="module")
def browser_setup(npm, shared, tmp_path_factory):
    """Built demo, the official EfficientPose RT exported to TF.js, a real image (PNG, so
    the browser and Pillow decode the same pixels), and Python's predictions for it."""
    if not Path(CHROMIUM).exists():
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")
    weights = shared / "peers" / "efficientpose" / "EfficientPoseRT.h5"
    image = shared / "peers" / "efficientpose" / "MPII.jpg"
    if not weights.exists() or not image.exists():
        pytest.skip(f"{weights.parent} lacks EfficientPoseRT.h5 / MPII.jpg")
    import kpose
    from kpose.deploy.demo import WEB_DEMO, build_demo
    from PIL import Image

    tmp = tmp_path_factory.mktemp("web_demo_e2e")
    model = kpose.load(weights)
    # What `kpose demo MODEL --build-only` does: export to TF.js into web_demo/models/,
    # list it in models/index.json, npm run build.
    dist = build_demo(model)
    model_dir = WEB_DEMO / "models" / "efficientpose_rt"
    index = json.loads((dist / "models" / "index.json").read_text())
    assert index[0] == {"name": "efficientpose_rt", "url": "models/efficientpose_rt/model.json"}
    assert (dist / "models" / "efficientpose_rt" / "model.json").exists()
    png = tmp / "MPII.png"
    Image.open(image).convert("RGB").save(png)
    return {"model": model, "model_dir": model_dir, "image": png, "tmp": tmp,
            "expected": model.predict(str(png))}


@pytest.mark.parametrize("backend", ["webgl", "wasm"])
def test_browser_matches_predict(browser_setup, backend):
    s = browser_setup
    out, shot = s["tmp"] / f"result_{backend}.json", s["tmp"] / f"screenshot_{backend}.png"
    proc = _run(["node", "test/e2e.mjs", "--model", str(s["model_dir"]), "--image", str(s["image"]),
                 "--out", str(out), "--screenshot", str(shot), "--backend", backend], timeout=300)
    result = json.loads(out.read_text())
    assert shot.stat().st_size > 10_000
    expected = s["expected"]
    assert len(result["poses"]) == len(expected) == 1
    pose, ref = result["poses"][0], expected[0]
    assert [k["name"] for k in pose["keypoints"]] == list(ref.names)
    js = np.array([[k["x"], k["y"], k["score"]] for k in pose["keypoints"]], np.float64)
    dist = np.abs(js[:, :2] - ref.keypoints[:, :2])
    assert dist.max() <= 1.0, f"{result['backend']}: keypoints differ by up to {dist.max():.3f} px\n{dist}"
    assert np.abs(js[:, 2] - ref.keypoints[:, 2]).max() < 0.01
    assert abs(pose["score"] - ref.score) < 0.01
    assert result["backend"] in ("webgl", "wasm", "cpu", "webgpu")
    if backend == "wasm":
        assert result["backend"] == "wasm", result["fallbacks"]
    print(f"{proc.stdout.strip()}\n  requested {backend}, ran on {result['backend']}"
          f"{' (fallbacks: ' + '; '.join(result['fallbacks']) + ')' if result['fallbacks'] else ''}; "
          f"max |JS - Python| {dist.max():.4f} px, mean {dist.mean():.4f} px; "
          f"warm estimatePoses {result['timings_ms']['warm']['total']:.0f} ms")


def test_browser_person_box(browser_setup):
    s = browser_setup
    box = [330, 20, 330, 980]
    out = s["tmp"] / "result_box.json"
    _run(["node", "test/e2e.mjs", "--model", str(s["model_dir"]), "--image", str(s["image"]),
          "--out", str(out), "--backend", "wasm", "--boxes", json.dumps([box])], timeout=300)
    pose = json.loads(out.read_text())["poses"][0]
    ref = s["model"].predict(str(s["image"]), boxes=[box])[0]
    js = np.array([[k["x"], k["y"]] for k in pose["keypoints"]])
    dist = np.abs(js - ref.keypoints[:, :2])
    assert dist.max() <= 1.0, dist
    assert pose["box"] == box and abs(pose["score"] - ref.score) < 0.01
    print(f"person box: max |JS - Python| {dist.max():.4f} px")


def test_browser_ui_smoke(browser_setup):
    """Model list, image upload, fake webcam loop, backend switch, missing-model error."""
    s = browser_setup
    models = s["model_dir"].parent
    (models / "index.json").write_text(json.dumps(
        {"models": [{"name": s["model_dir"].name, "url": f"models/{s['model_dir'].name}/model.json"}]}))
    proc = _run(["node", "test/ui_smoke.mjs", "--models", str(models), "--image", str(s["image"])], timeout=300)
    print(proc.stdout.strip())


def _constant_bottom_up_model(out_dir: Path, codec, skeleton, heatmaps, pafs) -> Path:
    """A TF.js graph model with the bottom-up contract (image -> heatmaps, pafs) that
    returns fixed maps, so the browser's decode can be checked to float precision."""
    import tensorflow as tf
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs_conv

    h, w = codec.input_size
    hm, pf = tf.constant(heatmaps[None]), tf.constant(pafs[None])

    class Constant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name="image")])
        def serve(self, image):
            zero = 0.0 * tf.reduce_mean(image)  # keeps the input in the graph
            return {"heatmaps": hm + zero, "pafs": pf + zero}

    module = Constant()
    saved = out_dir / "saved_model"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.serve})
    sx, sy = codec.heatmap_codec.stride
    meta = {
        "format": "kpose", "schema_version": 1, "kpose_version": "test",
        "model": {"name": "constant_bottom_up", "family": "test", "variant": "constant", "task": "bottom_up"},
        "precision": "fp32",
        "input": {"name": "image", "shape": [1, h, w, 3], "dtype": "float32", "layout": "NHWC",
                  "channels": "RGB", "range": [0, 255], "normalization": "in_graph"},
        "outputs": [{"name": "heatmaps", "shape": [1, *heatmaps.shape], "stride": [sx, sy],
                     "content": "keypoint_heatmaps"},
                    {"name": "pafs", "shape": [1, *pafs.shape], "stride": [sx, sy],
                     "content": "part_affinity_fields"}],
        "skeleton": {"name": skeleton.name, "keypoints": list(skeleton.keypoints),
                     "flip_pairs": [list(p) for p in skeleton.flip_pairs],
                     "limbs": [list(p) for p in skeleton.limbs]},
        "codec": codec.to_dict(),
        "crop": {"padding": 1.25},
    }
    model_dir = out_dir / "tfjs"
    tfjs_conv.convert_tf_saved_model(str(saved), str(model_dir), signature_def="serving_default",
                                     use_structured_outputs_names=True, metadata={"kpose": meta})
    return model_dir


def test_browser_bottom_up(npm, tmp_path):
    if not Path(CHROMIUM).exists():
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")
    from PIL import Image

    from kpose.codecs.paf import PafCodec
    from kpose.skeletons import COCO17
    from kpose.transforms import affine_matrix, apply_affine, box_to_center_scale, invert_affine

    codec = PafCodec((128, 128), (32, 32), COCO17.limbs, sigma=1.5)
    template = np.array([
        (0.0, -0.42), (0.03, -0.45), (-0.03, -0.45), (0.07, -0.43), (-0.07, -0.43),
        (0.15, -0.30), (-0.15, -0.30), (0.20, -0.10), (-0.20, -0.10), (0.22, 0.08), (-0.22, 0.08),
        (0.10, 0.05), (-0.10, 0.05), (0.11, 0.27), (-0.11, 0.27), (0.12, 0.50), (-0.12, 0.50)])
    rng = np.random.default_rng(3)
    people = []
    for cx, cy, height, missing in [(34, 60, 60, [3, 4]), (84, 66, 70, []), (110, 56, 44, [15, 16])]:
        xy = template * height + (cx, cy) + rng.normal(0, 0.5, template.shape)
        v = np.full((17, 1), 2.0)
        v[missing] = 0
        people.append(np.concatenate([xy, v], -1))
    people = np.stack(people)
    heatmaps = codec.encode_heatmaps(people)[0]
    pafs = codec.encode(people)[0]
    if not (WEB / "dist" / "index.html").exists():
        _run(["npm", "run", "build", "--silent"], timeout=300)
    model_dir = _constant_bottom_up_model(tmp_path, codec, COCO17, heatmaps, pafs)

    img_w, img_h = 320, 200   # wider than the square input: letterboxed top and bottom
    image = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 255, (img_h, img_w, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "result.json"
    _run(["node", "test/e2e.mjs", "--model", str(model_dir), "--image", str(image), "--out", str(out),
          "--screenshot", str(tmp_path / "shot.png"), "--backend", "wasm"], timeout=300)
    result = json.loads(out.read_text())

    poses, scores = codec.decode(heatmaps, pafs)
    center, scale = box_to_center_scale([0, 0, img_w, img_h], 1.0, 1.0)
    inv = invert_affine(affine_matrix(center, scale, codec.input_size))
    assert len(result["poses"]) == len(poses) >= 3
    worst = 0.0
    for got, want, score in zip(result["poses"], poses, scores):
        assert abs(got["score"] - score) < 1e-6
        mapped = apply_affine(want, inv)
        for k, (kp, (x, y, s)) in enumerate(zip(got["keypoints"], mapped)):
            assert kp["name"] == COCO17.keypoints[k]
            if want[k, 2] == 0:
                assert kp["x"] is None and kp["score"] == 0
                continue
            worst = max(worst, abs(kp["x"] - x), abs(kp["y"] - y))
            assert abs(kp["score"] - s) < 1e-6
    # Python's decode rounds to float32 before the map back; the browser keeps float64.
    assert worst < 1e-3, worst
    print(f"bottom-up: {len(poses)} people in Python's order, max |JS - Python| {worst:.2e} px")
