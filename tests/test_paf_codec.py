"""PAF codec: field encoding rules, multi-person grouping round trips, TF encoder."""
import json

import numpy as np
import pytest

from kpose.codecs.paf import PafCodec, find_peaks, limb_order
from kpose.skeletons import COCO17

CODEC = PafCodec(input_size=(256, 256), heatmap_size=(64, 64), limbs=COCO17.limbs)

# A standing, front-facing COCO17 person, unit height, centred on the origin.
TEMPLATE = np.array([
    (0.0, -0.42), (0.03, -0.45), (-0.03, -0.45), (0.07, -0.43), (-0.07, -0.43),
    (0.15, -0.30), (-0.15, -0.30), (0.20, -0.10), (-0.20, -0.10), (0.22, 0.08), (-0.22, 0.08),
    (0.10, 0.05), (-0.10, 0.05), (0.11, 0.27), (-0.11, 0.27), (0.12, 0.50), (-0.12, 0.50),
])


def _person(rng, cx, cy, height, jitter=1.0):
    xy = TEMPLATE * height + (cx, cy) + rng.normal(0, jitter, TEMPLATE.shape)
    return np.concatenate([xy, np.full((17, 1), 2.0)], -1)


def _round_trip(people, codec=CODEC):
    heatmaps, _ = codec.encode_heatmaps(people)
    pafs, _ = codec.encode(people)
    return codec.decode(heatmaps, pafs, return_scores=True)


def _assert_recovered(people, poses, tol=0.1):
    """Every person is decoded exactly once, every labelled keypoint within ``tol`` px."""
    assert len(poses) == len(people)
    used = set()
    for person in people:
        labelled = person[:, 2] > 0
        errs = [np.abs(p[labelled, :2] - person[labelled, :2]).max() for p in poses]
        best = int(np.argmin(errs))
        assert errs[best] < tol, errs
        assert best not in used
        used.add(best)
        assert np.all(poses[best][~labelled] == 0)  # unlabelled keypoints stay empty


def test_encode_field_rules():
    codec = PafCodec((64, 64), (16, 16), limbs=[(0, 1), (1, 2)], limb_width=1.0)
    # Limb 0 horizontal from heatmap (3, 5) to (10, 5); limb 1 unlabelled (keypoint 2 has v = 0).
    to_input = codec.heatmap_codec.to_input
    kp = np.zeros((1, 3, 3))
    kp[0, 0, :2], kp[0, 1, :2], kp[0, 2, :2] = to_input([3, 5]), to_input([10, 5]), to_input([10, 12])
    kp[0, :2, 2] = 2
    pafs, weights = codec.encode(kp)
    assert pafs.shape == (16, 16, 4) and weights.tolist() == [1, 1]
    on = np.abs(pafs[..., 0]) > 0
    yy, xx = np.mgrid[0:16, 0:16]
    # Within distance 1 of the segment (a capsule), pointing a -> b.
    dist = np.hypot(np.clip(xx, 3, 10) - xx, yy - 5)
    np.testing.assert_array_equal(on, dist <= 1.0)
    np.testing.assert_array_equal(pafs[on][:, :2], [[1.0, 0.0]] * on.sum())
    assert not pafs[..., 1].any() and not pafs[..., 2:].any()
    # A second person with the same limb reversed and overlapping: averaged to zero
    # where both cover a pixel; single-cover pixels keep their unit vector.
    kp2 = kp.copy()
    kp2[0, 0, :2], kp2[0, 1, :2] = to_input([12, 5]), to_input([7, 5])
    both, _ = codec.encode(np.concatenate([kp, kp2]))
    np.testing.assert_allclose(both[5, 8, :2], [0, 0])
    np.testing.assert_allclose(both[5, 4, :2], [1, 0])
    np.testing.assert_allclose(both[5, 12, :2], [-1, 0])
    # Same direction overlap stays a unit vector (average, not sum).
    same, _ = codec.encode(np.concatenate([kp, kp]))
    np.testing.assert_allclose(same, pafs)


def test_peaks_and_limb_order():
    hm = np.zeros((8, 8, 1), np.float32)
    hm[2, 3] = hm[2, 4] = 0.9  # plateau: one peak, the first in raster order
    hm[6, 6] = 0.05            # below threshold
    k, iy, ix = find_peaks(hm, 0.1)
    assert list(zip(k, iy, ix)) == [(0, 2, 3)]
    order = limb_order(COCO17.limbs, 17)
    assert sorted(order) == list(range(len(COCO17.limbs)))


@pytest.mark.parametrize("seed", range(4))
def test_round_trip_well_separated(seed):
    rng = np.random.default_rng(seed)
    n = 2 + seed % 3
    people = np.stack([_person(rng, 40 + 60 * i, 70 + 100 * (i % 2), 110) for i in range(n)])
    poses, scores = _round_trip(people)
    _assert_recovered(people, poses)
    assert np.all(np.diff(scores) <= 0) and np.all(scores > 0.9)


@pytest.mark.parametrize("seed", range(4))
def test_round_trip_close_together(seed):
    # Second person overlaps the first, shifted by 7 x 3 heatmap pixels.
    rng = np.random.default_rng(10 + seed)
    a = _person(rng, 100, 128, 120)
    b = a.copy()
    b[:, :2] += np.array([28.0, 12.0]) + rng.normal(0, 0.5, (17, 2))
    people = np.stack([a, b])
    poses, _ = _round_trip(people)
    _assert_recovered(people, poses)


def test_round_trip_partial_people_and_determinism():
    rng = np.random.default_rng(7)
    people = np.stack([_person(rng, 60, 120, 110), _person(rng, 190, 130, 100)])
    people[0, [9, 15, 16], 2] = 0   # a wrist and both ankles unlabelled
    people[1, :5, 2] = 0            # no face
    heatmaps, _ = CODEC.encode_heatmaps(people)
    pafs, _ = CODEC.encode(people)
    poses = CODEC.decode(heatmaps, pafs)
    _assert_recovered(people, poses)
    again = CODEC.decode(heatmaps.copy(), pafs.copy())
    for p, q in zip(poses, again):
        np.testing.assert_array_equal(p, q)
    assert CODEC.decode(np.zeros_like(heatmaps), np.zeros_like(pafs)) == []


def test_metadata_round_trip():
    d = json.loads(json.dumps(CODEC.to_dict()))
    assert PafCodec.from_dict(d) == CODEC
    assert CODEC.heatmap_codec.heatmap_size == (64, 64)


tf = pytest.importorskip("kpose._tf").tf
from kpose.codecs.paf_tf import encode_pafs_tf  # noqa: E402


def test_tf_encode_equals_numpy():
    rng = np.random.default_rng(3)
    people = np.stack([_person(rng, 60 + 40 * i, 120 + 10 * i, 110) for i in range(4)])  # overlapping
    people[1, 3:6, 2] = 0
    ref, wref = CODEC.encode(people)
    got, wgot = encode_pafs_tf(people, CODEC.input_size, CODEC.heatmap_size, CODEC.limbs, CODEC.limb_width)
    # float32 vs float64 can only disagree for a pixel centre exactly on a capsule edge.
    assert np.mean(np.abs(got.numpy() - ref) > 1e-5) < 1e-4
    np.testing.assert_array_equal(wgot.numpy(), wref)

    # In graph mode inside Dataset.map, with a padded (v = 0) person and with none.
    padded = np.concatenate([people, np.zeros((1, 17, 3))]).astype(np.float32)
    ds = tf.data.Dataset.from_tensors(padded).map(
        lambda k: encode_pafs_tf(k, CODEC.input_size, CODEC.heatmap_size, CODEC.limbs)[0])
    assert np.mean(np.abs(next(iter(ds)).numpy() - ref) > 1e-5) < 1e-4
    empty = encode_pafs_tf(np.zeros((0, 17, 3)), CODEC.input_size, CODEC.heatmap_size, CODEC.limbs)[0]
    assert empty.shape == (64, 64, 38) and not np.any(empty.numpy())
