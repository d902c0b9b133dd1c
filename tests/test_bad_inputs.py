"""Bad input is either a DataError that names file, field and fix, or a counted skip; never silent."""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from kpose.data import coco as coco_mod
from kpose.data import image_check
from kpose.data import images as images_mod
from kpose.data.coco import read_coco
from kpose.data.images import DataError, ImageError, load_image
from kpose.data.mpii import read_mpii
from kpose.data.sources import parse_data_spec

W, H = 64, 48
BRIGHT, DARK = 220, 30


def pattern(w: int = W, h: int = H) -> np.ndarray:
    """Left half bright, right half dark: a rotation is visible in the pixels."""
    a = np.full((h, w, 3), DARK, np.uint8)
    a[:, : w // 2] = BRIGHT
    return a


def exif_jpeg(path: Path, orientation: int) -> None:
    img = Image.fromarray(pattern())
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, quality=95, exif=exif)


def make_images(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pattern()).save(d / "ok.jpg", quality=95)
    data = (d / "ok.jpg").read_bytes()
    (d / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (d / "garbage.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 700, np.uint8).tobytes())
    Image.fromarray(pattern()[..., 0]).save(d / "gray.jpg", quality=95)
    rgba = np.dstack([pattern(), np.full((H, W), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    Image.fromarray(pattern()).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    exif_jpeg(d / "exif6.jpg", 6)
    exif_jpeg(d / "exif_stored.jpg", 6)
    Image.fromarray(pattern()[..., 0].astype(np.uint16) * 257).save(d / "gray16.png")
    Image.fromarray(pattern()).save(d / "mismatch.jpg", quality=95)
    pal = Image.fromarray(pattern()).convert("P")
    pal.save(d / "palette_t.png", transparency=0)


def keypoints(points: dict[int, tuple[float, float]]) -> list[float]:
    kp = [0] * 51
    for i, (x, y) in points.items():
        kp[3 * i: 3 * i + 3] = [x, y, 2]
    return kp


GOOD = {0: (20, 10), 5: (15, 20), 6: (30, 20)}


def person(ann_id: int, image_id: int, kps=None, bbox=(10, 5, 30, 40), **over) -> dict:
    kp = keypoints(GOOD if kps is None else kps)
    ann = {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": list(bbox),
           "area": 600.0, "keypoints": kp, "num_keypoints": sum(v > 0 for v in kp[2::3]),
           "segmentation": [[10, 5, 40, 5, 40, 45, 10, 45]]}
    ann.update(over)
    return ann


FILES = {1: "ok.jpg", 2: "trunc.jpg", 3: "garbage.jpg", 4: "gray.jpg", 5: "rgba.png", 6: "cmyk.jpg",
         7: "exif6.jpg", 8: "gray16.png", 9: "missing.jpg", 10: "mismatch.jpg", 11: "exif_stored.jpg",
         12: "palette_t.png"}


def coco_dict() -> dict:
    images = []
    for i, name in FILES.items():
        w, h = (W, H)
        if name == "exif6.jpg":
            w, h = H, W  # annotated on the EXIF-rotated (portrait) view
        if name == "mismatch.jpg":
            w, h = 100, 100
        images.append({"id": i, "file_name": name, "width": w, "height": h})
    anns = [person(i, i) for i in FILES if i != 7]
    # On the portrait image, y = 55 exists only in the rotated 48x64 frame.
    anns.append(person(7, 7, {0: (10, 55), 5: (20, 30)}, bbox=(5, 20, 30, 40)))
    no_kp = person(101, 1, {}, num_keypoints=0)
    crowd = person(102, 1, iscrowd=1)
    outside = person(103, 1, {**GOOD, 9: (200, 10)})
    zero_box = person(104, 1, bbox=(10, 10, 0, 20))
    no_area = person(105, 1)
    del no_area["area"]
    all_outside = person(106, 1, {0: (500, 500), 1: (-50, 10)})
    box_outside = person(107, 1, bbox=(100, 100, 10, 10))
    anns += [no_kp, crowd, outside, zero_box, no_area, all_outside, box_outside]
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(coco_mod.COCO17.keypoints)}]}


@pytest.fixture()
def dataset(tmp_path):
    make_images(tmp_path / "images")
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(coco_dict()))
    return ann, tmp_path / "images", tmp_path / "cache"


def test_bad_samples_are_skipped_and_counted(dataset, caplog):
    ann, image_dir, cache = dataset
    with caplog.at_level("WARNING"):
        inst = read_coco(ann, image_dir, cache_dir=cache, progress=False)
    assert sorted(inst.ann_ids.tolist()) == [1, 4, 5, 6, 7, 8, 11, 12, 103, 105]
    assert dict(inst.skipped) == {
        images_mod.UNREADABLE: 2, images_mod.MISSING: 1, images_mod.SIZE_MISMATCH: 1,
        coco_mod.CROWD: 1, coco_mod.NO_KEYPOINTS: 1, coco_mod.EMPTY_BOX: 2,
        coco_mod.NO_KEYPOINTS_INSIDE: 1, coco_mod.FIX_OUTSIDE: 1, coco_mod.FIX_AREA_SEG: 1,
    }
    dropped = sum(c for r, c in inst.skipped.items() if not r.startswith("warning:"))
    assert len(inst) + dropped == len(coco_dict()["annotations"])  # every annotation accounted for
    # The problems are logged with the file names, plus the summary.
    for name in ("trunc.jpg", "garbage.jpg", "missing.jpg", "mismatch.jpg"):
        assert name in caplog.text
    assert "skipped" in caplog.text

    row = {int(a): i for i, a in enumerate(inst.ann_ids)}
    assert inst.keypoints[row[103], 9, 2] == 0  # outside -> v=0, the rest kept
    assert (inst.keypoints[row[103], :, 2] > 0).sum() == 3
    assert inst.areas[row[105]] == pytest.approx(30 * 40)  # from the polygon
    assert inst.areas[row[1]] == pytest.approx(600)


def test_hot_path_images_are_clean(dataset):
    ann, image_dir, cache = dataset
    inst = read_coco(ann, image_dir, cache_dir=cache, progress=False)
    paths = {int(a): p for a, p in zip(inst.ann_ids, inst.image_paths)}
    assert paths[1] == str(image_dir / "ok.jpg") and paths[4] == str(image_dir / "gray.jpg")
    for a in (5, 6, 7, 8, 11, 12):  # RGBA, CMYK, EXIF x2, 16-bit, palette+alpha: normalised copies
        assert Path(paths[a]).parent == cache / "images"
    for i, p in enumerate(inst.image_paths):
        with Image.open(p) as img:
            assert img.format in ("JPEG", "PNG") and img.mode in ("RGB", "L")
            assert img.getexif().get(0x0112, 1) == 1
            assert (img.height, img.width) == tuple(inst.image_sizes[i])
    # EXIF rule: portrait JSON dims -> EXIF applied (left half became the top half) ...
    rotated = load_image(paths[7])
    assert rotated.shape == (W, H, 3)
    assert rotated[: W // 2 - 4].mean() > 180 and rotated[W // 2 + 4:].mean() < 80
    # ... landscape JSON dims -> stored orientation kept, tag dropped.
    stored = load_image(paths[11])
    assert stored.shape == (H, W, 3) and stored[:, : W // 2 - 4].mean() > 180
    assert load_image(paths[8]).shape == (H, W, 3)


def test_clean_ann_file_for_evaluation(dataset):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ann, image_dir, cache = dataset
    inst = read_coco(ann, image_dir, cache_dir=cache, progress=False)
    assert inst.ann_file != str(ann) and Path(inst.ann_file).parent == cache / "coco"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(inst.ann_file)
    assert sorted(gt.getImgIds()) == [1, 4, 5, 6, 7, 8, 11, 12]
    ids = set(gt.getAnnIds())
    assert {101, 102, 103, 105} <= ids and not {2, 3, 9, 10, 104, 106, 107} & ids
    assert gt.anns[103]["keypoints"][9 * 3 + 2] == 0 and gt.anns[103]["num_keypoints"] == 3
    assert gt.anns[105]["area"] > 0
    results = [{"image_id": int(i), "category_id": 1, "score": 1.0,
                "keypoints": inst.keypoints[k].reshape(-1).tolist()} for k, i in enumerate(inst.image_ids)]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.evaluate(); ev.accumulate(); ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


@pytest.mark.parametrize("name,check", [
    ("gray.jpg", lambda a: np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])),
    ("rgba.png", lambda a: abs(int(a[0, 0, 0]) - BRIGHT * 128 // 255) <= 1),  # composited over black
    ("cmyk.jpg", lambda a: np.abs(a.astype(int) - pattern()).mean() < 6),
    ("gray16.png", lambda a: np.abs(a[..., 0].astype(int) - pattern()[..., 0]).max() <= 1),
    ("palette_t.png", lambda a: a.shape == (H, W, 3)),
    ("exif6.jpg", lambda a: a.shape == (W, H, 3) and a[:8].mean() > 180),
])
def test_load_image_modes(tmp_path, name, check):
    make_images(tmp_path)
    a = load_image(tmp_path / name)
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[-1] == 3
    assert check(a)


def test_load_image_exif_off(tmp_path):
    make_images(tmp_path)
    assert load_image(tmp_path / "exif6.jpg", apply_exif=False).shape == (H, W, 3)


@pytest.mark.parametrize("name,match", [("trunc.jpg", "truncated"), ("garbage.jpg", "not an image"),
                                        ("nothere.jpg", "not found")])
def test_unreadable_images_raise_naming_the_file(tmp_path, monkeypatch, name, match):
    make_images(tmp_path)
    # Even when other code lets Pillow pad truncated files, kpose refuses them.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageError, match=match) as err:
        load_image(tmp_path / name)
    assert name in str(err.value) and "Fix" in str(err.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_load_image_arrays():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert load_image(gray).shape == (3, 4, 3)
    rgba = np.full((2, 2, 4), 255, np.uint8)
    rgba[..., 3] = 0
    assert load_image(rgba).max() == 0
    assert load_image(np.full((2, 2, 3), 0.5, np.float32)).max() == 128


def test_check_images_cache_is_invalidated_by_changes(tmp_path, monkeypatch):
    make_images(tmp_path / "im")
    paths = [tmp_path / "im" / n for n in ("ok.jpg", "cmyk.jpg", "trunc.jpg")]
    ok, problems = image_check.check_images(paths, cache_dir=tmp_path / "c", progress=False)
    assert set(ok) == {str(paths[0]), str(paths[1])} and list(problems) == [str(paths[2])]
    assert problems[str(paths[2])].startswith(images_mod.UNREADABLE)
    calls = []
    real = image_check._inspect
    monkeypatch.setattr(image_check, "_inspect", lambda *a: calls.append(a[0]) or real(*a))
    assert image_check.check_images(paths, cache_dir=tmp_path / "c", progress=False) == (ok, problems)
    assert calls == []
    Image.fromarray(pattern()).save(paths[2])  # the broken file gets replaced
    os.utime(paths[2], ns=(1, 1))
    ok2, problems2 = image_check.check_images(paths, cache_dir=tmp_path / "c", progress=False)
    assert calls == [str(paths[2])] and not problems2 and str(paths[2]) in ok2


def test_check_images_size_rule(tmp_path):
    exif_jpeg(tmp_path / "e.jpg", 6)
    p = str(tmp_path / "e.jpg")
    ok, _ = image_check.check_images([p], {p: (W, H)}, cache_dir=tmp_path / "c", progress=False)
    assert load_image(ok[p]).shape == (H, W, 3)
    ok, _ = image_check.check_images([p], {p: (H, W)}, cache_dir=tmp_path / "c", progress=False)
    assert load_image(ok[p]).shape == (W, H, 3)
    ok, problems = image_check.check_images([p], {p: (10, 10)}, cache_dir=tmp_path / "c", progress=False)
    assert not ok and problems[p].startswith(images_mod.SIZE_MISMATCH) and "10x10" in problems[p]


# -- structural errors: fail fast, name file, field and fix --------------------------------------

def write(tmp_path: Path, data, name: str = "ann.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    (tmp_path / "images").mkdir(exist_ok=True)
    return p


def test_data_error_is_value_error():
    assert issubclass(DataError, ValueError) and issubclass(ImageError, DataError)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DataError, match="not found") as err:
        read_coco(tmp_path / "nope.json", tmp_path)
    assert "nope.json" in str(err.value) and "Fix" in str(err.value)


def test_not_json(tmp_path):
    with pytest.raises(DataError, match="not valid JSON") as err:
        read_coco(write(tmp_path, "{not json"), tmp_path / "images")
    assert "ann.json" in str(err.value) and "line 1" in str(err.value)


@pytest.mark.parametrize("field", ["images", "annotations", "categories"])
def test_missing_top_level_field(tmp_path, field):
    data = coco_dict()
    del data[field]
    with pytest.raises(DataError) as err:
        read_coco(write(tmp_path, data), tmp_path / "images")
    msg = str(err.value)
    assert "ann.json" in msg and f"'{field}'" in msg and "Fix" in msg


@pytest.mark.parametrize("field", ["keypoints", "bbox", "image_id"])
def test_annotation_missing_field(tmp_path, field):
    data = coco_dict()
    del data["annotations"][3][field]
    with pytest.raises(DataError) as err:
        read_coco(write(tmp_path, data), tmp_path / "images")
    msg = str(err.value)
    assert "ann.json" in msg and f"'{field}'" in msg and "Fix" in msg and "id 4" in msg


def test_image_missing_size(tmp_path):
    data = coco_dict()
    del data["images"][0]["width"]
    with pytest.raises(DataError, match="'width'"):
        read_coco(write(tmp_path, data), tmp_path / "images")


def test_no_person_category(tmp_path):
    data = coco_dict()
    data["categories"][0]["name"] = "people"
    with pytest.raises(DataError, match="'person'.*people"):
        read_coco(write(tmp_path, data), tmp_path / "images")


def test_wrong_skeleton_suggests_the_right_one(tmp_path):
    with pytest.raises(DataError, match="skeleton='coco17'"):
        read_coco(write(tmp_path, coco_dict()), tmp_path / "images", skeleton="mpii16")
    data = coco_dict()
    del data["categories"][0]["keypoints"]
    with pytest.raises(DataError, match="keypoints.*skeleton='coco17'"):
        read_coco(write(tmp_path, data), tmp_path / "images", skeleton="mpii16")


def test_duplicate_ids(tmp_path):
    data = coco_dict()
    data["annotations"][1]["id"] = data["annotations"][0]["id"]
    with pytest.raises(DataError, match="duplicate ids in 'annotations'"):
        read_coco(write(tmp_path, data), tmp_path / "images")


def test_missing_image_dir(tmp_path):
    with pytest.raises(DataError, match="image directory"):
        read_coco(write(tmp_path, coco_dict()), tmp_path / "no_such_dir")


def test_check_images_off_still_counts_missing_files(dataset):
    ann, image_dir, cache = dataset
    inst = read_coco(ann, image_dir, cache_dir=cache, check_images=False)
    assert inst.skipped[images_mod.MISSING] == 1


def test_unknown_spec():
    with pytest.raises(DataError, match="synthetic.*coco:ANN_JSON:IMAGE_DIR.*mpii:LIST_JSON:IMAGE_DIR"):
        parse_data_spec("yolo:a:b")


# -- MPII ---------------------------------------------------------------------------------------

def mpii_record(image: str, joints=None, vis=None, **over) -> dict:
    joints = joints or [[20.0 + i, 10.0 + 2 * i] for i in range(16)]
    rec = {"image": image, "center": [32.0, 24.0], "scale": 0.2, "joints": joints,
           "joints_vis": vis if vis is not None else [1] * 16}
    rec.update(over)
    return rec


def test_mpii_bad_samples(tmp_path):
    make_images(tmp_path / "images")
    far = [[20.0 + i, 10.0 + 2 * i] for i in range(16)]
    far[3] = [5000.0, 10.0]
    records = [mpii_record("ok.jpg"), mpii_record("ok.jpg", vis=[0] * 16), mpii_record("ok.jpg", joints=far),
               mpii_record("missing.jpg"), mpii_record("trunc.jpg"), mpii_record("ok.jpg", scale=0),
               mpii_record("cmyk.jpg", vis=[1] * 8 + [0] + [1] * 7)]
    inst = read_mpii(write(tmp_path, records, "mpii.json"), tmp_path / "images", cache_dir=tmp_path / "c",
                     progress=False)
    assert inst.ann_ids.tolist() == [1, 3, 7]
    assert dict(inst.skipped) == {
        coco_mod.NO_KEYPOINTS: 1, images_mod.MISSING: 1, images_mod.UNREADABLE: 1,
        "invalid center or scale": 1, coco_mod.FIX_OUTSIDE: 1,
        "warning: no head size (head_top or upper_neck unannotated)": 1,
    }
    assert inst.keypoints[1, 3, 2] == 0
    assert np.isnan(inst.head_sizes[2]) and inst.head_sizes[0] > 0
    assert Path(inst.image_paths[2]).parent == tmp_path / "c" / "images"  # CMYK normalised


@pytest.mark.parametrize("field", ["joints", "center", "scale", "image", "joints_vis"])
def test_mpii_missing_field(tmp_path, field):
    rec = mpii_record("ok.jpg")
    del rec[field]
    with pytest.raises(DataError) as err:
        read_mpii(write(tmp_path, [mpii_record("ok.jpg"), rec], "mpii.json"), tmp_path / "images")
    msg = str(err.value)
    assert "mpii.json" in msg and f"'{field}'" in msg and "record [1]" in msg and "Fix" in msg


def test_mpii_wrong_format(tmp_path):
    with pytest.raises(DataError, match="COCO format"):
        read_mpii(write(tmp_path, coco_dict(), "mpii.json"), tmp_path / "images")
    with pytest.raises(DataError, match="MPII list format"):
        read_coco(write(tmp_path, [mpii_record("ok.jpg")]), tmp_path / "images")
    with pytest.raises(DataError, match="not found.*Fix"):
        read_mpii(tmp_path / "absent.json", tmp_path / "images")
