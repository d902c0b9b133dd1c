"""Sharded TFRecords: `kpose data pack` and `--data tfrecord:DIR` (kpose.data.pack, shards, shard_stream).

Packing then reading gives the source reader's tables, bytes and ignore masks;
records are spread over the shards once each; both tasks train a step from the
shards and evaluate on them as on the source; the CLI packs; bad folders fail
with messages that name the file and the fix.
"""
from __future__ import annotations

import functools
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kpose
from kpose import evaluation
from kpose._tf import keras, tf
from kpose.cli import main
from kpose.codecs import HeatmapCodec, PafCodec
from kpose.data import synthetic
from kpose.data.bottom_up import bottom_up_dataset
from kpose.data.images import DataError, load_image
from kpose.data.json_stream import iter_object
from kpose.data.pack import pack
from kpose.data.pipeline import eval_dataset
from kpose.data.shard_refs import read_ref
from kpose.data.sources import load_images, load_instances
from kpose.data.tfrecords import INDEX, decode_record, verify_shards
from kpose.metrics import coco_keypoint_ap, coco_results
from kpose.models import build_network, get_family, network_outputs
from kpose.pose_model import PoseModel, model_config
from kpose.recipe import load_recipe
from kpose.skeletons import CMU18, COCO17
from kpose.training.targets import target_specs
from kpose.training.task_data import TASK_DATA
from kpose.training.trainer import make_trainer
from kpose.transforms import apply_affine

INSTANCE_COLUMNS = ("image_ids", "ann_ids", "bboxes", "keypoints", "areas", "image_sizes", "head_sizes")
IMAGE_COLUMNS = ("image_ids", "image_sizes", "keypoints", "num_people", "bboxes", "areas", "ann_ids", "num_ignore")


def coco_spec(shared: Path, split: str) -> str:
    root = shared / "data" / "coco_mini"
    return f"coco:{root / 'annotations' / f'person_keypoints_{split}2017.json'}:{root / f'{split}2017'}"


@pytest.fixture(scope="module")
def packed(shared, tmp_path_factory):
    """coco_mini train (80 images, 28 with people) in shards of 30 images."""
    spec = coco_spec(shared, "train")
    out = tmp_path_factory.mktemp("shards") / "train"
    return spec, out, pack(spec, out, shard_size=30, progress=False)


def records(folder: Path, index: dict) -> list[tuple[str, dict]]:
    """(shard file name, decoded record) of every record, in shard order."""
    k = len(index["skeleton"]["keypoints"])
    return [(s["file"], decode_record(r.numpy(), k, s["file"]))
            for s in index["shards"] for r in tf.data.TFRecordDataset(str(folder / s["file"]))]


def assert_same_tables(source: str, shards: str, split: str = "train") -> None:
    a, b = load_instances(source, split, progress=False), load_instances(shards, split)
    for column in INSTANCE_COLUMNS:
        np.testing.assert_array_equal(getattr(a, column), getattr(b, column), err_msg=column)
    assert a.skipped == b.skipped and a.skeleton == b.skeleton
    assert [open(p, "rb").read() for p in a.image_paths] == [read_ref(r) for r in b.image_paths]
    A, B = load_images(source, split, progress=False), load_images(shards, split)
    for column in IMAGE_COLUMNS:
        np.testing.assert_array_equal(getattr(A, column), getattr(B, column), err_msg=column)
    assert A.skipped == B.skipped and A.ignored == B.ignored
    for pa, pb in zip(A.ignore_paths, B.ignore_paths):
        assert bool(pa) == bool(pb)
        if pa:
            np.testing.assert_array_equal(np.asarray(Image.open(pa)), np.asarray(Image.open(io.BytesIO(read_ref(pb)))))


def test_coco_round_trip_gives_the_readers_tables_bytes_and_masks(packed):
    spec, out, index = packed
    assert_same_tables(spec, f"tfrecord:{out}")
    assert index["counts"] == {"images": 80, "people": 86, "images_with_people": 28, "ignore_regions": 61,
                               "annotations": 172}
    assert index["source"] == spec and index["skeleton"]["name"] == "coco17"
    # The records themselves hold the same images and annotations, every person of each image.
    src = json.loads(Path(spec.split(":")[1]).read_text())
    by_image = {im["id"]: im for im in src["images"]}
    anns: dict = {}
    for a in src["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    for _, rec in records(out, index):
        im = by_image[rec["image/id"]]
        assert rec["image/file_name"].decode() == im["file_name"]
        assert rec["image/encoded"] == (Path(spec.split(":")[2]) / im["file_name"]).read_bytes()
        assert (rec["image/width"], rec["image/height"]) == (im["width"], im["height"])
        assert rec["person/id"].tolist() == [a["id"] for a in anns.get(im["id"], [])]
        assert rec["person/iscrowd"].tolist() == [a["iscrowd"] for a in anns.get(im["id"], [])]
        assert rec["person/num_keypoints"].tolist() == [a["num_keypoints"] for a in anns.get(im["id"], [])]


def test_records_are_spread_over_the_shards_once_each(packed):
    _, out, index = packed
    names = sorted(p.name for p in out.glob("*.tfrecord"))
    assert names == [f"train-{i:05d}-of-00003.tfrecord" for i in range(3)] == [s["file"] for s in index["shards"]]
    got = records(out, index)
    ids = [rec["image/id"] for _, rec in got]
    assert len(ids) == len(set(ids)) == 80
    assert [sum(f == s["file"] for f, _ in got) for s in index["shards"]] == [30, 30, 20]
    assert verify_shards(out) == {"images": 80, "people": 172}


def test_synthetic_round_trip(tmp_path, monkeypatch):
    # The real "synthetic" spec with a tiny dataset (the default one has 3000 images).
    monkeypatch.setattr(synthetic, "ensure_dataset", functools.partial(
        synthetic.ensure_dataset, num_train=4, num_val=3, workers=1, progress=False))
    spec = f"synthetic:{tmp_path / 'synthetic'}"
    index = pack(spec, tmp_path / "val", split="val", shard_size=2, progress=False)
    assert index["counts"]["images"] == 3 and len(index["shards"]) == 2 and index["split"] == "val"
    assert_same_tables(spec, f"tfrecord:{tmp_path / 'val'}", split="val")


def test_mpii_round_trip_trains_top_down_only(shared, tmp_path):
    root = shared / "data" / "mpii_samples"
    spec = f"mpii:{root / 'test_mpii.json'}:{root}"
    index = pack(spec, tmp_path / "mpii", progress=False)
    a, b = load_instances(spec, "train", progress=False), load_instances(f"tfrecord:{tmp_path / 'mpii'}", "train")
    for column in INSTANCE_COLUMNS:
        np.testing.assert_array_equal(getattr(a, column), getattr(b, column), err_msg=column)
    assert index["skeleton"]["name"] == "mpii16" and index["complete_images"] is False
    with pytest.raises(DataError, match="cannot train a bottom-up model"):
        load_images(f"tfrecord:{tmp_path / 'mpii'}", "train")


def test_streamed_crops_equal_the_file_crops(packed):
    spec, out, _ = packed
    a, b = load_instances(spec, "train", progress=False), load_instances(f"tfrecord:{out}", "train")
    pick = np.arange(0, len(a), 7)

    def crops(inst):
        got = {}
        for c, _, i in eval_dataset(inst.select(pick), (64, 48), 4):
            got.update(zip(i.numpy().tolist(), c.numpy()))
        return got

    from_files, from_shards = crops(a), crops(b)
    assert sorted(from_shards) == list(range(len(pick)))
    for i, crop in from_files.items():
        np.testing.assert_array_equal(crop, from_shards[i])
    # Single images (plots, PoseModel.predict) decode from a reference like a file.
    np.testing.assert_array_equal(load_image(b.image_paths[0]), load_image(a.image_paths[0]))


def train_step_from(spec: str, recipe: str, skeleton, size=(64, 64)) -> tuple:
    """The engine's data path (the task's load and batches) into one step of the recipe's
    network: (first batch, loss)."""
    cfg = load_recipe(recipe, {"model.input_size": list(size)})
    family = get_family(cfg["model"]["family"])
    task = TASK_DATA[family.task]
    data = task.load({"train": spec}, "train", skeleton, False)
    ncfg = {"family": family.name, "variant": cfg["model"]["variant"], "input_size": size,
            "skeleton": skeleton.to_dict()}
    specs = target_specs(network_outputs(ncfg), size, cfg["codec"]["sigma"], cfg["codec"]["paf_width"],
                         skeleton.num_keypoints)
    batch = next(iter(task.batches(data, size, specs, cfg, 4, seed=0)))
    trainer = make_trainer(build_network(ncfg, training_outputs=True), specs, cfg["loss"], 4)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    return batch, float(trainer.train_step(batch)["loss"])


def test_top_down_trains_a_step_from_shards(packed):
    _, out, _ = packed
    (crops, targets, _), loss = train_step_from(f"tfrecord:{out}", "efficientpose_rt", COCO17)
    assert crops.shape == (4, 64, 64, 3) and float(tf.reduce_max(crops)) > 50  # real pixels, not padding
    assert all(float(tf.reduce_max(t)) > 0.5 for t in targets.values())  # people in the crops
    assert np.isfinite(loss)


def test_bottom_up_trains_a_step_from_shards(packed):
    # openpose_lightweight has the CMU-18 skeleton: the COCO-17 shards are converted by name.
    _, out, _ = packed
    (images, targets, weights), loss = train_step_from(f"tfrecord:{out}", "openpose_lightweight", CMU18)
    assert images.shape == (4, 64, 64, 3) and float(tf.reduce_max(images)) > 50
    assert any(float(tf.reduce_max(t)) > 0.5 for t in targets.values())
    assert np.isfinite(loss)


def test_bottom_up_stream_gives_the_file_images_and_ignore_masks(packed):
    # Without augmentation each image is warped the same wherever it comes in the stream.
    spec, out, _ = packed
    still = {"scale": (1, 1), "rotation": 0, "flip": 0, "shift": 0}

    def samples(records) -> dict:
        got = {}
        ds = bottom_up_dataset(records, (64, 64), still, 4, seed=0, with_meta=True)
        for images, _, masks, meta in ds.take(12):
            got.update(zip(meta["index"].numpy().tolist(), zip(images.numpy(), masks.numpy())))
        return got

    from_files = samples(load_images(spec, "train", progress=False))
    from_shards = samples(load_images(f"tfrecord:{out}", "train"))
    common = sorted(set(from_files) & set(from_shards))
    assert len(common) >= 20
    for i in common:
        np.testing.assert_array_equal(from_files[i][0], from_shards[i][0])
        np.testing.assert_array_equal(from_files[i][1], from_shards[i][1])
    assert sum(from_shards[i][1].any() for i in common) >= 3  # images with ignore regions among them


def test_top_down_evaluates_from_shards_as_from_the_source(packed):
    """Crops -> encoded ground truth -> PoseModel.decode_crops -> OKS AP against the annotations
    file: from the shards (their crops, their annotations file) as from the source files."""
    spec, out, _ = packed
    size, hm = (96, 72), (24, 18)
    codec = HeatmapCodec(size, hm, 2.0)

    def ap(inst) -> float:
        model = PoseModel(None, model_config("efficientpose", "rt", size, inst.skeleton, codec))
        pred = np.zeros_like(inst.keypoints)
        for crops, mats, idx in eval_dataset(inst, size, batch_size=16):
            idx, mats = idx.numpy(), mats.numpy()
            kps = np.stack([apply_affine(inst.keypoints[i].astype(np.float64), m) for i, m in zip(idx, mats)])
            pred[idx] = model.decode_crops(codec.batch_encode(kps)[0], mats)
        return coco_keypoint_ap(inst.ann_file, coco_results(inst, pred), inst.skeleton.sigmas_array(),
                                image_ids=list(inst.image_ids))["AP"]

    on_shards = ap(load_instances(f"tfrecord:{out}", "train"))
    assert on_shards > 0.9  # keypoints outside the padded crop cannot be recovered
    assert on_shards == pytest.approx(ap(load_instances(spec, "train", progress=False)), abs=1e-9)


def test_bottom_up_evaluates_every_image_of_the_shards_as_of_the_source(packed, monkeypatch):
    """kpose.evaluate of a bottom-up model scores every image, people or not, against the
    annotations file: from shards the same images (same bytes) as from the source files."""
    spec, out, _ = packed
    calls = []

    def record(model, paths, ids, ann_file, skeleton, *args, **kw):
        calls.append((list(paths), list(ids), ann_file))
        return {"AP": 0.0}

    monkeypatch.setattr(evaluation, "evaluate_images", record)
    codec = PafCodec((64, 64), (8, 8), COCO17.limbs)
    model = PoseModel(None, model_config("openpose_lightweight", "default", (64, 64), COCO17, codec))
    on_shards = kpose.evaluate(model, data=f"tfrecord:{out}", progress=False)
    on_files = kpose.evaluate(model, data=spec, progress=False)
    assert on_shards == on_files and on_shards["images"] == 80 and on_shards["people_annotated"] == 86
    (shard_paths, shard_ids, shard_gt), (file_paths, file_ids, _) = calls
    assert shard_ids == file_ids and shard_gt == str(out / "train-annotations.json")
    assert [read_ref(p) for p in shard_paths] == [Path(p).read_bytes() for p in file_paths]


def test_cli_packs_and_reports(shared, tmp_path, capsys):
    out = tmp_path / "val"
    assert main(["data", "pack", coco_spec(shared, "val"), "--out", str(out), "--shard-size", "50",
                 "--split", "val", "--quiet"]) == 0
    printed = capsys.readouterr().out
    index = json.loads((out / INDEX).read_text())
    assert f"{index['counts']['images']} images" in printed and f"tfrecord:{out}" in printed
    assert len(index["shards"]) == math.ceil(79 / 50) and index["split"] == "val"
    assert all((out / s["file"]).is_file() for s in index["shards"])
    # Packing again replaces the set; a folder kpose did not write is refused.
    assert main(["data", "pack", coco_spec(shared, "val"), "--out", str(out), "--shard-size", "79",
                 "--split", "val", "--quiet"]) == 0
    assert sorted(p.name for p in out.glob("*.tfrecord")) == ["val-00000-of-00001.tfrecord"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    assert main(["data", "pack", coco_spec(shared, "val"), "--out", str(tmp_path / "mine"), "--quiet"]) == 1
    assert "holds no kpose-shards.json" in capsys.readouterr().err


def test_bad_shard_folders_name_the_file_and_the_fix(packed, tmp_path):
    _, out, index = packed
    with pytest.raises(DataError, match=r"no kpose-shards\.json.*Fix: pack"):
        load_instances(f"tfrecord:{tmp_path}", "train")
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in out.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    shard = broken / index["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit inside a record: its checksum fails
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"{shard.name}: record \d+ is corrupt.*Fix: pack"):
        verify_shards(broken)
    shard.write_bytes(bytes(data[:-100]))  # truncated: found when the folder is read, before training
    with pytest.raises(DataError, match=rf"{shard.name}: .* bytes, kpose-shards.json says"):
        load_instances(f"tfrecord:{broken}", "train")
    first = next(iter(tf.data.TFRecordDataset(str(out / index["shards"][0]["file"])))).numpy()
    example = tf.train.Example.FromString(first)
    del example.features.feature["image/encoded"]
    with pytest.raises(DataError, match="shard-x: record 0: the record lacks field 'image/encoded'"):
        decode_record(example.SerializeToString(), 17, "shard-x: record 0")
    assert decode_record(first, 17, "shard-x: record 0")["image/id"] > 0
    with pytest.raises(DataError, match="already a shard folder"):
        pack(f"tfrecord:{out}", tmp_path / "again", progress=False)


def test_streamed_json_reads_what_json_load_reads(tmp_path, monkeypatch):
    monkeypatch.setattr("kpose.data.json_stream.CHUNK", 5)  # every value crosses chunk boundaries
    data = {"info": {"v": 1.5e-3, "s": "é\\\"x"}, "images": [{"id": i, "n": "ü" * i} for i in range(9)],
            "annotations": [], "n": 12345678, "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "a.json"
    path.write_text("\ufeff" + json.dumps(data, indent=2), encoding="utf-8")
    got = {k: [e for e, _ in v] if k in ("images", "annotations") else v
           for k, v in iter_object(path, lambda k: k in ("images", "annotations"), "fix")}
    assert got == data
    path.write_text('{"images": [{"id": 1}, {"id": 2,, }]}')
    with pytest.raises(DataError, match="invalid JSON at character"):
        list(iter_object(path, lambda k: False, "fix"))
