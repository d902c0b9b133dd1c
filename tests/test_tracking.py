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


def test_predict_video_tracks_and_draws(shared, tmp_path, capsys):
    """`kpose predict VIDEO --track --smooth` on a real clip: an annotated .mp4 with every frame
    and the poses with their track ids; the most confident person keeps one id."""
    import json

    pytest.importorskip("av")
    import imageio.v3 as iio

    from kpose.cli import main
    from kpose.data.video import read_video, video_frame_count

    videos = shared / "data" / "videos"
    for clip in ("posetrack18_000001_mpiinew_test.mp4", "mmpose_demo.mp4"):  # 30 and 5 fps
        assert video_frame_count(videos / clip) == len(list(read_video(videos / clip))) == 5
    video = videos / "posetrack18_000001_mpiinew_test.mp4"
    model = shared / "peers" / "tf_pose_estimation" / "openpose_mobilenet_v2_small.pb"
    assert main(["predict", str(model), str(video), "--track", "--smooth", "--json", "--out", str(tmp_path)]) == 0
    assert "| 5/5 [" in capsys.readouterr().err  # the progress bar knows the clip's length
    out = tmp_path / f"{video.stem}_pose.mp4"
    frames = iio.imread(out, plugin="pyav")
    assert frames.shape[0] == 5 and frames.shape[1:3] == iio.imread(video, index=0, plugin="pyav").shape[:2]
    record = json.loads((tmp_path / f"{video.stem}_pose.json").read_text())
    assert [round(f["timestamp_ms"], 3) for f in record["frames"]] == [0.0, 33.333, 66.667, 100.0, 133.333]
    best = [max(f["poses"], key=lambda p: p["score"]) for f in record["frames"]]
    assert len({p["track_id"] for p in best}) == 1 and best[0]["track_id"] == 1


def _box_person(x0: float, x1: float) -> Pose:
    """A 'person' whose four keypoints are the corners of the box [x0, x1] x [0, 10]."""
    kp = np.array([[x0, 0, 1], [x1, 0, 1], [x0, 10, 1], [x1, 10, 1]], np.float32)
    return Pose(kp, 1.0, np.zeros(4, np.float32), ("a", "b", "c", "d"))


@pytest.mark.parametrize("matching, x_takes", [("greedy", 1), ("hungarian", 2)])
def test_hungarian_matching_maximises_the_total_similarity(matching, x_takes):
    # Box IoU of new people x=[1, 11] and y=[-2, 8] with tracks A=[0, 10] (id 1), B=[3, 13] (id 2):
    # A-x 0.818, B-x 0.667, A-y 0.667, B-y 0.333. Greedy takes the best pair (A-x) first, total
    # 1.15; Hungarian gives x to B and y to A, total 1.33.
    tracker = Tracker(None, TrackerConfig(similarity="box", smoothing=False, matching=matching))
    assert [p.track_id for p in tracker.update([_box_person(0, 10), _box_person(3, 13)], 0.0)] == [1, 2]
    x, y = tracker.update([_box_person(1, 11), _box_person(-2, 8)], 33.0)
    assert (x.track_id, y.track_id) == (x_takes, 3 - x_takes)


@pytest.mark.parametrize("motion", [False, True])
def test_constant_velocity_keeps_ids_of_people_who_cross_fast(motion):
    """Two people at the same height walking through each other at 10 px per frame: compared
    with where each was, the right-walker's new pose is nearer the left-walker's last one
    and ids swap; compared with where each is expected to be (motion=True), they do not."""
    tracker = Tracker(SIGMAS, TrackerConfig(smoothing=False, motion=motion))
    swaps = 0
    for i in range(30):
        a, b = _person(5 + 10 * i, 300), _person(300 - 10 * i, 300)
        ids = [p.track_id for p in tracker.update([a, b], 33.0 * i)]
        swaps += ids != [1, 2]
    assert (swaps == 0) == motion, swaps


def test_person_boxes_from_poses_and_detections():
    from kpose.person_boxes import add_detected, needs_detection, pose_boxes

    kp = np.array([[10, 20, 0.9], [30, 60, 0.8], [500, 500, 0.1]], np.float32)   # the last one is weak
    pose = Pose(kp, 0.9, np.array([0, 0, 20, 40], np.float32), ("a", "b", "c"))
    assert np.allclose(pose_boxes([pose], 0.3, margin=0.25), [[5, 10, 30, 60]])
    # found in a box of 60 x 100: the next crop shrinks to 0.9 of it, no further
    wide = Pose(kp, 0.9, np.array([0, 0, 60, 100], np.float32), ("a", "b", "c"))
    assert np.allclose(pose_boxes([wide], 0.3, margin=0.25, keep=0.9), [[-7, -5, 54, 90]])
    weak = Pose(kp[[0, 2]], 0.9, np.zeros(4, np.float32), ("a", "c"))
    assert pose_boxes([weak], 0.3).shape == (0, 4)          # one confident keypoint: no extent
    tracked = np.array([[0, 0, 100, 200]], np.float64)
    found = np.array([[10, 10, 100, 200], [300, 0, 90, 180], [0, 0, 0, 0]], np.float64)
    assert np.allclose(add_detected(tracked, found), [[0, 0, 100, 200], [300, 0, 90, 180]])
    assert needs_detection(0, 500.0, 600.0) and needs_detection(2, None, 0.0)
    assert not needs_detection(2, 0.0, 999.0) and needs_detection(2, 0.0, 1000.0)


def test_top_down_video_crops_where_the_tracks_were(shared, monkeypatch):
    """A top-down model on video: the bottom-up detector finds the people on the first frame
    (and again every detect_every_ms), the other frames are cropped around each track's
    previous pose; without a detector the first frame is one whole-frame box."""
    from kpose.data.video import read_video
    from kpose import load
    from kpose.person_boxes import BOX_MARGIN, pose_boxes

    video = shared / "data" / "videos" / "posetrack18_000001_mpiinew_test.mp4"
    top_down = load(shared / "peers" / "efficientpose" / "EfficientPoseRT.h5")
    detector = load(shared / "peers" / "tf_pose_estimation" / "openpose_mobilenet_v2_small.pb")
    frame, detected_on = [0], []
    predict = detector.predict
    monkeypatch.setattr(detector, "predict", lambda img, **kw: detected_on.append(frame[0]) or predict(img, **kw))

    def run(**kw):
        frame[0], out, frames = 0, [], list(read_video(video))
        detected_on.clear()
        tracker = Tracker.for_skeleton(top_down.skeleton, smoothing=False)
        for poses in top_down.track(frames, tracker, **kw):
            out.append(poses)
            frame[0] += 1
        return out, list(detected_on), frames

    per_frame, detected_on, frames = run(detector=detector)
    assert detected_on == [0]                           # 133 ms of video: one detection
    first = [p for p in per_frame[0] if p.track_id is not None]
    assert len(first) >= 2 and len({p.track_id for p in first}) == len(first)
    # frame 1's crops are frame 0's tracked poses' keypoint boxes, grown by the margin
    expected = pose_boxes(first, 0.3, BOX_MARGIN)
    got = np.array(sorted(p.box.tolist() for p in per_frame[1]))
    assert len(per_frame[1]) <= len(expected)                   # duplicates dropped, nobody added
    assert all(np.isclose(expected, b).all(1).any() for b in got)
    # the clearly seen runner on the left keeps id 1 (the jumping player's lower body is
    # blurred: his few confident keypoints make a new box-IoU track now and then)
    left = [min(f, key=lambda p: p.box[0]) for f in per_frame]
    assert [p.track_id for p in left] == [1] * len(per_frame)
    _, detected_on, _ = run(detector=detector, detect_every_ms=60.0)
    assert detected_on == [0, 2, 4]
    # No detector, frames cut around the runner: the whole first frame is his box, then his pose's.
    runner = [(image[200:620, 330:600], t) for image, t in frames]
    alone = list(top_down.track(runner, Tracker.for_skeleton(top_down.skeleton, smoothing=False)))
    assert np.allclose(alone[0][0].box, [0, 0, 270, 420]) and alone[0][0].track_id == 1
    assert [len(f) for f in alone] == [1] * len(frames) and {f[0].track_id for f in alone} == {1}
    assert not np.allclose(alone[1][0].box, [0, 0, 270, 420])


def test_only_people_matched_on_the_last_frame_give_boxes_and_strangers_are_not_continued():
    tracker = Tracker(SIGMAS, TrackerConfig(smoothing=False))
    tracker.update([_person(100, 300), _person(300, 300)], 0.0)
    tracker.update([_person(102, 300)], 33.0)                    # the second person is missed
    assert len(tracker.expected_poses(66.0)) == 2                # both still live (max_age_ms)
    recent = tracker.expected_poses(66.0, matched_since_ms=33.0)
    assert len(recent) == 1 and recent[0].keypoints[0, 0] == pytest.approx(102.0)
    assert tracker.resembles_any(_person(104, 300).keypoints, recent)
    assert not tracker.resembles_any(_person(300, 300).keypoints, recent)
