"""Limb heatmap codec (SimplePose): encoding rule, round trips, flip test, TF == NumPy, COCO oracle."""
import json
from collections import Counter

import numpy as np
import pytest

from kpose.codecs import LimbHeatmapCodec, PafCodec, codec_from_dict
from kpose.codecs.limb_heatmap import flip_back
from kpose.codecs.paf_grouping import limb_candidates, limb_map_samples
from kpose.skeletons import COCO17, MPII16
from test_paf_codec import _assert_recovered, _person
from test_paf_oracle import REDUNDANT, _oracle, coco_val  # noqa: F401  (coco_val: the fixture)

CODEC = LimbHeatmapCodec(input_size=(256, 256), heatmap_size=(64, 64), limbs=COCO17.limbs)


def _round_trip(people, codec=CODEC):
    return codec.decode(codec.encode_heatmaps(people)[0], codec.encode(people)[0])


@pytest.mark.parametrize("round_ends", [True, False])
def test_encode_rule_pixel_by_pixel(round_ends):
    # The vectorised maps equal the rule written out per pixel, person and limb.
    rng = np.random.default_rng(0)
    codec = LimbHeatmapCodec((64, 48), (16, 12), [(0, 1), (1, 2), (2, 0), (0, 3)], limb_sigma=1.3,
                             round_ends=round_ends)
    people = np.concatenate([rng.uniform(0, 48, (3, 4, 2)), rng.integers(0, 3, (3, 4, 1))], -1)
    people[:, 3, :2] = people[:, 0, :2]                        # zero-length limbs draw nothing
    got, weights = codec.encode(people)
    uv = codec.heatmap_codec.to_heatmap(people[..., :2])
    want = np.zeros((16, 12, 4))
    for y in range(16):
        for x in range(12):
            for li, (a, b) in enumerate(codec.limbs):
                for p in range(3):
                    d = uv[p, b] - uv[p, a]
                    length = np.hypot(*d)
                    if people[p, a, 2] <= 0 or people[p, b, 2] <= 0 or length <= 1e-6:
                        continue
                    t = np.dot((x, y) - uv[p, a], d) / length
                    if round_ends:
                        t = min(max(t, 0.0), length)            # the nearest point of the segment
                    if 0 <= t <= length:
                        dist = np.hypot(*((x, y) - uv[p, a] - t * d / length))
                        want[y, x, li] = max(want[y, x, li], np.exp(-dist ** 2 / (2 * 1.3 ** 2)))
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.dtype == np.float32 and got.max() > 0.9 and not got[..., 3].any()
    np.testing.assert_array_equal(weights, np.ones(4))
    assert codec.encode(np.zeros((0, 4, 3)))[0].shape == (16, 12, 4)


def test_limb_score_is_mean_along_segment():
    # The PAF grouping with limb_map_samples: score = mean of the map at the segment's samples.
    maps = np.zeros((8, 8, 1), np.float32)
    maps[2, 1:7, 0] = 0.5                                        # a horizontal limb at row 2
    uv, kp = np.array([[1.0, 2.0], [6.0, 2.0], [6.0, 6.0]]), np.array([0, 1, 1])
    pos, ga, gb, score = limb_candidates(uv, kp, maps, np.array([[0, 1]]), np.array([0]), 6, 0.1, 0.8, 0.0,
                                         samples=limb_map_samples)
    assert (ga.tolist(), gb.tolist()) == ([0], [1]) and score[0] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(3))
def test_round_trip_synthetic_people(seed):
    rng = np.random.default_rng(seed)
    n = 2 + seed
    people = np.stack([_person(rng, 40 + 60 * i, 70 + 100 * (i % 2), 110) for i in range(n)])
    poses, scores = _round_trip(people)
    _assert_recovered(people, poses)
    assert np.all(np.diff(scores) <= 0) and np.all(scores > 0.9)


def test_round_trip_close_and_partial_people():
    rng = np.random.default_rng(10)
    a = _person(rng, 100, 128, 120)
    b = a.copy()
    b[:, :2] += np.array([28.0, 12.0]) + rng.normal(0, 0.5, (17, 2))   # overlapping, 7 x 3 heatmap px away
    _assert_recovered(np.stack([a, b]), _round_trip(np.stack([a, b]))[0])
    people = np.stack([_person(rng, 60, 120, 110), _person(rng, 190, 130, 100)])
    people[0, [9, 15, 16], 2] = 0
    people[1, :5, 2] = 0
    _assert_recovered(people, _round_trip(people)[0])
    # Redundant limbs (cycles in the limb graph) group the same people.
    codec = LimbHeatmapCodec((256, 256), (64, 64), COCO17.limbs + REDUNDANT)
    _assert_recovered(people, _round_trip(people, codec)[0])
    none = CODEC.decode(np.zeros((64, 64, 17)), np.zeros((64, 64, 19)))
    assert none[0].shape == (0, 17, 3) and none[1].shape == (0,)


@pytest.mark.parametrize("skeleton", [COCO17, MPII16], ids=lambda s: s.name)
def test_flip_back(skeleton):
    rng = np.random.default_rng(4)
    codec = LimbHeatmapCodec((128, 96), (32, 24), skeleton.limbs, sigma=1.5)
    k = skeleton.num_keypoints
    people = np.concatenate([rng.uniform(5, 90, (3, k, 2)), rng.integers(0, 3, (3, k, 1))], -1)
    mirrored = people[:, skeleton.flip_index()].copy()
    mirrored[..., 0] = 96 - 1 - mirrored[..., 0]
    hm, lm = codec.encode_heatmaps(people)[0], codec.encode(people)[0]
    back_hm, back_lm = codec.flip_back(codec.encode_heatmaps(mirrored)[0], codec.encode(mirrored)[0],
                                       skeleton.flip_index(), *skeleton.limb_flip())
    np.testing.assert_allclose(back_hm, hm, atol=1e-6)
    np.testing.assert_allclose(back_lm, lm, atol=1e-6)
    assert lm.max() > 0.9
    with pytest.raises(ValueError, match="limb_flip"):
        flip_back(hm, lm[..., :-1], skeleton.flip_index(), *skeleton.limb_flip())


def test_validation_and_metadata():
    with pytest.raises(ValueError, match="limb_sigma"):
        LimbHeatmapCodec((64, 64), (16, 16), COCO17.limbs, limb_sigma=0)
    with pytest.raises(ValueError, match="upsample"):
        LimbHeatmapCodec((64, 64), (16, 16), COCO17.limbs, upsample=1.5)
    with pytest.raises(ValueError, match="limbs"):
        LimbHeatmapCodec((64, 64), (16, 16), [(1, 1)])
    with pytest.raises(ValueError, match="heatmap_size"):
        CODEC.decode(np.zeros((64, 64, 17)), np.zeros((64, 64, 38)))
    with pytest.raises(ValueError, match="skeleton's limbs"):
        CODEC.decode(np.zeros((64, 64, 5)), np.zeros((64, 64, 19)))
    d = json.loads(json.dumps(CODEC.to_dict()))
    assert d["type"] == "limb_heatmap" and codec_from_dict(d) == CODEC
    assert LimbHeatmapCodec.from_dict(d) == CODEC
    with pytest.raises(ValueError, match="type"):
        LimbHeatmapCodec.from_dict({**d, "type": "paf"})


@pytest.mark.parametrize("name, limbs", [("COCO17 limbs", COCO17.limbs),
                                         ("COCO17 + nose-shoulder limbs", COCO17.limbs + REDUNDANT)])
def test_oracle_round_trip(coco_val, name, limbs):  # noqa: F811
    # GT -> targets -> decode -> OKS AP on coco_mini val2017, next to the PAF codec's on the same limbs.
    # The flat-cut limb maps (round_ends=False) are reported for comparison only.
    results, unexplained = {}, {}
    for label, cls, extra in (("LimbHeatmapCodec", LimbHeatmapCodec, {}), ("PafCodec", PafCodec, {}),
                              ("LimbHeatmapCodec flat-cut ends", LimbHeatmapCodec, dict(round_ends=False))):
        stats, failures, count = _oracle(coco_val, codec_cls=cls, limbs=limbs, sigma=1.0, min_keypoints=1, **extra)
        results[label] = stats["AP"]
        unexplained[label] = [f for f in failures if f[1] == "unexplained"]
        kinds = Counter(f"{kind} [{why}]" for kind, why, _ in failures)
        print(f"\n[{name}, min_keypoints 1] {label}, {count} people: AP {stats['AP']:.3f} "
              f"AP50 {stats['AP50']:.3f} AP75 {stats['AP75']:.3f} AR {stats['AR']:.3f}; {dict(kinds)}")
    assert not unexplained["LimbHeatmapCodec"], "grouping errors on perfect maps"
    assert results["LimbHeatmapCodec"] >= 0.90 and results["LimbHeatmapCodec"] >= results["PafCodec"] - 0.01, results


tf = pytest.importorskip("kpose._tf").tf
from kpose.codecs.limb_heatmap_tf import encode_limb_heatmaps_tf  # noqa: E402
from test_paf_codec import _largest_tensor  # noqa: E402


@pytest.mark.parametrize("round_ends", [True, False])
def test_tf_encode_equals_numpy(round_ends):
    rng = np.random.default_rng(25)
    people = np.stack([_person(rng, *rng.uniform(40, 216, 2), rng.uniform(40, 160)) for _ in range(12)])
    people[rng.uniform(size=people.shape[:2]) < 0.2, 2] = 0
    codec = LimbHeatmapCodec((256, 256), (64, 64), COCO17.limbs, limb_sigma=1.5, round_ends=round_ends)
    ref, wref = codec.encode(people)
    got, wgot = encode_limb_heatmaps_tf(people, codec.input_size, codec.heatmap_size, codec.limbs,
                                        codec.limb_sigma, round_ends)
    # float32 vs float64: values agree closely except where a pixel's projection sits exactly on a segment end.
    assert np.mean(np.abs(got.numpy() - ref) > 1e-5) < 1e-4 and (ref > 0.5).mean() > 0.01
    np.testing.assert_array_equal(wgot.numpy(), wref)

    # In graph mode inside Dataset.map, with a padded (v = 0) person and with none.
    padded = np.concatenate([people, np.zeros((1, 17, 3))]).astype(np.float32)
    ds = tf.data.Dataset.from_tensors(padded).map(
        lambda k: encode_limb_heatmaps_tf(k, codec.input_size, codec.heatmap_size, codec.limbs, 1.5, round_ends)[0])
    assert np.mean(np.abs(next(iter(ds)).numpy() - ref) > 1e-5) < 1e-4
    empty = encode_limb_heatmaps_tf(np.zeros((0, 17, 3)), CODEC.input_size, CODEC.heatmap_size, CODEC.limbs)[0]
    assert empty.shape == (64, 64, 19) and not np.any(empty.numpy())
    # No [people x ...] map: memory stays that of one person's maps, as in paf_tf.
    h, w = CODEC.heatmap_size
    spec = tf.TensorSpec([12, 17, 3], tf.float32)
    assert _largest_tensor(lambda k: encode_limb_heatmaps_tf(k, CODEC.input_size, (h, w), CODEC.limbs)[0],
                           spec) == h * w * 19 * 2
