"""Readers on the real sample data in ../shared (skipped when it is absent)."""
from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from kpose.data import images as images_mod
from kpose.data.coco import CROWD, NO_KEYPOINTS, read_coco
from kpose.data.images import DataError
from kpose.data.mpii import read_mpii
from kpose.data.sources import _split_fields, load_instances, parse_data_spec, split_spec
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
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

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

    monkeypatch.setattr(images_mod, "_inspect", no_decoding)
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

    from pycocotools.coco import COCO

    import contextlib
    import io

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
    assert parse_data_spec("synthetic") == {"format": "synthetic", "root": None}
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

    def ensure_dataset(root=None):
        calls.append(root)
        return {"train": str(coco_ann("train")), "val": str(coco_ann("val")),
                "train_images": str(COCO_MINI / "train2017"), "val_images": str(COCO_MINI / "val2017")}

    fake = types.ModuleType("kpose.data.synthetic")
    fake.ensure_dataset = ensure_dataset
    monkeypatch.setitem(sys.modules, "kpose.data.synthetic", fake)
    import kpose.data

    monkeypatch.setattr(kpose.data, "synthetic", fake, raising=False)
    assert len(load_instances("synthetic", "train", cache_dir=tmp_path, progress=False)) == 86
    assert len(load_instances("synthetic", "val", cache_dir=tmp_path, progress=False)) == 68
    assert calls == [None, None]


def test_synthetic_missing_module(tmp_path, monkeypatch):
    import kpose.data

    monkeypatch.setitem(sys.modules, "kpose.data.synthetic", None)
    monkeypatch.delattr(kpose.data, "synthetic", raising=False)
    with pytest.raises(DataError, match="kpose.data.synthetic"):
        load_instances("synthetic", "train", cache_dir=tmp_path)
