"""web_demo/: the JS decoders against the Python codecs, and the demo page in a browser.

* the committed golden vectors (web_demo/test/golden) are what the Python codecs write
  today (regenerated here, so they cannot go stale; limb_heatmap_coco.json, made from
  ../shared's coco_mini, only where ../shared is);
* `npm test`: the JS ports reproduce them (positions to 1e-9, identical peaks, people
  and order), PoseModel.predict's decoding with a stand-in network included (top-down,
  and bottom-up with fit_matrix's whole-image fit), and PoseModel.track's top-down video
  (crops where the tracks were: test/person-boxes.test.mjs);
* `kpose demo` without a model builds a page serving tf-pose-estimation's
  OpenPose-MobileNetV2 weights in kpose's bottom-up model;
* end to end: exported TF.js models in headless Chromium, driven through the demo
  page's own library, give the keypoints of PoseModel.predict within a pixel: top-down
  EfficientPose RT (whole image and person boxes), and that bottom-up model on a real
  photo of six people (same people, keypoints and scores); models of the real AP-10K,
  Animal-Pose and CrowdPose files' own skeletons, which the page reads from model.json
  alone (names, limbs; keypoints within a pixel of PoseModel.predict; it draws the file's
  limbs and, with its names switch on, keypoint names; screenshots in the test's tmp dir); the page's controls work
  (test/ui_smoke.mjs: model list and switch, people count, upload, fake webcam, backend
  switch, errors).

Needs node (skipped without it). The browser test needs Chromium ($CHROMIUM or
/usr/bin/chromium) and skips without it, unless KPOSE_REQUIRE_BROWSER=1 (CI), which
turns a missing node or browser into a failure. Models and photos come from ../shared
(skipped without it). With KPOSE_ARTIFACTS set, the bottom-up screenshots and results
and the custom-skeleton screenshots are copied into $KPOSE_ARTIFACTS/web_demo/.
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

from conftest import shared_dir

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web_demo"
GOLDEN = WEB / "test" / "golden"
REQUIRE_BROWSER = os.environ.get("KPOSE_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The photo of the bottom-up test: six people, near and far, overlapping.
BOTTOM_UP_PHOTO = "apink2.jpg"


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


# Written from ../shared's real data (web_demo/tools/golden_limb_heatmap.py): regenerated, and
# so checked, only where ../shared is (CI).
NEEDS_SHARED = {"limb_heatmap_coco.json"}


def test_golden_vectors_are_current(tmp_path):
    subprocess.run([sys.executable, str(WEB / "tools" / "write_golden.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, cwd=REPO)
    committed = sorted(p.name for p in GOLDEN.glob("*.json"))
    fresh = sorted(p.name for p in tmp_path.glob("*.json"))
    if shared_dir() is None:
        print(f"../shared is absent: {', '.join(sorted(NEEDS_SHARED))} not regenerated")
        committed = [name for name in committed if name not in NEEDS_SHARED]
    assert committed == fresh and committed
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

def _need_chromium():
    if not Path(CHROMIUM).exists():
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")


@pytest.fixture(scope="module")
def browser_setup(npm, shared, tmp_path_factory):
    """Built demo, the official EfficientPose RT exported to TF.js, a real image (PNG, so
    the browser and Pillow decode the same pixels), and Python's predictions for it."""
    _need_chromium()
    weights = shared / "peers" / "efficientpose" / "EfficientPoseRT.h5"
    image = shared / "peers" / "efficientpose" / "MPII.jpg"
    if not weights.exists() or not image.exists():
        pytest.skip(f"{weights.parent} lacks EfficientPoseRT.h5 / MPII.jpg")
    import kpose
    from kpose.deploy.demo import build_demo
    from PIL import Image

    tmp = tmp_path_factory.mktemp("web_demo_e2e")
    model = kpose.load(weights)
    # What `kpose demo MODEL --build-only --out DIR` does: export to TF.js into DIR/models/,
    # list it in DIR/models/index.json, build the page into DIR.
    dist = build_demo(model, tmp / "demo")
    assert dist == tmp / "demo"
    model_dir = dist / "models" / "efficientpose_rt"
    index = json.loads((dist / "models" / "index.json").read_text())
    assert index[0] == {"name": "efficientpose_rt", "url": "models/efficientpose_rt/model.json"}
    assert (dist / "models" / "efficientpose_rt" / "model.json").exists()
    png = tmp / "MPII.png"
    Image.open(image).convert("RGB").save(png)
    return {"model": model, "model_dir": model_dir, "image": png, "tmp": tmp, "dist": dist,
            "expected": model.predict(str(png))}


@pytest.mark.parametrize("backend", ["webgl", "wasm"])
def test_browser_matches_predict(browser_setup, backend):
    s = browser_setup
    out, shot = s["tmp"] / f"result_{backend}.json", s["tmp"] / f"screenshot_{backend}.png"
    proc = _run(["node", "test/e2e.mjs", "--model", str(s["model_dir"]), "--image", str(s["image"]), "--dist", str(s["dist"]),
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
    _run(["node", "test/e2e.mjs", "--model", str(s["model_dir"]), "--image", str(s["image"]), "--dist", str(s["dist"]),
          "--out", str(out), "--backend", "wasm", "--boxes", json.dumps([box])], timeout=300)
    pose = json.loads(out.read_text())["poses"][0]
    ref = s["model"].predict(str(s["image"]), boxes=[box])[0]
    js = np.array([[k["x"], k["y"]] for k in pose["keypoints"]])
    dist = np.abs(js - ref.keypoints[:, :2])
    assert dist.max() <= 1.0, dist
    assert pose["box"] == box and abs(pose["score"] - ref.score) < 0.01
    print(f"person box: max |JS - Python| {dist.max():.4f} px")


# ---------------------------------------------------------------------------
# bottom-up: `kpose demo` without a model, on a real photo

@pytest.fixture(scope="module")
def demo_default(npm, shared, tmp_path_factory):
    """`kpose demo --build-only --out DIR` with no model argument (a subprocess, as a user runs
    it), into an earlier build whose index has the {"models": [...]} form the page documents."""
    pb = shared / "peers" / "tf_pose_estimation" / "openpose_mobilenet_v2_small.pb"
    if not pb.exists():
        pytest.skip(f"{pb} absent")
    out = tmp_path_factory.mktemp("kpose_demo")
    (out / "models").mkdir()
    (out / ".kpose-demo").write_text("")
    (out / "models" / "index.json").write_text(json.dumps({"models": ["models/earlier/model.json"]}))
    env = dict(os.environ, KPOSE_SHARED=str(shared))
    env.pop("KPOSE_WEIGHTS", None)  # the weights `kpose demo` finds are the shared ones
    before = _source_tree_state()
    proc = subprocess.run([sys.executable, "-m", "kpose.cli", "demo", "--build-only", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"kpose demo --build-only failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert _source_tree_state() == before  # nothing written into the repository
    dist = Path(proc.stdout.strip().splitlines()[-1])
    return {"pb": pb, "dist": dist, "out": out, "name": "openpose_mobilenet_v2_small",
            "model_dir": dist / "models" / "openpose_mobilenet_v2_small"}


def _source_tree_state() -> str:
    """git status of the repository (untracked and ignored files included, node_modules aside)."""
    return subprocess.run(["git", "status", "--porcelain", "--ignored", "--", ".", ":!web_demo/node_modules"],
                          cwd=REPO, capture_output=True, text=True).stdout


def test_demo_without_model_serves_tf_pose(demo_default):
    d = demo_default
    assert d["dist"] == d["out"]
    index = json.loads((d["dist"] / "models" / "index.json").read_text())
    assert index[0] == {"name": d["name"], "url": f"models/{d['name']}/model.json"}
    assert index[1] == {"name": "earlier", "url": "models/earlier/model.json"}  # kept, either index form
    model_json = json.loads((d["dist"] / "models" / d["name"] / "model.json").read_text())
    meta = model_json["userDefinedMetadata"]["kpose"]
    assert meta["model"]["task"] == "bottom_up" and meta["skeleton"]["name"] == "cmu18"
    assert meta["codec"]["type"] == "paf" and meta["codec"]["input_size"] == [368, 432]
    assert [o["name"] for o in meta["outputs"]] == ["heatmaps", "pafs"]
    assert (d["dist"] / "index.html").exists() and (d["dist"] / "app.js").exists()


def test_demo_without_weights_says_where_it_looked(monkeypatch, tmp_path):
    from kpose.deploy.demo import default_model

    from kpose.models import tf_pose_release as release
    from kpose.models.weights import Release

    monkeypatch.delenv("KPOSE_WEIGHTS", raising=False)
    monkeypatch.setenv("KPOSE_SHARED", str(tmp_path / "shared"))
    monkeypatch.setenv("KPOSE_CACHE", str(tmp_path / "cache"))
    small = release.RELEASES["small"]
    monkeypatch.setitem(release.RELEASES, "small", Release(small.names, "http://127.0.0.1:9/g.pb", small.sha256))
    with pytest.raises(FileNotFoundError) as err:
        default_model()
    message = str(err.value)
    assert "http://127.0.0.1:9/g.pb" in message
    searched = [tmp_path / "shared" / "peers" / "tf_pose_estimation", tmp_path / "cache" / "weights"]
    for where in searched:
        assert str(where) in message
    assert "openpose_mobilenet_v2_small.pb" in message and "kpose demo runs/<run>/" in message


@pytest.fixture(scope="module")
def bottom_up_setup(demo_default, shared, tmp_path_factory):
    """The real photo as PNG and PoseModel.predict's people on it (the same weights, in Keras)."""
    _need_chromium()
    import kpose
    from PIL import Image

    photo = shared / "peers" / "tf_pose_estimation" / BOTTOM_UP_PHOTO
    if not photo.exists():
        pytest.skip(f"{photo} absent")
    tmp = tmp_path_factory.mktemp("web_demo_bottom_up")
    png = tmp / f"{photo.stem}.png"
    Image.open(photo).convert("RGB").save(png)
    model = kpose.load(demo_default["pb"])
    return {**demo_default, "model": model, "image": png, "tmp": tmp, "expected": model.predict(str(png))}


def _match_people(js: np.ndarray, ref: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (browser person, Python person), greedily by mean distance over the keypoints
    both found: the order may differ where two person scores are closer than the
    backends' rounding."""
    found_js, found_ref = js[..., 2] > 0, ref[..., 2] > 0
    cost = np.full((len(js), len(ref)), np.inf)
    for i in range(len(js)):
        for j in range(len(ref)):
            both = found_js[i] & found_ref[j]
            if both.any():
                cost[i, j] = np.linalg.norm(js[i, both, :2] - ref[j, both, :2], axis=-1).mean()
    pairs = []
    while np.isfinite(cost).any():
        i, j = np.unravel_index(np.argmin(cost), cost.shape)
        pairs.append((int(i), int(j)))
        cost[i, :], cost[:, j] = np.inf, np.inf
    return pairs


@pytest.mark.parametrize("backend", ["wasm", "webgl"])
def test_browser_bottom_up_matches_predict(bottom_up_setup, backend):
    s = bottom_up_setup
    out, shot = s["tmp"] / f"result_bottom_up_{backend}.json", s["tmp"] / f"screenshot_bottom_up_{backend}.png"
    proc = _run(["node", "test/e2e.mjs", "--model", str(s["model_dir"]), "--image", str(s["image"]), "--dist", str(s["dist"]),
                 "--out", str(out), "--screenshot", str(shot), "--backend", backend], timeout=600)
    if os.environ.get("KPOSE_ARTIFACTS"):
        artifacts = Path(os.environ["KPOSE_ARTIFACTS"]) / "web_demo"
        artifacts.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, artifacts / shot.name)
        shutil.copy(out, artifacts / out.name)
    result = json.loads(out.read_text())
    assert result["task"] == "bottom_up" and shot.stat().st_size > 10_000
    expected = s["expected"]
    poses = result["poses"]
    assert len(expected) >= 5, f"Python finds {len(expected)} people on {BOTTOM_UP_PHOTO}"
    assert len(poses) == len(expected) == result["people_shown"]
    names = list(expected[0].names)
    js = np.array([[[np.nan if k["x"] is None else k["x"], np.nan if k["y"] is None else k["y"], k["score"]]
                    for k in p["keypoints"]] for p in poses], np.float64)
    ref = np.stack([p.keypoints for p in expected]).astype(np.float64)
    assert all([k["name"] for k in p["keypoints"]] == names for p in poses)
    pairs = _match_people(js, ref)
    assert len(pairs) == len(expected), f"matched {pairs} of {len(expected)} people"
    worst, score_diff, kp_score_diff = 0.0, 0.0, 0.0
    for i, j in pairs:
        found = ref[j, :, 2] > 0
        found_js = ~np.isnan(js[i, :, 0])
        assert np.array_equal(found_js, found), \
            f"person {j}: the browser found keypoints {np.flatnonzero(found_js)}, Python {np.flatnonzero(found)}"
        dist = np.abs(js[i, found, :2] - ref[j, found, :2])
        assert dist.max() <= 1.0, \
            f"{result['backend']}: person {j} keypoints differ by up to {dist.max():.3f} px\n{dist}"
        worst = max(worst, dist.max())
        kp_score_diff = max(kp_score_diff, np.abs(js[i, found, 2] - ref[j, found, 2]).max())
        score_diff = max(score_diff, abs(poses[i]["score"] - expected[j].score))
    # TF.js warps the photo in float32: a few input pixels round to the next 8-bit value
    # and the maps move by ~1e-3 (measured 3e-3 at most on keypoint scores).
    assert kp_score_diff < 0.01 and score_diff < 0.01, (kp_score_diff, score_diff)
    if backend == "wasm":
        assert result["backend"] == "wasm", result["fallbacks"]
    print(f"{proc.stdout.strip()}\n  bottom-up on {result['backend']}: {len(poses)} people (Python {len(expected)}); "
          f"max |JS - Python| {worst:.4f} px, keypoint score {kp_score_diff:.2e}, person score {score_diff:.2e}; "
          f"page ready in {result['page_seconds']:.1f} s, warm estimatePoses "
          f"{result['timings_ms']['warm']['total']:.0f} ms; screenshot {shot}")


def test_browser_ui_smoke(browser_setup, bottom_up_setup):
    """Model list and switch (bottom-up, then top-down), the people count, image upload,
    fake webcam loop, backend switch, error reports."""
    top, bottom = browser_setup, bottom_up_setup
    expect = {f"models/{bottom['name']}/model.json": len(bottom["expected"]),
              f"models/{top['model_dir'].name}/model.json": len(top["model"].predict(str(bottom["image"])))}
    # Both models in one models/ folder, as two `kpose demo MODEL --out DIR` builds into one DIR leave them.
    models = bottom["tmp"] / "smoke_models"
    shutil.rmtree(models, ignore_errors=True)
    index = []
    for model_dir in (bottom["model_dir"], top["model_dir"]):
        shutil.copytree(model_dir, models / model_dir.name)
        index.append({"name": model_dir.name, "url": f"models/{model_dir.name}/model.json"})
    (models / "index.json").write_text(json.dumps(index))
    proc = _run(["node", "test/ui_smoke.mjs", "--dist", str(top["dist"]), "--models", str(models), "--image", str(bottom["image"]),
                 "--expect", json.dumps(expect)], timeout=600)
    print(proc.stdout.strip())


# ---------------------------------------------------------------------------
# custom skeletons: models of the real COCO-format sets' own keypoints, from their metadata alone

# Each real set: its folder in ../shared/data, annotation file, recipe skeleton, a photo and its person
# boxes ("file": the file's boxes of that photo; None: the whole image). CrowdPose's file lists COCO-17's
# limbs for its 14 keypoints (tests/test_custom_skeleton.py): the recipe gives its limbs by name.
# AP-10K's photo carries an ICC profile: the page must give the detector its stored pixel values
# (what Pillow reads), not the colour-managed ones it shows.
CUSTOM_SETS = {
    "ap10k": {"folder": "ap10k_samples", "ann": "test_ap10k.json", "skeleton": "from-data",
              "image": "000000000004.jpg", "boxes": "file", "icc": True},
    "animalpose": {"folder": "animalpose_samples", "ann": "test_animalpose.json", "skeleton": "from-data",
                   "image": "ca110.jpeg", "boxes": None, "icc": False},
    "crowdpose": {"folder": "crowdpose_samples", "ann": "test_crowdpose.json", "skeleton": "crowdpose-limbs",
                  "image": "103319.jpg", "boxes": "file", "icc": False},
}
# The fresh network's output layer (kernel and bias) times 2**12, an exact scaling: its heatmap
# peaks (~1e-4 at initialisation) clear the page's 0.2 draw threshold, as a trained model's do.
OUTPUT_GAIN = 4096.0


def _file_boxes(ann_file: Path, image: str) -> list[list[float]]:
    """The annotated person boxes (with keypoints) of one image of a COCO-format file."""
    data = json.loads(ann_file.read_text())
    (image_id,) = [i["id"] for i in data["images"] if i["file_name"] == image]
    return [a["bbox"] for a in data["annotations"] if a["image_id"] == image_id and a.get("num_keypoints", 1) > 0]


@pytest.fixture(scope="module")
def custom_skeleton_pages(browser_setup, shared, tmp_path_factory):
    """For each real set: a top-down model (fresh weights) of the file's own skeleton exported to
    TF.js, PoseModel.predict on one of its photos (as PNG) and person boxes, and the demo page's
    run of the exported model on the same photo and boxes (one browser for all sets)."""
    import kpose
    from PIL import Image
    from kpose._tf import keras
    from kpose.data.coco_scan import scan_coco
    from kpose.skeletons import CROWDPOSE14
    from kpose.training import untrained_model

    tmp = tmp_path_factory.mktemp("web_demo_custom_skeletons")
    crowd_limbs = [[CROWDPOSE14.keypoints[a], CROWDPOSE14.keypoints[b]] for a, b in CROWDPOSE14.limbs]
    runs, cases = {}, []
    keras.utils.set_random_seed(14)  # the same fresh weights on every run
    for name, c in CUSTOM_SETS.items():
        d = shared / "data" / c["folder"]
        if not (d / c["ann"]).exists() or not (d / c["image"]).exists():
            continue
        entry = {"from": "data", "limbs": crowd_limbs} if c["skeleton"] == "crowdpose-limbs" else c["skeleton"]
        skeleton = scan_coco(d / c["ann"], d, entry).skeleton
        model = untrained_model("efficientpose_rt", {"skeleton": skeleton.to_dict()})
        output = model.keras_model.layers[-1]  # the heatmaps' layer: linear, so the gain scales them
        assert output.weights and getattr(output, "activation", None).__name__ == "linear", output.name
        output.set_weights([w * OUTPUT_GAIN for w in output.get_weights()])
        photo = Image.open(d / c["image"])
        assert ("icc_profile" in photo.info) == c["icc"], f"{d / c['image']}: ICC profile expected {c['icc']}"
        png = tmp / f"{name}.png"
        photo.convert("RGB").save(png)  # its ICC profile kept
        boxes = _file_boxes(d / c["ann"], c["image"]) if c["boxes"] == "file" else None
        case = {"model": str(kpose.export(model, "tfjs", output=tmp / name)), "image": str(png), "backend": "wasm",
                "names": True,  # the page's names switch: the keypoint names drawn too
                "out": str(tmp / f"{name}.json"), "screenshot": str(tmp / f"screenshot_{name}.png")}
        cases.append({**case, **({"boxes": boxes} if boxes else {})})
        runs[name] = {"skeleton": skeleton, "boxes": boxes, "shot": Path(case["screenshot"]), "out": Path(case["out"]),
                      "expected": model.predict(str(png), boxes=boxes)}
    if not runs:
        pytest.skip(f"{shared / 'data'} has none of {sorted(c['folder'] for c in CUSTOM_SETS.values())}")
    (tmp / "cases.json").write_text(json.dumps(cases))
    proc = _run(["node", "test/e2e.mjs", "--cases", str(tmp / "cases.json"), "--dist", str(browser_setup["dist"])],
                timeout=600)
    print(proc.stdout.strip())
    artifacts = Path(os.environ["KPOSE_ARTIFACTS"]) / "web_demo" if os.environ.get("KPOSE_ARTIFACTS") else None
    for run in runs.values():
        run["result"] = json.loads(run["out"].read_text())
        if artifacts:
            artifacts.mkdir(parents=True, exist_ok=True)
            shutil.copy(run["shot"], artifacts / run["shot"].name)
    return {"runs": runs, "bundle": (browser_setup["dist"] / "app.js").read_text()}


@pytest.mark.parametrize("name", sorted(CUSTOM_SETS))
def test_browser_runs_a_custom_skeleton_from_its_metadata(custom_skeleton_pages, name):
    """The page's detector takes K, keypoint names, limbs and flip pairs from model.json alone
    (none of the names is in the page's code), decodes what PoseModel.predict decodes on the
    same photo and boxes (within a pixel), and draws the skeleton's own limbs: exactly those
    whose two keypoints it shows (score > 0.2), on each person, and (names switch on) the
    file's own name beside each keypoint it shows."""
    if name not in custom_skeleton_pages["runs"]:
        pytest.skip(f"{CUSTOM_SETS[name]['folder']} absent from ../shared/data")
    run = custom_skeleton_pages["runs"][name]
    sk, result, expected = run["skeleton"], run["result"], run["expected"]
    page_skeleton = result["skeleton"]
    assert page_skeleton["keypoints"] == list(sk.keypoints)
    assert page_skeleton["limbs"] == [list(limb) for limb in sk.limbs]
    assert page_skeleton["flip_pairs"] == [list(p) for p in sk.flip_pairs]
    assert f"{sk.name} ({sk.num_keypoints} keypoints)" in result["model_info"], result["model_info"]
    bundle = custom_skeleton_pages["bundle"]
    assert not [n for n in sk.keypoints if f'"{n}"' in bundle or f"'{n}'" in bundle]  # no table of its own

    assert len(result["poses"]) == len(expected) == result["people_shown"] == len(run["boxes"] or [None])
    worst, worst_score, top_score, drawn_limbs = 0.0, 0.0, 0.0, 0
    for i, (pose, ref) in enumerate(zip(result["poses"], expected)):
        assert [k["name"] for k in pose["keypoints"]] == list(ref.names) == list(sk.keypoints)
        js = np.array([[k["x"], k["y"], k["score"]] for k in pose["keypoints"]], np.float64)
        dist = np.abs(js[:, :2] - ref.keypoints[:, :2])
        assert dist.max() <= 1.0, f"{name} person {i}: keypoints differ by up to {dist.max():.3f} px\n{dist}"
        worst = max(worst, dist.max())
        worst_score = max(worst_score, np.abs(js[:, 2] - ref.keypoints[:, 2]).max())
        top_score = max(top_score, ref.keypoints[:, 2].max())
        if run["boxes"]:
            assert pose["box"] == run["boxes"][i]
        shown = js[:, 2] > 0.2  # the page's draw threshold for top-down models
        drawn = result["drawn"][i]
        assert drawn["keypoints"] == np.flatnonzero(shown).tolist()
        assert drawn["limbs"] == [list(limb) for limb in sk.limbs if shown[limb[0]] and shown[limb[1]]]
        assert drawn["limbs"], f"{name} person {i}: no limb drawn ({int(shown.sum())} keypoints shown)"
        assert drawn["names"] == [[int(k), sk.keypoints[k]] for k in np.flatnonzero(shown)]
        drawn_limbs += len(drawn["limbs"])
    # A fresh network's heatmaps are near-cancelling sums: TF.js and TF round them ~1e-2 apart
    # (relative; a trained network's agree to ~1e-4), which moves no peak.
    assert worst_score <= 0.05 * top_score, (worst_score, top_score)
    assert run["shot"].stat().st_size > 10_000
    print(f"{name}: {sk.name}, {sk.num_keypoints} keypoints, {len(sk.limbs)} limbs, {len(expected)} "
          f"{'person' if len(expected) == 1 else 'people'}; max |JS - Python| {worst:.4f} px, keypoint score "
          f"{worst_score:.1e} (of up to {top_score:.1f}); {drawn_limbs} of {len(sk.limbs) * len(expected)} limbs "
          f"drawn; screenshot {run['shot']}")


# ---------------------------------------------------------------------------
# `kpose demo --check`: the page, served by kpose's own server, in headless Chromium

def test_demo_check(browser_setup, tmp_path):
    """check_demo on the built page with the official RT model: it loads the index's first
    model, finds the one person and matches PoseModel.predict; a page whose model is missing
    fails the check with the page's own error."""
    from kpose.deploy.demo_check import check_demo

    s = browser_setup
    report = check_demo(s["dist"], s["model"], image=s["image"])
    print(report.summary())
    assert report.passed, report.summary()
    kinds = dict((text.split()[0], kind) for kind, text in report.lines)
    assert kinds.get("max") == "ok"  # the page agrees with Python within NOTE_PX
    assert report.page["isolated"] and report.page["modelUrl"] == "models/efficientpose_rt/model.json"

    broken = tmp_path / "broken"
    shutil.copytree(s["dist"], broken, ignore=shutil.ignore_patterns("models"))
    (broken / "models").mkdir()
    (broken / "models" / "index.json").write_text(json.dumps(["models/gone/model.json"]))
    report = check_demo(broken, timeout=60)
    assert not report.passed and "HTTP 404" in report.summary(), report.summary()


def test_demo_check_without_chromium_says_so(monkeypatch, tmp_path, capsys):
    from kpose.cli import main

    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-chrome"))
    code = main(["demo", str(tmp_path / "model"), "--out", str(tmp_path / "demo"), "--check"])
    err = capsys.readouterr().err
    assert code == 1 and f"CHROMIUM={tmp_path / 'no-chrome'}: no such file" in err, err
    assert not (tmp_path / "demo").exists()  # refused before the model is read or exported


# ---------------------------------------------------------------------------
# tracking on the page and the browser FPS benchmark (benchmarks/browser_fps.py)

def test_browser_fps_benchmark(browser_setup, tmp_path):
    """tools/browser_fps.mjs times the page's own frame step (upload, warp, network, decode,
    tracking, smoothing, drawing) on a few frames with the official RT model on wasm, and
    benchmarks/browser_fps.py turns the measurement into its table and plot."""
    from PIL import Image

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import browser_fps
    finally:
        sys.path.pop(0)
    s = browser_setup
    models, frames = tmp_path / "models", tmp_path / "frames"
    shutil.copytree(s["model_dir"], models / "rt")
    frames.mkdir()
    image = Image.open(s["image"]).resize((320, 320))
    for i in range(3):  # the person moves: tracked across frames with one id
        Image.fromarray(np.roll(np.asarray(image), 4 * i, axis=1)).save(frames / f"frame_{i:04d}.png")
    raw = tmp_path / "raw.json"
    _run(["node", "tools/browser_fps.mjs", "--dist", str(s["dist"]), "--models", str(models), "--frames", str(frames),
          "--out", str(raw), "--backends", "wasm", "--warmup", "1", "--frames-max", "4", "--seconds", "2"], timeout=300)
    (r,) = json.loads(raw.read_text())["results"]
    assert r["backend"] == "wasm" and r["frames"] >= 3 and r["fps"] > 0, r
    assert r["tracking"]["enableTracking"] and r["tracking"]["enableSmoothing"] and r["trackIds"] == 1, r
    assert r["medianMs"] >= r["stageMedianMs"]["estimatePoses"] > r["stageMedianMs"]["inference"] > 0
    report = {"browser": "x", "tfjs": "4", "machine": "m", "machine_short": "m", "frame_size": r["frameSize"],
              "backends": ["wasm", "cpu"], "timeout_s": 1, "results": [r, {"model": "rt", "backend": "cpu", "error": "timed out"}],
              "models": {"rt": {"what": "official", "task": "top_down", "input_size": [224, 224], "params": 465608}}}
    md = browser_fps.markdown(report)
    assert f"**{r['fps']:.2f}**" in md and "timed out²" in md and "MoveNet" in md, md
    browser_fps.plot(report, tmp_path / "fps.png")
    assert (tmp_path / "fps.png").stat().st_size > 10_000
    print(f"browser FPS, official RT on wasm, 320x320 frames: {r['fps']:.1f} fps "
          f"(median {r['medianMs']:.0f} ms over {r['frames']} frames)")
