"""Readers on the real sample data in ../shared (skipped when it is absent)."""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kpose.data import image_check
from kpose.data import sources, synthetic
from kpose.data.coco import CROWD, NO_KEYPOINTS, read_coco
from kpose.data.coco_images import NO_PEOPLE, read_coco_images
from kpose.data.images import DataError
from kpose.data.mpii import read_mpii
from kpose.data.sources import _split_fields, load_images, load_instances, parse_data_spec, split_spec
from kpose.skeletons import COCO17, MPII16

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KPOSE_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
COCO_MINI = DATA / "coco_mini"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")


def coco_ann(split: str) -> Path:
    return COCO_MINI / "annotations" / f"person_keypoints_{split}2017.json"


def expected_ids(split: str) -> set[int]:
    """What COCO top-down training uses: non-crowd people with at least one labelled keypoint."""
    data = json.loads(coco_ann(split).read_text())
    return {a["id"] for a in data["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0}


def assert_consistent(inst) -> None:
    """Invariants every reader must hold."""
    n = len(inst)
    assert n > 0
    assert inst.keypoints.shape == (n, inst.skeleton.num_keypoints, 3)
    h, w = inst.image_sizes[:, 0], inst.image_sizes[:, 1]
    x, y, bw, bh = inst.bboxes.T
    assert np.all(bw > 0) and np.all(bh > 0)
    assert np.all(x >= 0) and np.all(y >= 0) and np.all(x + bw <= w + 1e-3) and np.all(y + bh <= h + 1e-3)
    vis = inst.keypoints[..., 2] > 0
    assert vis.any(axis=1).all(), "every instance has a labelled keypoint"
    kx, ky = inst.keypoints[..., 0], inst.keypoints[..., 1]
    assert np.all((kx >= -1.5) & (kx <= w[:, None] + 0.5) | ~vis)
    assert np.all((ky >= -1.5) & (ky <= h[:, None] + 0.5) | ~vis)
    assert set(np.unique(inst.keypoints[..., 2])) <= {0.0, 1.0, 2.0}
    assert np.all(inst.areas > 0)
    assert all(Path(p).is_file() for p in inst.image_paths)
    assert len(set(inst.ann_ids.tolist())) == n


@pytest.mark.parametrize("split,n_kept,n_images,skipped", [
    ("train", 86, 28, {CROWD: 5, NO_KEYPOINTS: 81}),
    ("val", 68, 32, {CROWD: 1, NO_KEYPOINTS: 49}),
])
def test_coco_mini_counts(tmp_path, split, n_kept, n_images, skipped):
    inst = read_coco(coco_ann(split), COCO_MINI / f"{split}2017", cache_dir=tmp_path, progress=False)
    assert len(inst) == n_kept
    assert len(np.unique(inst.image_ids)) == n_images
    assert dict(inst.skipped) == skipped
    total = len(json.loads(coco_ann(split).read_text())["annotations"])
    assert n_kept + sum(skipped.values()) == total  # nothing lost without a reason
    assert set(inst.ann_ids.tolist()) == expected_ids(split)
    assert inst.skeleton == COCO17
    assert_consistent(inst)
    # Plain RGB JPEGs with matching sizes: decoded in place, original file evaluates.
    assert all(str(COCO_MINI) in p for p in inst.image_paths)
    assert inst.ann_file == str(coco_ann(split).resolve())
    assert np.all(np.isnan(inst.head_sizes))


def test_coco_keypoints_match_json(tmp_path):
    inst = read_coco(coco_ann("val"), COCO_MINI / "val2017", cache_dir=tmp_path, progress=False)
    data = json.loads(coco_ann("val").read_text())
    by_id = {a["id"]: a for a in data["annotations"]}
    for i, ann_id in enumerate(inst.ann_ids):
        kp = np.asarray(by_id[int(ann_id)]["keypoints"], np.float32).reshape(17, 3)
        np.testing.assert_array_equal(inst.keypoints[i], kp)
        np.testing.assert_allclose(inst.areas[i], by_id[int(ann_id)]["area"], rtol=1e-6)


def test_coco_ann_file_evaluates_to_one(tmp_path):
    """The ground truth scored against the returned ann_file gives AP 1 (pycocotools)."""
    inst = read_coco(coco_ann("val"), COCO_MINI / "val2017", cache_dir=tmp_path, progress=False)
    results = [{"image_id": int(i), "category_id": 1, "score": 1.0,
                "keypoints": inst.keypoints[k].reshape(-1).tolist()} for k, i in enumerate(inst.image_ids)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(inst.ann_file)
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.evaluate(); ev.accumulate(); ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_image_check_is_cached(tmp_path, monkeypatch):
    args = (coco_ann("train"), COCO_MINI / "train2017")
    first = read_coco(*args, cache_dir=tmp_path, progress=False)
    assert (tmp_path / "image_check.json").is_file()

    def no_decoding(*a, **k):
        raise AssertionError("second run must not decode images again")

    monkeypatch.setattr(image_check, "_inspect", no_decoding)
    second = read_coco(*args, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(first.image_paths, second.image_paths)


def test_ochuman(tmp_path):
    ann = DATA / "ochuman_samples" / "test_ochuman.json"
    inst = read_coco(ann, DATA / "ochuman_samples", cache_dir=tmp_path, progress=False)
    assert len(inst) == 5 and len(np.unique(inst.image_ids)) == 3
    assert not inst.skipped
    assert_consistent(inst)
    assert inst.ann_file == str(ann.resolve())


def test_mpii_samples(tmp_path):
    list_file = DATA / "mpii_samples" / "test_mpii.json"
    inst = read_mpii(list_file, DATA / "mpii_samples", cache_dir=tmp_path, progress=False)
    assert len(inst) == 5 and not inst.skipped
    assert inst.skeleton == MPII16
    assert_consistent(inst)
    assert np.all(np.isfinite(inst.head_sizes)) and np.all(inst.head_sizes > 0)
    assert set(np.unique(inst.keypoints[..., 2])) <= {0.0, 2.0}  # no occluded flag in this format

    records = json.loads(list_file.read_text())
    for i, ann_id in enumerate(inst.ann_ids):
        rec = records[int(ann_id) - 1]
        vis = np.asarray(rec["joints_vis"]) > 0
        np.testing.assert_array_equal(inst.keypoints[i, :, 2] > 0, vis)
        # 1-based MATLAB coordinates -> 0-based, as HRNet/mmpose read this format.
        np.testing.assert_allclose(inst.keypoints[i, vis, :2], np.asarray(rec["joints"])[vis] - 1, atol=1e-3)
        # head size: 0.6 * sqrt(2) * head segment length
        top, neck = np.asarray(rec["joints"][9]), np.asarray(rec["joints"][8])
        assert inst.head_sizes[i] == pytest.approx(0.6 * np.sqrt(2) * np.linalg.norm(top - neck), rel=1e-5)
        # box: square of the person height centred at the shifted centre, then clipped
        side, cx = rec["scale"] * 200, rec["center"][0] - 1
        x, y, w, h = inst.bboxes[i]
        assert x == pytest.approx(max(cx + 0.5 - side / 2, 0), abs=1e-2)  # edge frame

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(inst.ann_file)
    anns = gt.loadAnns(gt.getAnnIds())
    assert len(anns) == 5
    for ann in anns:
        i = int(np.flatnonzero(inst.ann_ids == ann["id"])[0])
        assert ann["head_size"] == pytest.approx(float(inst.head_sizes[i]), rel=1e-4)
        assert ann["num_keypoints"] == int((inst.keypoints[i, :, 2] > 0).sum())
        assert ann["area"] > 0


def test_parse_data_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_data_spec("synthetic") == {"format": "synthetic", "root": None, "crowd": False}
    assert parse_data_spec("synthetic:crowd") == {"format": "synthetic", "root": None, "crowd": True}
    assert parse_data_spec("synthetic:crowd:/d/c") == {"format": "synthetic", "root": os.path.abspath("/d/c"),
                                                       "crowd": True}
    assert parse_data_spec("synthetic:./crowd") == {"format": "synthetic", "root": str(tmp_path / "crowd"),
                                                    "crowd": False}
    assert parse_data_spec("coco:a/b.json:imgs") == {
        "format": "coco", "ann_file": str(tmp_path / "a/b.json"), "image_dir": str(tmp_path / "imgs")}
    assert parse_data_spec("mpii:/x/l.json:/y")["list_file"] == os.path.abspath("/x/l.json")
    assert parse_data_spec("coco:/a/ann.json:/b/images")["image_dir"] == os.path.abspath("/b/images")
    # On Windows a drive letter's colon is not a separator.
    assert _split_fields(r"C:\data\ann.json:D:/images", windows=True) == [r"C:\data\ann.json", "D:/images"]
    assert _split_fields("rel/ann.json:imgs", windows=True) == ["rel/ann.json", "imgs"]
    with pytest.raises(DataError, match="coco:ANN_JSON:IMAGE_DIR"):
        parse_data_spec("voc:x:y")
    with pytest.raises(DataError, match="coco:ann.json:IMAGE_DIR"):
        parse_data_spec("ann.json")
    with pytest.raises(DataError, match="two paths"):
        parse_data_spec("coco:only_one.json")


def test_split_rule():
    assert split_spec("coco:a:b", "val") == "coco:a:b"
    assert split_spec({"train": "coco:a:b"}, "val") == "coco:a:b"
    assert split_spec({"train": "coco:a:b", "val": "coco:c:d"}, "val") == "coco:c:d"
    with pytest.raises(DataError, match="train"):
        split_spec({"val": "coco:c:d"}, "val")
    with pytest.raises(DataError, match="split"):
        split_spec("synthetic", "test")


def test_load_instances_relative_paths(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(COCO_MINI)
    spec = "coco:annotations/person_keypoints_val2017.json:val2017"
    train = load_instances(spec, "train", cache_dir=tmp_path, progress=False)
    assert len(train) == 68
    with caplog.at_level("WARNING", logger="kpose.data.sources"):
        val = load_instances(spec, "val", cache_dir=tmp_path, progress=False)
    assert len(val) == 68 and "training data" in caplog.text
    split = {"train": f"coco:{coco_ann('train')}:{COCO_MINI / 'train2017'}", "val": spec}
    assert len(load_instances(split, "train", cache_dir=tmp_path, progress=False)) == 86
    mpii = load_instances(f"mpii:{DATA / 'mpii_samples' / 'test_mpii.json'}:{DATA / 'mpii_samples'}", "train",
                          cache_dir=tmp_path, progress=False)
    assert len(mpii) == 5 and mpii.skeleton == MPII16


def test_synthetic_contract(tmp_path, monkeypatch):
    """`synthetic` goes through kpose.data.synthetic.ensure_dataset and reads each split."""
    calls = []

    def ensure_dataset(root=None, crowd=False):
        calls.append((root, crowd))
        return {"train": str(coco_ann("train")), "val": str(coco_ann("val")),
                "train_images": str(COCO_MINI / "train2017"), "val_images": str(COCO_MINI / "val2017")}

    monkeypatch.setattr(sources.synthetic, "ensure_dataset", ensure_dataset)
    assert len(load_instances("synthetic", "train", cache_dir=tmp_path, progress=False)) == 86
    assert len(load_instances("synthetic", "val", cache_dir=tmp_path, progress=False)) == 68
    assert len(load_images("synthetic:crowd", "val", cache_dir=tmp_path, progress=False)) == 32
    assert calls == [(None, False), (None, False), (None, True)]


# --------------------------------------------------------------------------- image-level (bottom-up) records


def _person_anns(split: str) -> list[dict]:
    return [a for a in json.loads(coco_ann(split).read_text())["annotations"] if a["category_id"] == 1]


@pytest.mark.parametrize("split,n_images,n_people,ignored,no_people", [
    ("train", 28, 86, {CROWD: 5, NO_KEYPOINTS: 56}, 52),
    ("val", 32, 68, {CROWD: 1, NO_KEYPOINTS: 24}, 47),
])
def test_coco_mini_image_records(tmp_path, split, n_images, n_people, ignored, no_people):
    rec = read_coco_images(coco_ann(split), COCO_MINI / f"{split}2017", cache_dir=tmp_path, progress=False)
    print(rec.summary())
    m = int(rec.num_people.max())
    assert len(rec) == n_images and int(rec.num_people.sum()) == n_people
    assert rec.keypoints.shape == (n_images, m, 17, 3) and rec.bboxes.shape == (n_images, m, 4)
    assert dict(rec.ignored) == ignored
    assert rec.skipped[NO_PEOPLE] == no_people
    # every person annotation is a person, an ignore region, or counted as skipped
    person_skips = sum(v for k, v in rec.skipped.items() if k != NO_PEOPLE and not k.startswith("warning:"))
    assert n_people + sum(ignored.values()) + person_skips == len(_person_anns(split))
    # the same people, keypoints and areas as the top-down reader
    inst = read_coco(coco_ann(split), COCO_MINI / f"{split}2017", cache_dir=tmp_path, progress=False)
    people = rec.ann_ids >= 0
    assert (people.sum(1) == rec.num_people).all() and people[:, 0].all()
    assert sorted(rec.ann_ids[people].tolist()) == sorted(inst.ann_ids.tolist())
    order = {int(a): i for i, a in enumerate(inst.ann_ids)}
    rows = [order[int(a)] for a in rec.ann_ids[people]]
    np.testing.assert_array_equal(rec.keypoints[people], inst.keypoints[rows])
    np.testing.assert_array_equal(rec.areas[people], inst.areas[rows])
    np.testing.assert_array_equal(rec.bboxes[people], inst.bboxes[rows])
    assert np.all(rec.keypoints[~people] == 0) and np.all(rec.areas[~people] == 0)
    # ignore masks: one PNG of the image's size per image with regions, '' otherwise
    has = rec.ignore_paths != ""
    assert (has == (rec.num_ignore > 0)).all() and rec.num_ignore.sum() == sum(ignored.values())
    for path, (h, w) in zip(rec.ignore_paths[has], rec.image_sizes[has]):
        with Image.open(path) as im:
            assert im.mode == "L" and im.size == (w, h)
            assert set(np.unique(np.asarray(im)).tolist()) <= {0, 255}
    assert rec.ann_file == str(coco_ann(split).resolve())


def test_coco_crowd_becomes_ignore_mask(tmp_path):
    """val2017's one crowd annotation: its RLE pixels are exactly ignored (with the image's other regions)."""
    rec = read_coco_images(coco_ann("val"), COCO_MINI / "val2017", cache_dir=tmp_path, progress=False)
    anns = _person_anns("val")
    (crowd,) = [a for a in anns if a["iscrowd"]]
    i = int(np.flatnonzero(rec.image_ids == crowd["image_id"])[0])
    h, w = rec.image_sizes[i]
    rle = mask_utils.frPyObjects(crowd["segmentation"], int(h), int(w))
    crowd_px = mask_utils.decode(rle).astype(bool)
    with Image.open(rec.ignore_paths[i]) as im:
        ignore = np.asarray(im) > 127
    assert crowd_px.sum() > 1000 and np.all(ignore[crowd_px])
    others = [a for a in anns if a["image_id"] == crowd["image_id"] and not a["iscrowd"]
              and a["num_keypoints"] == 0]
    assert rec.num_ignore[i] == 1 + len(others)
    # labelled people's keypoints are rarely inside the ignored area
    kp = rec.keypoints[i, :rec.num_people[i]]
    v = kp[..., 2] > 0
    hit = ignore[kp[..., 1][v].astype(int), kp[..., 0][v].astype(int)]
    print(f"crowd image {rec.image_ids[i]}: {rec.num_people[i]} people, {rec.num_ignore[i]} ignore regions, "
          f"{hit.mean():.0%} of labelled keypoints inside them")
    # a second read reuses the cached masks
    stamp = Path(rec.ignore_paths[i]).stat().st_mtime_ns
    again = read_coco_images(coco_ann("val"), COCO_MINI / "val2017", cache_dir=tmp_path, progress=False)
    assert Path(again.ignore_paths[i]).stat().st_mtime_ns == stamp


def test_ignore_region_falls_back_to_box(tmp_path):
    data = json.loads(coco_ann("val").read_text())
    target = next(a for a in data["annotations"] if a["iscrowd"])
    target["segmentation"] = {"counts": "not an rle", "size": [1, 1]}
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    rec = read_coco_images(ann, COCO_MINI / "val2017", cache_dir=tmp_path, progress=False)
    assert rec.skipped["warning: ignore region taken from the box (no usable segmentation)"] == 1
    i = int(np.flatnonzero(rec.image_ids == target["image_id"])[0])
    with Image.open(rec.ignore_paths[i]) as im:
        ignore = np.asarray(im) > 127
    x, y, bw, bh = target["bbox"]
    assert ignore[int(y):int(y + bh), int(x):int(x + bw)].all()


def test_load_images_synthetic_and_mpii(tmp_path, monkeypatch):
    real = synthetic.ensure_dataset

    def small(root=None, crowd=False):
        return real(tmp_path / ("crowd" if crowd else "plain"), num_train=6, num_val=3, crowd=crowd,
                    progress=False, workers=1)

    monkeypatch.setattr(sources.synthetic, "ensure_dataset", small)
    plain = load_images("synthetic", "train", cache_dir=tmp_path, progress=False)
    crowd = load_images("synthetic:crowd", "train", cache_dir=tmp_path, progress=False)
    print(plain.summary())
    print(crowd.summary())
    assert len(plain) == len(crowd) == 6
    assert plain.max_people <= 4 and crowd.max_people >= 6 and crowd.num_people.mean() > plain.num_people.mean()
    assert plain.skeleton == crowd.skeleton == COCO17
    assert load_images("synthetic", "val", cache_dir=tmp_path, progress=False).num_people.sum() > 0
    with pytest.raises(DataError, match="MPII.*bottom-up.*Fix"):
        load_images(f"mpii:{DATA / 'mpii_samples' / 'test_mpii.json'}:{DATA / 'mpii_samples'}", "train",
                    cache_dir=tmp_path)
