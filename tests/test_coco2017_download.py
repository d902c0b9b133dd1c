"""`--data coco2017` on a machine that has only the repository: the archives come from their
URLs (here a local HTTP server on 127.0.0.1 serving tiny stand-ins of the official
archives), are checked against their size and md5, resumed after an interruption,
extracted into the kpose cache once and read like any COCO spec."""
import hashlib
import io
import json
import zipfile

import pytest

from kpose.data import coco2017
from kpose.data.coco2017 import Archive, ensure_coco2017
from kpose.data.synthetic import generate

from test_weights_download import _Server


def _zip(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """Archives laid out like the official ones, with a few synthetic people each."""
    root = tmp_path_factory.mktemp("coco_stand_in")
    bodies = {}
    anns = {}
    for split, seed in (("train", 1), ("val", 2)):
        ann = generate(root, 3, seed=seed, split=split, progress=False)
        anns[f"annotations/person_keypoints_{split}2017.json"] = ann.read_bytes()
        bodies[split] = _zip({f"{split}2017/{p.name}": p.read_bytes()
                              for p in sorted((root / split).glob("*.jpg"))})
    anns["annotations/instances_val2017.json"] = b"{}"  # not extracted: kpose reads the keypoints only
    bodies["annotations"] = _zip(anns)
    return bodies


def _table(server, bodies) -> dict:
    return {k: Archive(server.url + k + ".zip", len(b), hashlib.md5(b).hexdigest()) for k, b in bodies.items()}


def test_downloaded_once_checked_and_extracted(stand_ins, tmp_path, monkeypatch):
    server = _Server({k + ".zip": b for k, b in stand_ins.items()})
    try:
        monkeypatch.setattr(coco2017, "ARCHIVES", _table(server, stand_ins))
        ann, images = ensure_coco2017("val", root=tmp_path, progress=False)
        assert ann == tmp_path / "annotations" / "person_keypoints_val2017.json"
        data = json.loads(ann.read_text())
        assert data["annotations"] and all((images / im["file_name"]).is_file() for im in data["images"])
        assert not (tmp_path / "annotations" / "instances_val2017.json").exists()
        assert not list(tmp_path.glob("*.zip*"))  # archives removed once extracted
        fetched = len(server.requests)
        assert ensure_coco2017("val", root=tmp_path, progress=False) == (ann, images)
        assert len(server.requests) == fetched  # cached: nothing fetched again
        ensure_coco2017("train", root=tmp_path, progress=False)  # its annotations came with val's
        assert [p for p, _ in server.requests[fetched:]] == ["/train.zip"]
    finally:
        server.close()


def test_an_interrupted_download_resumes(stand_ins, tmp_path, monkeypatch):
    server = _Server({k + ".zip": b for k, b in stand_ins.items()})
    try:
        table = _table(server, stand_ins)
        monkeypatch.setattr(coco2017, "ARCHIVES", table)
        ensure_coco2017("val", root=tmp_path, progress=False)
        body = stand_ins["train"]
        (tmp_path / "train.zip.part").write_bytes(body[:len(body) // 2])  # a killed download
        server.requests.clear()
        _, images = ensure_coco2017("train", root=tmp_path, progress=False)
        assert server.requests == [("/train.zip", f"bytes={len(body) // 2}-")]
        assert len(list(images.glob("*.jpg"))) == 3
    finally:
        server.close()


def test_a_corrupt_archive_names_the_file_and_keeps_nothing(stand_ins, tmp_path, monkeypatch):
    bad = bytearray(stand_ins["annotations"])
    bad[100] ^= 0xFF
    server = _Server({"annotations.zip": bytes(bad)})
    try:
        monkeypatch.setattr(coco2017, "ARCHIVES", _table(server, {**stand_ins}))
        with pytest.raises(ValueError, match=r"annotations\.zip downloaded from http://127\.0\.0\.1:\d+/"
                                             r"annotations\.zip has md5 [0-9a-f]{32}, expected [0-9a-f]{32}"):
            ensure_coco2017("val", root=tmp_path, progress=False)
        assert not list(tmp_path.glob("*.zip*")) and not (tmp_path / "annotations").exists()
    finally:
        server.close()


def test_offline_names_the_url_and_the_manual_step(tmp_path, monkeypatch):
    monkeypatch.setattr(coco2017, "ARCHIVES", {k: Archive(f"http://127.0.0.1:9/{k}.zip", 10, "0" * 32)
                                               for k in ("annotations", "train", "val")})
    with pytest.raises(FileNotFoundError, match=r"http://127\.0\.0\.1:9/annotations\.zip.*fetch it by hand "
                                                r"from https://cocodataset\.org/#download into"):
        ensure_coco2017("val", root=tmp_path, progress=False)


def test_the_pinned_table_is_the_official_one():
    assert coco2017.ARCHIVES["train"].url == "http://images.cocodataset.org/zips/train2017.zip"
    assert coco2017.ARCHIVES["val"].size == 815585330


def test_coco2017_is_a_data_spec(stand_ins, tmp_path, monkeypatch):
    from kpose.data.sources import load_images, load_instances, parse_data_spec

    server = _Server({k + ".zip": b for k, b in stand_ins.items()})
    try:
        monkeypatch.setattr(coco2017, "ARCHIVES", _table(server, stand_ins))
        monkeypatch.setenv("KPOSE_CACHE", str(tmp_path))
        assert parse_data_spec("coco2017-val") == {"format": "coco2017", "split": "val"}
        train, val = load_instances("coco2017", "train", progress=False), load_instances("coco2017", "val",
                                                                                           progress=False)
        assert train.ann_file.endswith("person_keypoints_train2017.json")
        assert val.ann_file.endswith("person_keypoints_val2017.json") and len(val) > 0
        # "coco2017-val" is val2017 whichever split asks; bottom-up reads whole images from it.
        assert load_images({"train": "coco2017", "val": "coco2017-val"}, "val", progress=False).ann_file \
            == val.ann_file
        assert str(tmp_path / "coco2017") in val.ann_file
    finally:
        server.close()
