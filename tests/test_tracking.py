"""kpose.tracking: stable ids across frames (OKS or IoU, greedy), track ageing in
milliseconds, and One Euro smoothing scaled by the person's size."""
import numpy as np
import pytest

from kpose.pose_model import Pose
from kpose.skeletons import COCO17
from kpose.tracking import OneEuroFilter, Tracker, TrackerConfig, oks

SIGMAS = COCO17.sigmas_array()
# A standing COCO-17 person, 100 px tall, feet at y=0, centred on x=0.
TEMPLATE = np.array([[0, -95], [-3, -98], [3, -98], [-7, -96], [7, -96], [-14, -80], [14, -80],
                     [-18, -60], [18, -60], [-20, -42], [20, -42], [-9, -48], [9, -48],
                     [-9, -25], [9, -25], [-9, 0], [9, 0]], np.float64)


def _person(x: float, y: float, scale: float = 1.0, noise: float = 0.0, rng=None) -> Pose:
    xy = TEMPLATE * scale + [x, y]
    if noise:
        xy = xy + rng.normal(0, noise, xy.shape)
    kp = np.concatenate([xy, np.full((17, 1), 0.9)], -1).astype(np.float32)
    return Pose(kp, 0.9, np.zeros(4, np.float32), COCO17.keypoints)


def test_one_euro_keeps_constants_and_removes_jitter():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    assert np.array_equal(f(np.full((3, 2), 5.0), 0.0), np.full((3, 2), 5.0))
    assert np.allclose(f(np.full((3, 2), 5.0), 33.0), 5.0)
    rng = np.random.default_rng(0)
    raw = 100 + rng.normal(0, 2.0, (120, 17, 2))
    f = OneEuroFilter(min_cutoff=1.0, beta=10.0)
    out = np.stack([f(r, 1000 * i / 30, scale=100.0) for i, r in enumerate(raw)])
    jitter = lambda a: np.abs(np.diff(a[30:], 2, axis=0)).mean()  # noqa: E731
    assert jitter(out) < 0.3 * jitter(raw)
    # beta lets fast motion through: a ramp lags less with beta than without.
    ramp = np.arange(60, dtype=np.float64)[:, None, None] * np.full((1, 1, 2), 10.0)
    lag = {}
    for beta in (0.0, 10.0):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        out = np.stack([f(r, 1000 * i / 30, scale=100.0) for i, r in enumerate(ramp)])
        lag[beta] = float((ramp - out)[-1].mean())
    assert 0 < lag[10.0] < 0.5 * lag[0.0]


def test_ids_stay_with_people_who_pass_each_other():
    tracker = Tracker(SIGMAS, TrackerConfig(smoothing=False))
    rng = np.random.default_rng(1)
    for i in range(40):
        a = _person(50 + 8 * i, 300, noise=1.0, rng=rng)          # walks right
        b = _person(370 - 8 * i, 360, scale=1.1, noise=1.0, rng=rng)  # walks left, nearer
        people = tracker.update([b, a] if i % 2 else [a, b], 33.0 * i)
        ids = {float(p.keypoints[15, 1]) < 330: p.track_id for p in people}  # by the feet
        assert ids == {True: 1, False: 2}, (i, ids)


def test_tracks_end_after_max_age_ms_and_ids_are_not_reused():
    tracker = Tracker(SIGMAS, TrackerConfig(max_age_ms=500, smoothing=False))
    assert tracker.update([_person(100, 300)], 0.0)[0].track_id == 1
    assert tracker.update([], 400.0) == []
    assert tracker.update([_person(101, 300)], 450.0)[0].track_id == 1   # 450 ms unseen: same person
    assert tracker.update([_person(101, 300)], 1000.0)[0].track_id == 2  # 550 ms: a new track
    tracker.reset()
    assert tracker.update([_person(101, 300)], 0.0)[0].track_id == 1


def test_max_tracks_and_box_similarity():
    tracker = Tracker(None, TrackerConfig(similarity="box", max_tracks=2, smoothing=False))
    out = tracker.update([_person(100, 300), _person(300, 300), _person(500, 300)], 0.0)
    assert [p.track_id for p in out] == [1, 2, None]
    out = tracker.update([_person(505, 300), _person(103, 300)], 33.0)
    assert [p.track_id for p in out] == [None, 1]
    with pytest.raises(ValueError, match="sigmas"):
        Tracker(None)
    with pytest.raises(ValueError, match="similarity"):
        TrackerConfig(similarity="overlap")


def test_smoothing_is_relative_to_the_person_size():
    """A far (small) and a near (large) person with the same relative jitter are smoothed to
    the same relative jitter; a jump of more than `outlier` sizes restarts the filter."""
    rng = np.random.default_rng(2)
    relative = {}
    for scale in (0.5, 3.0):
        tracker = Tracker(SIGMAS)
        out = [tracker.update([_person(400, 500, scale, noise=1.5 * scale, rng=rng)], 33.0 * i)[0]
               for i in range(90)]
        xy = np.stack([p.keypoints[:, :2] for p in out])
        assert len({p.track_id for p in out}) == 1
        relative[scale] = np.abs(np.diff(xy[20:], 2, axis=0)).mean() / scale
    assert abs(relative[0.5] - relative[3.0]) < 0.25 * relative[3.0]
    tracker = Tracker(SIGMAS, TrackerConfig(min_similarity=0.0))
    for i in range(5):
        tracker.update([_person(100, 300)], 33.0 * i)
    moved = tracker.update([_person(200, 300)], 200.0)[0]   # a 100 px jump (one person size)
    assert moved.track_id == 1 and np.allclose(moved.keypoints[:, :2], TEMPLATE + [200, 300], atol=1e-4)


def test_oks_of_identical_and_distant_poses():
    a = _person(0, 0).keypoints
    assert oks(a, a, SIGMAS, 0.3, 4) == pytest.approx(1.0)
    assert oks(a, _person(500, 0).keypoints, SIGMAS, 0.3, 4) < 1e-6
    few = a.copy()
    few[3:, 2] = 0
    assert oks(a, few, SIGMAS, 0.3, 4) == 0.0


def test_predict_video_tracks_and_draws(shared, tmp_path):
    """`kpose predict VIDEO --track --smooth` on a real clip: an annotated .mp4 with every frame
    and the poses with their track ids; the most confident person keeps one id."""
    import json

    pytest.importorskip("av")
    import imageio.v3 as iio

    from kpose.cli import main

    video = shared / "data" / "videos" / "posetrack18_000001_mpiinew_test.mp4"
    model = shared / "peers" / "tf_pose_estimation" / "openpose_mobilenet_v2_small.pb"
    assert main(["predict", str(model), str(video), "--track", "--smooth", "--json", "--out", str(tmp_path)]) == 0
    out = tmp_path / f"{video.stem}_pose.mp4"
    frames = iio.imread(out, plugin="pyav")
    assert frames.shape[0] == 5 and frames.shape[1:3] == iio.imread(video, index=0, plugin="pyav").shape[:2]
    record = json.loads((tmp_path / f"{video.stem}_pose.json").read_text())
    assert [round(f["timestamp_ms"], 3) for f in record["frames"]] == [0.0, 33.333, 66.667, 100.0, 133.333]
    best = [max(f["poses"], key=lambda p: p["score"]) for f in record["frames"]]
    assert len({p["track_id"] for p in best}) == 1 and best[0]["track_id"] == 1
