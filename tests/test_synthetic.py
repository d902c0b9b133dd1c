"""The embedded synthetic dataset: determinism, COCO validity, hardness and statistics."""
from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kpose.data import synthetic
from kpose.skeletons import COCO17

H, W = 256, 256


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("synthetic")
    train = synthetic.generate(root, 60, seed=0, split="train", progress=False)
    val = synthetic.generate(root, 40, seed=0, split="val", progress=False)
    return {"root": root, "train": train, "val": val,
            "train_json": json.loads(train.read_text()), "val_json": json.loads(val.read_text())}


def _keypoints(d: dict) -> np.ndarray:
    return np.array([a["keypoints"] for a in d["annotations"]], float).reshape(-1, COCO17.num_keypoints, 3)


def _oks_ap(gt_path: Path, results: list[dict]) -> float:
    gt = _quiet(COCO, str(gt_path))
    dt = _quiet(gt.loadRes, results)
    ev = COCOeval(gt, dt, "keypoints")
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    return float(ev.stats[0])


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = synthetic.generate(tmp_path / "a", 5, seed=7, progress=False)
    b = synthetic.generate(tmp_path / "b", 5, seed=7, progress=False)
    c = synthetic.generate(tmp_path / "c", 5, seed=8, progress=False)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    for name in (f"{i:06d}.jpg" for i in range(5)):
        assert (tmp_path / "a/train" / name).read_bytes() == (tmp_path / "b/train" / name).read_bytes()
        pa = np.asarray(Image.open(tmp_path / "a/train" / name))
        pc = np.asarray(Image.open(tmp_path / "c/train" / name))
        assert pa.shape == (H, W, 3)
        assert np.abs(pa.astype(int) - pc).mean() > 10


def test_workers_do_not_change_output(tmp_path):
    a = synthetic.generate(tmp_path / "a", 4, seed=1, progress=False, workers=1)
    b = synthetic.generate(tmp_path / "b", 4, seed=1, progress=False, workers=2)
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a/train/000003.jpg").read_bytes() == (tmp_path / "b/train/000003.jpg").read_bytes()


def test_val_split_holds_new_images(data):
    root = data["root"]
    assert (root / "train/000000.jpg").read_bytes() != (root / "val/000000.jpg").read_bytes()


def test_coco_format(data):
    coco = _quiet(COCO, str(data["train"]))
    d = data["train_json"]
    (cat,) = d["categories"]
    assert cat["id"] == 1 and cat["name"] == "person"
    assert cat["keypoints"] == list(COCO17.keypoints)
    assert cat["skeleton"] == [[a + 1, b + 1] for a, b in COCO17.limbs]
    assert len(coco.getImgIds()) == 60
    assert len({a["id"] for a in d["annotations"]}) == len(d["annotations"])
    for img in d["images"]:
        assert {"id", "file_name", "width", "height"} <= img.keys()
        assert (data["root"] / "train" / img["file_name"]).is_file()
    for a in d["annotations"]:
        assert {"id", "image_id", "category_id", "keypoints", "num_keypoints", "bbox", "area",
                "iscrowd", "segmentation"} <= a.keys()
        assert a["category_id"] == 1 and a["iscrowd"] == 0
        kp = np.asarray(a["keypoints"], float).reshape(-1, 3)
        assert kp.shape == (17, 3)
        v = kp[:, 2]
        assert set(np.unique(v)) <= {0, 1, 2}
        assert a["num_keypoints"] == int((v > 0).sum()) >= 3
        # v=0 <=> (0, 0); labelled keypoints lie inside the image (pixel-centre frame)
        assert np.all((v == 0) == np.all(kp[:, :2] == 0, axis=1))
        lab = kp[v > 0, :2]
        assert np.all((lab >= -0.5) & (lab < [W - 0.5, H - 0.5]))
        x, y, bw, bh = a["bbox"]
        assert x >= 0 and y >= 0 and bw > 0 and bh > 0 and x + bw <= W and y + bh <= H
        assert a["area"] > 0
        # the box is the visible mask's extent (COCO edge frame, see kpose.transforms)
        rle = a["segmentation"]
        assert int(mask_utils.area(rle)) == a["area"]
        assert np.allclose(mask_utils.toBbox(rle), a["bbox"])
        # a visible keypoint is drawn on the visible mask, so it is inside the box
        vis = kp[v == 2, :2]
        m = 1.0
        assert np.all((vis[:, 0] >= x - 0.5 - m) & (vis[:, 0] <= x + bw - 0.5 + m))
        assert np.all((vis[:, 1] >= y - 0.5 - m) & (vis[:, 1] <= y + bh - 0.5 + m))


def test_ground_truth_scores_perfect_ap(data):
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in data["val_json"]["annotations"]]
    assert _oks_ap(data["val"], results) == pytest.approx(1.0)


def test_mean_pose_and_mirrored_pose_score_low(data):
    # Mean keypoint layout of the train split, normalised to the box, placed in
    # every val box. Measured AP on 200 val images: ~0.000 (median OKS 0.21).
    kp = _keypoints(data["train_json"])
    boxes = np.array([a["bbox"] for a in data["train_json"]["annotations"]], float)
    norm = (kp[..., :2] - boxes[:, None, :2]) / boxes[:, None, 2:]
    w = (kp[..., 2:] > 0)
    mean = (norm * w).sum(0) / w.sum(0)
    results = []
    for a in data["val_json"]["annotations"]:
        x, y, bw, bh = a["bbox"]
        p = np.concatenate([mean * [bw, bh] + [x, y], np.ones((17, 1))], 1)
        results.append({"image_id": a["image_id"], "category_id": 1, "keypoints": p.ravel().tolist(),
                        "score": 1.0})
    assert _oks_ap(data["val"], results) < 0.05

    # Getting left and right wrong must cost most of the AP (measured ~0.001).
    flip = COCO17.flip_index()
    mirrored = []
    for a in data["val_json"]["annotations"]:
        k = np.asarray(a["keypoints"], float).reshape(17, 3)[flip]
        k[:, 2] = 1
        mirrored.append({"image_id": a["image_id"], "category_id": 1, "keypoints": k.ravel().tolist(),
                         "score": 1.0})
    assert _oks_ap(data["val"], mirrored) < 0.1


def test_left_right_needs_facing_direction(data):
    # Facing away puts the person's left shoulder on the image's left (measured 0.25).
    kp = _keypoints(data["train_json"])
    ls, rs = kp[:, COCO17.index("left_shoulder")], kp[:, COCO17.index("right_shoulder")]
    both = (ls[:, 2] > 0) & (rs[:, 2] > 0)
    away = float(np.mean(ls[both, 0] < rs[both, 0]))
    assert 0.15 < away < 0.5


def test_statistics(data):
    d = data["train_json"]
    kp = _keypoints(d)
    v = kp[..., 2]
    frac = [float(np.mean(v == i)) for i in range(3)]
    assert 0.1 < frac[1] < 0.45       # occluded keypoints exist (measured ~0.25)
    assert 0.005 < frac[0] < 0.15     # truncated keypoints exist (measured ~0.03)
    assert np.mean(np.any(v == 0, axis=1)) > 0.05   # truncated people
    per_image = Counter(Counter(a["image_id"] for a in d["annotations"]).values())
    assert set(per_image) == {1, 2, 3, 4}
    heights = np.array([a["bbox"][3] for a in d["annotations"]])
    assert heights.min() < 0.3 * H and heights.max() > 0.7 * H


def test_ensure_dataset_is_cached_and_atomic(tmp_path):
    root = tmp_path / "ds"
    paths = synthetic.ensure_dataset(root, num_train=4, num_val=3, progress=False, workers=1)
    assert set(paths) == {"train", "val", "train_images", "val_images"}
    assert len(json.loads(paths["train"].read_text())["images"]) == 4
    assert len(json.loads(paths["val"].read_text())["images"]) == 3
    assert len(list(paths["val_images"].glob("*.jpg"))) == 3
    stamp = paths["train"].stat().st_mtime_ns
    assert synthetic.ensure_dataset(root, num_train=4, num_val=3, progress=False) == paths
    assert paths["train"].stat().st_mtime_ns == stamp          # reused, not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]       # no temporary folder left
    # other parameters rebuild a folder that we made ...
    synthetic.ensure_dataset(root, num_train=2, num_val=2, progress=False, workers=1)
    assert len(json.loads(paths["train"].read_text())["images"]) == 2
    # ... but a folder we did not make is never deleted
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        synthetic.ensure_dataset(foreign, num_train=2, num_val=2, progress=False)
    assert (foreign / "keep.txt").exists()


def test_preview_writes_png(data, tmp_path):
    out = synthetic.preview(data["train"], tmp_path / "preview.png", n=4)
    with Image.open(out) as im:
        assert im.size[0] > 200 and im.size[1] > 200


# --------------------------------------------------------------------------- crowd variant


def _iou(a, b) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_crowd_variant(tmp_path):
    ann = synthetic.generate(tmp_path / "a", 12, seed=0, progress=False, crowd=True)
    again = synthetic.generate(tmp_path / "b", 12, seed=0, progress=False, crowd=True)
    assert ann.read_bytes() == again.read_bytes()
    plain = synthetic.generate(tmp_path / "c", 1, seed=0, progress=False)
    assert (tmp_path / "a/train/000000.jpg").read_bytes() != (tmp_path / "c/train/000000.jpg").read_bytes()
    d = json.loads(ann.read_text())
    assert d["info"]["variant"] == "crowd" and "variant" not in json.loads(plain.read_text())["info"]
    people = [a for a in d["annotations"] if a["num_keypoints"] > 0]
    per_image = Counter(a["image_id"] for a in people)
    counts = [per_image.get(i + 1, 0) for i in range(12)]
    assert max(counts) >= 9 and np.mean(counts) >= 5 and max(counts) <= len(synthetic.CROWD_SCENE.people_p)
    boxes: dict = {}
    for a in people:
        boxes.setdefault(a["image_id"], []).append(a["bbox"])
    ious = [_iou(p, q) for bs in boxes.values() for i, p in enumerate(bs) for q in bs[i + 1:]]
    assert np.mean(np.array(ious) > 0.1) > 0.1       # people overlap (measured ~0.2 of pairs)
    kp = _keypoints({"annotations": people})
    assert 0.1 < np.mean(kp[..., 2] == 1) < 0.45      # occlusion, as in the default data
    for a in d["annotations"]:
        assert a["area"] > 0 and a["bbox"][2] > 0 and a["segmentation"]["size"] == [H, W]


def test_too_hidden_people_become_keypointless_in_crowds():
    mask = np.zeros((H, W), bool)
    mask[10:20, 30:36] = True
    kps = np.zeros((17, 3))
    kps[0] = [33, 12, 2]
    person = {"keypoints": kps, "mask": mask}
    assert synthetic.dataset._annotation(person, 1, 1, H, W) is None
    ann = synthetic.dataset._annotation(person, 1, 1, H, W, keep_hidden=True)
    assert ann["num_keypoints"] == 0 and not any(ann["keypoints"])
    assert ann["bbox"] == [30, 10, 6, 10] and ann["area"] == 60
    person["mask"] = np.zeros((H, W), bool)  # not visible at all: nothing to ignore
    assert synthetic.dataset._annotation(person, 1, 1, H, W, keep_hidden=True) is None


def test_crowd_dataset_has_its_own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KPOSE_CACHE", str(tmp_path))
    crowd = synthetic.ensure_dataset(num_train=2, num_val=1, progress=False, workers=1, crowd=True)
    plain = synthetic.ensure_dataset(num_train=2, num_val=1, progress=False, workers=1)
    assert crowd["train"].parents[1].name.startswith("synthetic-crowd-")
    assert plain["train"].parents[1].name.startswith("synthetic-v")
    assert json.loads((crowd["train"].parents[1] / "dataset.json").read_text())["variant"] == "crowd"
