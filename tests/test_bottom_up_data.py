"""Bottom-up data: image-level records (bad input counted) and the augmented tf.data pipeline."""
from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
from PIL import Image

from kpose.data import synthetic
from kpose.data.bottom_up import DEFAULT_AUGMENT, bottom_up_dataset, check_augment, people_tensors
from kpose.data.coco_images import FIX_REGION_BOX, NO_PEOPLE, read_coco_images
from kpose.data.coco_scan import BAD_BOX, BAD_KEYPOINTS, CROWD, NO_KEYPOINTS
from kpose.transforms import affine_matrix, apply_affine, warp_image

IN = (96, 128)  # (H, W) of the network input in these tests
STILL = {"scale": (1.0, 1.0), "rotation": 0.0, "rotation_prob": 0.0, "flip": 0.0, "shift": 0.0, "color": 0.0}
RECT = (40, 30, 120, 110)  # x0, y0, x1, y1 (exclusive) of the test ignore region in image 0


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Four crowd images; image 0 gets a rectangular ignore mask, image 1 a 25-person crowd."""
    root = tmp_path_factory.mktemp("bottom_up")
    ann = synthetic.generate(root, 4, seed=3, progress=False, crowd=True)
    rec = read_coco_images(ann, root / "train", cache_dir=root / "cache", progress=False)
    h, w = (int(v) for v in rec.image_sizes[0])
    mask = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = RECT
    mask[y0:y1, x0:x1] = 255
    Image.fromarray(mask).save(root / "ignore0.png")
    ignore = rec.ignore_paths.astype(object)
    ignore[0] = str(root / "ignore0.png")
    rec = dataclasses.replace(rec, ignore_paths=ignore.astype(str))
    return _with_crowd(rec, row=1, n=25)


def _with_crowd(rec, row: int, n: int):
    """The records with image `row` holding n people: copies of its people, shifted, of decreasing area."""
    m = max(rec.max_people, n)
    k = rec.skeleton.num_keypoints
    kps = np.zeros((len(rec), m, k, 3), np.float32)
    kps[:, :rec.max_people] = rec.keypoints
    areas = np.zeros((len(rec), m), np.float32)
    areas[:, :rec.max_people] = rec.areas
    src = rec.keypoints[row, :rec.num_people[row]]
    rng = np.random.default_rng(0)
    for j in range(n):
        p = src[j % len(src)].copy()
        p[:, :2] += rng.uniform(-20, 20, 2)
        p[:, :2] = np.clip(p[:, :2], 0, rec.image_sizes[row, ::-1] - 1)
        kps[row, j] = np.where(p[:, 2:] > 0, p, 0)
        areas[row, j] = 1000.0 - j
    num = rec.num_people.copy()
    num[row] = n
    pad = np.zeros((len(rec), m, 4), np.float32)
    ids = np.full((len(rec), m), -1, np.int64)
    ids[:, :rec.max_people] = rec.ann_ids
    ids[row, :n] = np.arange(n)
    return dataclasses.replace(rec, keypoints=kps, areas=areas, num_people=num, bboxes=pad, ann_ids=ids)


def _take(ds, batches: int) -> list:
    return [tuple(t.numpy() if not isinstance(t, dict) else {k: v.numpy() for k, v in t.items()} for t in b)
            for b in ds.take(batches)]


AUG = {"scale": (0.8, 1.4), "rotation": 30.0, "rotation_prob": 0.7, "flip": 0.5, "shift": 0.15, "color": 0.3}


def test_shapes_and_determinism(records):
    a = _take(bottom_up_dataset(records, IN, AUG, batch_size=3, seed=5, max_people=30), 2)
    b = _take(bottom_up_dataset(records, IN, AUG, batch_size=3, seed=5, max_people=30), 2)
    c = _take(bottom_up_dataset(records, IN, AUG, batch_size=3, seed=6, max_people=30), 2)
    img, kps, mask = a[0]
    assert img.shape == (3, *IN, 3) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 255
    assert kps.shape == (3, 30, 17, 3) and mask.shape == (3, *IN) and set(np.unique(mask)) <= {0.0, 1.0}
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0][0], c[0][0])


def test_keypoints_follow_the_affine(records):
    """Each sample's keypoints are NumPy's apply_affine of the record under the sample's matrix."""
    flip_index = records.skeleton.flip_index()
    ds = bottom_up_dataset(records, IN, AUG, batch_size=4, seed=1, max_people=30, with_meta=True)
    flips = seen = 0
    for img, kps, mask, meta in _take(ds, 3):
        for b in range(len(img)):
            i, m = meta["index"][b], meta["matrix"][b]
            src = people_tensors(records, 30)[i]
            want = apply_affine(src, m)
            if meta["flip"][b]:
                want = want[:, flip_index]
                flips += 1
            inside = ((want[..., 0] >= -0.5) & (want[..., 0] <= IN[1] - 0.5)
                      & (want[..., 1] >= -0.5) & (want[..., 1] <= IN[0] - 0.5))
            v = np.where(inside, want[..., 2], 0)
            np.testing.assert_array_equal(kps[b, ..., 2], v)
            np.testing.assert_allclose(kps[b, ..., :2], np.where(v[..., None] > 0, want[..., :2], 0), atol=2e-3)
            seen += int((v > 0).sum())
    assert flips > 0 and seen > 100


def test_matrix_without_augmentation_fits_the_image(records):
    ds = bottom_up_dataset(records, IN, STILL, batch_size=4, seed=0, with_meta=True)
    _, _, _, meta = _take(ds, 1)[0]
    for i, m in zip(meta["index"], meta["matrix"]):
        h, w = records.image_sizes[i]
        aspect = IN[1] / IN[0]
        fit = (max(w, h * aspect), max(h, w / aspect))
        np.testing.assert_allclose(m, affine_matrix(((w - 1) / 2, (h - 1) / 2), fit, IN), atol=1e-4)


def test_flip_swaps_left_and_right(records):
    plain = _take(bottom_up_dataset(records, IN, STILL, batch_size=4, seed=2), 1)[0]
    flipped = _take(bottom_up_dataset(records, IN, {**STILL, "flip": 1.0}, batch_size=4, seed=2), 1)[0]
    # Same images in the same order (the shuffle does not depend on augment): mirrored pixels.
    np.testing.assert_allclose(flipped[0], plain[0][:, :, ::-1], atol=0.05)
    assert np.mean(flipped[2] != plain[2][:, :, ::-1]) < 1e-3 and plain[2].any()
    sk = records.skeleton
    for left, right in (("left_wrist", "right_wrist"), ("left_ankle", "right_ankle"), ("left_eye", "right_eye")):
        li, ri = sk.index(left), sk.index(right)
        seen = plain[1][:, :, ri, 2] > 0
        np.testing.assert_array_equal(flipped[1][:, :, li, 2], plain[1][:, :, ri, 2])
        np.testing.assert_allclose(flipped[1][:, :, li, 0][seen], IN[1] - 1 - plain[1][:, :, ri, 0][seen], atol=1e-3)
        np.testing.assert_allclose(flipped[1][:, :, li, 1][seen], plain[1][:, :, ri, 1][seen], atol=1e-3)


def test_ignore_mask_is_warped_with_the_image(records):
    ds = bottom_up_dataset(records, IN, {**AUG, "color": 0.0}, batch_size=4, seed=4, with_meta=True)
    checked = 0
    for img, kps, mask, meta in _take(ds, 4):
        for b, i in enumerate(meta["index"]):
            if records.ignore_paths[i] == "":
                assert not mask[b].any()
                continue
            with Image.open(records.ignore_paths[i]) as im:
                src = np.asarray(im, np.float32)[..., None] / 255.0
            want = warp_image(src, meta["matrix"][b], IN)[..., 0] > 0.5
            assert np.mean(want != (mask[b] > 0)) < 0.005
            x0, y0, x1, y1 = RECT
            cx, cy = apply_affine(np.array([[(x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2]]), meta["matrix"][b])[0]
            if 0 <= cx < IN[1] and 0 <= cy < IN[0]:
                assert mask[b, int(round(cy)), int(round(cx))] == 1
            checked += 1
    assert checked > 0


def test_twenty_five_people(records, caplog):
    ds = bottom_up_dataset(records, IN, STILL, batch_size=4, seed=0, max_people=30, with_meta=True)
    _, kps, _, meta = _take(ds, 1)[0]
    b = int(np.flatnonzero(meta["index"] == 1)[0])
    people = (kps[b, ..., 2] > 0).any(-1)
    assert kps.shape[1] == 30 and 20 <= people.sum() <= 25
    with caplog.at_level(logging.WARNING, logger="kpose.data.bottom_up"):
        kept = people_tensors(records, 12)
    assert "more than max_people=12" in caplog.text
    # the largest 12 (areas decrease with the row in this image) are kept
    np.testing.assert_array_equal(kept[1], records.keypoints[1, :12])


def test_augment_is_checked():
    assert check_augment(None)["flip"] == DEFAULT_AUGMENT["flip"]
    with pytest.raises(ValueError, match="rotaton"):
        check_augment({"rotaton": 10})
    with pytest.raises(ValueError, match="scale"):
        check_augment({"scale": (1.5, 0.5)})
    with pytest.raises(ValueError, match="flip"):
        check_augment({"flip": 2})


def _bad_coco(tmp_path):
    """A small COCO file with one good image and every kind of other annotation."""
    img = tmp_path / "images"
    img.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), np.uint8)).save(img / "ok.jpg", quality=95)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), np.uint8)).save(img / "empty.jpg", quality=95)
    (img / "trunc.jpg").write_bytes((img / "ok.jpg").read_bytes()[:300])

    def ann(i, image_id, kps=((20, 10), (30, 20), (40, 30)), **over):
        kp = [0] * 51
        for j, (x, y) in enumerate(kps):
            kp[3 * j: 3 * j + 3] = [x, y, 2]
        a = {"id": i, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": [10, 5, 40, 40],
             "area": 900.0, "keypoints": kp, "num_keypoints": len(kps),
             "segmentation": [[10, 5, 50, 5, 50, 45, 10, 45]]}
        a.update(over)
        return a

    anns = [
        ann(1, 1), ann(2, 1, bbox=[30, 20, 20, 20]),
        ann(3, 1, iscrowd=1, segmentation={"counts": [0, 80 * 60], "size": [60, 80]}),  # RLE crowd
        ann(4, 1, (), num_keypoints=0),                                     # polygon, no keypoints
        ann(5, 1, (), num_keypoints=0, segmentation=[]),                   # no segmentation: box
        ann(6, 1, keypoints=["x"] * 51),                                   # invalid keypoints
        ann(7, 1, (), num_keypoints=0, segmentation=[], bbox=[1, 2, "?", 4]),  # nothing usable
        ann(8, 3),                                                         # on a truncated image
    ]
    data = {"images": [{"id": 1, "file_name": "ok.jpg", "width": 80, "height": 60},
                       {"id": 2, "file_name": "empty.jpg", "width": 80, "height": 60},
                       {"id": 3, "file_name": "trunc.jpg", "width": 80, "height": 60}],
            "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, img


def test_records_count_every_bad_input(tmp_path):
    path, img = _bad_coco(tmp_path)
    rec = read_coco_images(path, img, cache_dir=tmp_path / "cache", progress=False)
    assert len(rec) == 1 and rec.num_people.tolist() == [2] and rec.ann_ids[0].tolist() == [1, 2]
    assert dict(rec.ignored) == {CROWD: 1, NO_KEYPOINTS: 2, BAD_KEYPOINTS: 1}
    assert rec.num_ignore.tolist() == [4]
    assert rec.skipped[NO_KEYPOINTS] == 1          # no segmentation and an invalid box: nothing to ignore
    assert rec.skipped[FIX_REGION_BOX] == 1
    assert rec.skipped[NO_PEOPLE] == 1 and rec.skipped["image unreadable"] == 1
    assert BAD_BOX not in rec.skipped
    with Image.open(rec.ignore_paths[0]) as im:
        assert np.asarray(im).min() == 255      # the crowd RLE covers the whole image
    assert "ignore regions" in rec.summary() and "image unreadable: 1" in rec.summary()
