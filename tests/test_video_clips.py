"""Synthetic video clips with known identities, and tracking measured on them with motmetrics."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kpose.data.images import DataError
from kpose.data.synthetic.clips import KINDS, generate_clip, generate_clips, read_clips
from kpose.skeletons import COCO17
from kpose.tracking import Tracker
from kpose.tracking_metrics import evaluate_tracker, lag, mot_summary, motion_errors, noisy_gt_poses

KP = {n: i for i, n in enumerate(COCO17.keypoints)}
N_CLIPS = len(KINDS)  # clips 0-2 of the default set: each kind of third person once


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    ann = generate_clips(root, n=N_CLIPS, seed=0)
    return {"ann": ann, "clips": read_clips(ann), "json": json.loads(ann.read_text())}


def _track(clips, noise=0.005, drop=0.0, min_visible=0, **config):
    """The tracker on lightly noised ground-truth poses (every annotated person), scored."""
    dets = {}
    for c in clips:
        rng = np.random.default_rng(c.id)
        dets[c.name] = [noisy_gt_poses(f, rng, noise, drop, min_visible) for f in c.frames]
    return evaluate_tracker(clips, dets, Tracker.for_skeleton(COCO17, **config))


def test_same_seed_same_bytes(tmp_path):
    a = generate_clip(tmp_path / "a", 1, seed=3, duration_s=0.5)
    b = generate_clip(tmp_path / "b", 1, seed=3, duration_s=0.5)
    c = generate_clip(tmp_path / "c", 1, seed=4, duration_s=0.5)
    assert a == b and a["annotations"] != c["annotations"]
    frames = sorted((tmp_path / "a" / "frames" / "clip_001").glob("*.jpg"))
    assert len(frames) == 15
    for f in frames:
        assert f.read_bytes() == (tmp_path / "b" / "frames" / "clip_001" / f.name).read_bytes()


def test_reader_round_trips_the_file(clips):
    data, read = clips["json"], clips["clips"]
    assert [c.name for c in read] == [v["name"] for v in data["videos"]]
    anns = {}
    for a in data["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    images = {(im["vid_id"], im["frame_id"]): im for im in data["images"]}
    for clip in read:
        assert len(clip.frames) == round(3.6 * clip.fps) == 108
        for frame in clip.frames[::17]:
            im = images[(clip.id, frame.frame_id)]
            assert frame.timestamp_ms == pytest.approx(1000 * frame.frame_id / clip.fps, abs=1e-3)
            assert frame.path.name == im["file_name"].split("/")[-1]
            want = sorted(anns.get(im["id"], []), key=lambda a: a["track_id"])
            assert frame.track_ids.tolist() == [a["track_id"] for a in want]
            np.testing.assert_allclose(frame.keypoints.reshape(len(want), -1), [a["keypoints"] for a in want])
            np.testing.assert_allclose(frame.boxes, np.reshape([a["bbox"] for a in want], (-1, 4)))
        image, gt = next(iter(clip))
        assert image.shape == (clip.height, clip.width, 3) and image.dtype == np.uint8 and gt.frame_id == 0


def test_reader_errors_name_the_file_and_the_fix(tmp_path, clips):
    bad = tmp_path / "still.json"
    bad.write_text(json.dumps({k: v for k, v in clips["json"].items() if k != "videos"}))
    with pytest.raises(DataError, match=r"still\.json.*'videos'.*Fix"):
        read_clips(bad)
    data = clips["json"]
    bad.write_text(json.dumps({**data, "images": [{k: v for k, v in data["images"][0].items() if k != "vid_id"}]}))
    with pytest.raises(DataError, match=r"still\.json: image 1 lacks \['vid_id'\]"):
        read_clips(bad)


def test_pycocotools_loads_the_file_and_scores_it_perfect(clips):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(clips["ann"]))
        dt = gt.loadRes([{**a, "score": 1.0} for a in clips["json"]["annotations"]])
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert len(gt.getAnnIds()) == len(clips["json"]["annotations"]) > 500
    assert ev.stats[0] == pytest.approx(1.0)


# pycocotools' own mask.decode trips NumPy 2's __array__ copy deprecation; not ours to fix
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def test_people_keep_their_body_across_frames(clips):
    """A track's torso keeps its length (walkers stay upright at a fixed distance), and the
    colour of its visible pixels names it among the clip's people in nearly every frame."""
    ann_by_image = {}
    for a in clips["json"]["annotations"]:
        ann_by_image.setdefault(a["image_id"], []).append(a)
    for clip, video in zip(clips["clips"], clips["json"]["videos"]):
        torso, colour = {}, {}
        images = [im for im in clips["json"]["images"] if im["vid_id"] == video["id"]]
        for frame, im in zip(clip.frames[::3], images[::3]):
            kp = frame.keypoints
            quad = [KP["left_shoulder"], KP["right_shoulder"], KP["left_hip"], KP["right_hip"]]
            for t, k in zip(frame.track_ids, kp):
                if (k[quad, 2] > 0).all():
                    d = np.linalg.norm(k[quad[:2], :2].mean(0) - k[quad[2:], :2].mean(0))
                    torso.setdefault(int(t), []).append(d)
            pixels = frame.image().reshape(-1, 3).astype(np.float64)
            for a in ann_by_image.get(im["id"], []):
                if a["area"] >= 300:
                    m = mask_utils.decode(a["segmentation"]).reshape(-1).astype(bool)
                    colour.setdefault(a["track_id"], []).append(pixels[m].mean(0))
        for t, d in torso.items():
            assert np.std(d) / np.mean(d) < 0.02, (clip.name, t)
        assert len({round(float(np.mean(d))) for d in torso.values()}) > 1  # people differ
        medians = {t: np.median(c, 0) for t, c in colour.items()}
        ids = list(medians)
        hits = [ids[int(np.argmin([np.linalg.norm(c - medians[u]) for u in ids]))] == t
                for t, cs in colour.items() for c in cs]
        assert np.mean(hits) > 0.95, (clip.name, np.mean(hits))


def test_people_cross_leave_and_come_back(clips):
    crossings, returns, enters, leaves = 0, 0, 0, 0
    for clip in clips["clips"]:
        overlap = 0.0
        for f in clip.frames:
            b = f.boxes.astype(np.float64)
            x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
            iw = np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None])
            ih = np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None])
            inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
            small = np.minimum(b[:, 2] * b[:, 3], (b[:, 2] * b[:, 3])[:, None])
            np.fill_diagonal(inter, 0)
            overlap = max(overlap, float((inter / small).max()) if len(b) > 1 else 0.0)
        crossings += overlap > 0.5          # one person mostly in front of another
        ids = np.unique(np.concatenate([f.track_ids for f in clip.frames]))
        for t in ids:
            seen = np.array([t in f.track_ids for f in clip.frames])
            first, last = np.flatnonzero(seen)[[0, -1]]
            returns += bool((~seen[first:last]).any())
            enters += bool(first > 0)
            leaves += bool(last < len(seen) - 1)
    assert crossings == N_CLIPS
    assert returns >= 1 and enters >= 2 and leaves >= 2


def test_tracker_on_ground_truth_poses_keeps_identities(clips):
    """motmetrics: no ID switch and MOTA > 0.95 on lightly noised ground-truth poses; only the
    person who comes back after more than the tracker's max_age changes id (switches_all)."""
    good = mot_summary(_track(clips["clips"], smoothing=False))
    assert good["num_switches"] == 0 and good["mota"] > 0.95 and good["idf1"] > 0.9
    assert good["switches_all"] >= 1
    bad = mot_summary(_track(clips["clips"], smoothing=False, min_similarity=0.99))
    assert bad["num_switches"] > 20 and bad["mota"] < 0.5


def test_smoothing_trades_jitter_for_lag(clips):
    off = _track(clips["clips"][:1], noise=0.02, smoothing=False)
    on = _track(clips["clips"][:1], noise=0.02)
    slow = _track(clips["clips"][:1], noise=0.02, beta=0.0)
    j_off, j_on, j_slow = (motion_errors(r)["jitter_px"] for r in (off, on, slow))
    lag_off, lag_on, lag_slow = (lag(r)["lag_ms"] for r in (off, on, slow))
    assert j_slow < j_on < 0.6 * j_off
    assert abs(lag_off) < 2.0 and 0 < lag_on < lag_slow and lag_slow > 33.0
