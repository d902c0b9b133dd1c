"""PAF codec: field encoding rules, grouping steps and round trips, flip test, TF encoders."""
import json
from dataclasses import replace

import numpy as np
import pytest

from kpose.codecs import paf_grouping
from kpose.codecs.heatmap import HeatmapCodec
from kpose.codecs.paf import PafCodec, find_peaks, flip_back, limb_order
from kpose.codecs.paf_grouping import limb_candidates, smooth_maps, upsample_maps
from kpose.skeletons import COCO17, MPII16

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
    return codec.decode(heatmaps, pafs)


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
    poses, scores = CODEC.decode(heatmaps, pafs)
    _assert_recovered(people, poses)
    again = CODEC.decode(heatmaps.copy(), pafs.copy())
    np.testing.assert_array_equal(poses, again[0])
    np.testing.assert_array_equal(scores, again[1])
    none, none_scores = CODEC.decode(np.zeros_like(heatmaps), np.zeros_like(pafs))
    assert none.shape == (0, 17, 3) and none_scores.shape == (0,)


def _dense_peaks(hm, threshold):
    """find_peaks' definition written out over the whole map (8 shifted comparisons)."""
    hm = np.moveaxis(hm, -1, 0)
    _, h, w = hm.shape
    padded = np.pad(hm, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    keep = hm >= threshold
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                nb = padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                keep &= (hm > nb) if (dy, dx) < (0, 0) else (hm >= nb)
    return np.nonzero(keep)


def test_find_peaks_equals_dense_definition():
    rng = np.random.default_rng(0)
    hm = (np.round(rng.uniform(0, 1, (23, 31, 5)) * 4) / 4).astype(np.float32)  # many ties
    hm[0, :, 1] = 1.0                     # plateaus along the border
    hm[:, -1, 2] = 1.0
    hm[5, 5, 3] = np.nan                  # NaN: never a peak, nor next to one
    hm[10, 10:13, 4] = np.nan
    for threshold in (0.0, 0.5, 1.0):
        got, want = find_peaks(hm, threshold), _dense_peaks(hm, threshold)
        assert all(np.array_equal(g, w_) for g, w_ in zip(got, want)), threshold


def test_smooth_and_upsample_maps():
    const = np.full((9, 12, 2), 0.3, np.float32)
    np.testing.assert_allclose(smooth_maps(const, 1.3), const, rtol=1e-6)   # edges replicated
    np.testing.assert_allclose(upsample_maps(const, 3), np.full((27, 36, 2), 0.3), rtol=1e-6)
    assert smooth_maps(const, 0.0) is not None and upsample_maps(const, 1).shape == const.shape
    # Pixel centres aligned: fine pixel X is at coarse (X + 0.5) / f - 0.5; linear inside, held outside.
    ramp = np.broadcast_to(np.arange(8, dtype=np.float32)[None, :, None], (5, 8, 1))
    fine = (np.arange(32) + 0.5) / 4 - 0.5
    np.testing.assert_allclose(upsample_maps(ramp, 4)[2, :, 0], np.clip(fine, 0, 7), atol=1e-6)
    # A Gaussian blurred by a Gaussian is a wider Gaussian with the same centre.
    narrow, wide = HeatmapCodec((64, 64), (32, 32), 2.0), HeatmapCodec((64, 64), (32, 32), 2.5)
    kp = np.array([[30.3, 33.1, 2.0], [12.2, 40.7, 2.0]])
    blurred = smooth_maps(narrow.encode(kp)[0], 1.5)
    np.testing.assert_allclose(blurred / blurred.max((0, 1)), wide.encode(kp)[0], atol=1e-2)  # sampled kernel
    np.testing.assert_allclose(wide.decode(blurred)[:, :2], kp[:, :2], atol=0.02)


def _candidates_by_pair(uv, kp, pafs, limbs, order, num_samples, threshold, fraction, prior):
    """limb_candidates' rule, one pair and one sample at a time (reference)."""
    h, w = pafs.shape[:2]
    out = []
    for p, li in enumerate(order):
        a, b = limbs[li]
        for i in np.flatnonzero(kp == a):
            for j in np.flatnonzero(kp == b):
                dx, dy = uv[j] - uv[i]
                length = np.sqrt(dx * dx + dy * dy)
                if length <= 1e-6:
                    continue
                ux, uy = dx / length, dy / length
                dots = []
                for t in np.linspace(0, 1, num_samples):
                    x = int(min(max(np.floor(uv[i, 0] + t * dx + 0.5), 0), w - 1))
                    y = int(min(max(np.floor(uv[i, 1] + t * dy + 0.5), 0), h - 1))
                    dots.append(float(pafs[y, x, 2 * li]) * ux + float(pafs[y, x, 2 * li + 1]) * uy)
                score = sum(dots) / num_samples
                if prior > 0:
                    score += min(0.0, prior * h / length - 1.0)
                if score > 0 and sum(d > threshold for d in dots) / num_samples >= fraction:
                    out.append((p, i, j, score))
    out.sort(key=lambda c: (c[0], -c[3], c[1], c[2]))
    return [np.array(c) for c in zip(*out)] if out else [np.zeros(0)] * 4


@pytest.mark.parametrize("num_samples, fraction, prior", [(10, 0.8, 0.5), (10, 0.0, 0.0), (7, 0.3, 0.2),
                                                          (5, 1.0, 0.5), (12, 0.55, 0.0)])
def test_limb_candidates_equal_pairwise_rule(num_samples, fraction, prior):
    # Random peaks and fields made of real limbs plus noise: the vectorised scoring, its
    # exact shortcut (probe samples) and its ordering agree with the pair-by-pair rule.
    rng = np.random.default_rng(num_samples)
    codec = PafCodec((96, 128), (24, 32), COCO17.limbs)
    people = np.stack([_person(rng, x, 50, 70, jitter=3) for x in (25, 60, 100)])
    pafs = codec.encode(people)[0] + rng.normal(0, 0.3, (24, 32, 38)).astype(np.float32)
    kp = np.sort(rng.integers(0, 17, 60))
    uv = rng.uniform(-1, 33, (60, 2)) * [1, 0.75]
    uv[:17], kp[:17] = codec.heatmap_codec.to_heatmap(people[0, :, :2]), np.arange(17)
    order = np.array(limb_order(COCO17.limbs, 17))
    rank = np.argsort(kp, kind="stable")
    kp, uv = kp[rank], uv[rank]
    got = limb_candidates(uv, kp, pafs, np.array(COCO17.limbs), order, num_samples, 0.05, fraction, prior)
    want = _candidates_by_pair(uv, kp, pafs, COCO17.limbs, order, num_samples, 0.05, fraction, prior)
    assert len(got[0]) > 10
    for g, w_ in zip(got, want):
        np.testing.assert_array_equal(g, w_)


def test_limb_candidates_in_batches(monkeypatch):
    # Many peaks are scored a batch of limbs at a time (bounded memory): same result.
    rng = np.random.default_rng(8)
    people = np.stack([_person(rng, *rng.uniform(40, 216, 2), rng.uniform(40, 160)) for _ in range(8)])
    hm = CODEC.encode_heatmaps(people)[0]
    pf = CODEC.encode(people)[0] + rng.normal(0, 0.1, (64, 64, 38)).astype(np.float32)
    whole = CODEC.decode(hm, pf)
    monkeypatch.setattr(paf_grouping, "PAIR_BATCH", 20)
    batched = CODEC.decode(hm, pf)
    np.testing.assert_array_equal(whole[0], batched[0])
    np.testing.assert_array_equal(whole[1], batched[1])
    assert len(whole[0]) == 8


def _two_keypoints(codec, uv_a, uv_b):
    xy = codec.heatmap_codec.to_input(np.array([uv_a, uv_b], np.float64))
    people = np.concatenate([xy, np.full((2, 1), 2.0)], -1)[None]
    return codec.encode_heatmaps(people)[0], codec.encode(people)[0]


def test_distance_prior():
    # One limb 24 heatmap px long on a 32 px high map: 0.75 of the height.
    codec = PafCodec((64, 64), (32, 32), [(0, 1)], sigma=1.0, min_keypoints=2)
    hm, pf = _two_keypoints(codec, (4.0, 4.0), (4.0, 28.0))
    for prior, limb_score in [(0.0, 1.0), (0.5, 0.5 * 32 / 24), (0.9, 1.0)]:
        _, scores = replace(codec, max_limb_fraction=prior).decode(hm, pf)
        np.testing.assert_allclose(scores, [(2.0 + limb_score) / 3.0], rtol=1e-6)
    # A weaker field (mean 0.5): kept at 0.5 (0.5 - 1/3 > 0), rejected at 0.3 (0.5 - 0.6 < 0).
    weak = pf * 0.5
    assert len(codec.decode(hm, weak)[0]) == 1
    assert len(replace(codec, max_limb_fraction=0.3).decode(hm, weak)[0]) == 0


def test_single_keypoint_people():
    rng = np.random.default_rng(2)
    people = np.stack([_person(rng, 70, 120, 110), _person(rng, 190, 120, 100)])
    people[1, 1:, 2] = 0                                   # only a nose: no limb can join it
    heatmaps, pafs = CODEC.encode_heatmaps(people)[0], CODEC.encode(people)[0]
    assert len(CODEC.decode(heatmaps, pafs)[0]) == 1
    single = replace(CODEC, min_keypoints=1)
    poses, scores = single.decode(heatmaps, pafs)
    _assert_recovered(people, poses)
    np.testing.assert_allclose(scores[1], poses[1, 0, 2] / (17 + 19), rtol=1e-6)   # one keypoint, no limb


@pytest.mark.parametrize("options, tol", [({"upsample": 4}, 0.6), ({"upsample": 2, "smooth_sigma": 0.75}, 0.6),
                                          ({"smooth_sigma": 1.0}, 0.2)])
def test_round_trip_smoothed_and_upsampled(options, tol):
    # Bilinear maps are not Gaussians, so DARK is approximate there (about 0.1 map px).
    rng = np.random.default_rng(5)
    codec = replace(CODEC, **options)
    people = np.stack([_person(rng, 60 + 70 * i, 90 + 70 * (i % 2), 100) for i in range(3)])
    poses, _ = codec.decode(codec.encode_heatmaps(people)[0], codec.encode(people)[0])
    _assert_recovered(people, poses, tol=tol)


@pytest.mark.parametrize("skeleton", [COCO17, MPII16], ids=lambda s: s.name)
def test_flip_back(skeleton):
    # The maps of the mirrored people, mapped back, are the maps of the people.
    rng = np.random.default_rng(4)
    codec = PafCodec((128, 96), (32, 24), skeleton.limbs, sigma=1.5)
    k = skeleton.num_keypoints
    people = np.concatenate([rng.uniform(5, 90, (3, k, 2)), rng.integers(0, 3, (3, k, 1))], -1)
    mirrored = people[:, skeleton.flip_index()].copy()
    mirrored[..., 0] = 96 - 1 - mirrored[..., 0]
    hm, pf = codec.encode_heatmaps(people)[0], codec.encode(people)[0]
    back_hm, back_pf = codec.flip_back(codec.encode_heatmaps(mirrored)[0], codec.encode(mirrored)[0],
                                       skeleton.flip_index(), *skeleton.limb_flip())
    np.testing.assert_allclose(back_hm, hm, atol=1e-6)
    np.testing.assert_allclose(back_pf, pf, atol=1e-6)
    assert np.abs(pf).max() > 0.9
    # Leading batch axes pass through; a wrong skeleton is named.
    batch_hm, batch_pf = flip_back(np.stack([hm, hm]), np.stack([pf, pf]), skeleton.flip_index(), *skeleton.limb_flip())
    np.testing.assert_array_equal(flip_back(batch_hm, batch_pf, skeleton.flip_index(), *skeleton.limb_flip())[1][1], pf)
    with pytest.raises(ValueError, match="limb_flip"):
        flip_back(hm, pf[..., :-2], skeleton.flip_index(), *skeleton.limb_flip())


def test_flip_test_decode():
    # Averaging a prediction with its mirrored prediction mapped back, then decoding.
    rng = np.random.default_rng(6)
    people = np.stack([_person(rng, 70, 120, 110), _person(rng, 180, 130, 100)])
    hm, pf = CODEC.encode_heatmaps(people)[0], CODEC.encode(people)[0]
    mirrored = people[:, COCO17.flip_index()].copy()
    mirrored[..., 0] = 255 - mirrored[..., 0]
    back_hm, back_pf = flip_back(CODEC.encode_heatmaps(mirrored)[0], CODEC.encode(mirrored)[0],
                                 COCO17.flip_index(), *COCO17.limb_flip())
    poses, _ = CODEC.decode(0.5 * (hm + back_hm), 0.5 * (pf + back_pf))
    _assert_recovered(people, poses)


def test_codec_validation():
    with pytest.raises(ValueError, match="upsample"):
        PafCodec((64, 64), (16, 16), COCO17.limbs, upsample=1.5)
    with pytest.raises(ValueError, match="min_keypoints"):
        PafCodec((64, 64), (16, 16), COCO17.limbs, min_keypoints=0)
    with pytest.raises(ValueError, match="limbs"):
        PafCodec((64, 64), (16, 16), [(1, 1)])
    with pytest.raises(ValueError, match="heatmap_size"):
        CODEC.decode(np.zeros((32, 32, 17)), np.zeros((64, 64, 38)))
    with pytest.raises(ValueError, match="skeleton's limbs"):
        CODEC.decode(np.zeros((64, 64, 5)), np.zeros((64, 64, 38)))


def test_metadata_round_trip():
    d = json.loads(json.dumps(CODEC.to_dict()))
    assert PafCodec.from_dict(d) == CODEC
    assert CODEC.heatmap_codec.heatmap_size == (64, 64)


tf = pytest.importorskip("kpose._tf").tf
from kpose.codecs.heatmap_tf import encode_multi_heatmaps_tf  # noqa: E402
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


def _largest_tensor(fn, spec) -> int:
    """Elements of the largest statically shaped tensor in fn's graph, loop bodies included."""
    def walk(graph):
        best = 0
        for op in graph.get_operations():
            for t in op.outputs:
                if t.shape.rank is not None and t.shape.is_fully_defined():
                    best = max(best, t.shape.num_elements())
            for attr in ("body", "cond"):
                try:
                    best = max(best, walk(graph._get_function(op.get_attr(attr).name).graph))
                except (ValueError, AttributeError):
                    pass
        return best
    return walk(tf.function(fn, autograph=False).get_concrete_function(spec).graph)


def test_tf_encoders_many_people():
    # 25 overlapping people, some keypoints unlabelled: equal to the NumPy references, and
    # no [people x ...] map is ever built (memory stays that of one person's maps).
    rng = np.random.default_rng(25)
    people = np.stack([_person(rng, *rng.uniform(40, 216, 2), rng.uniform(40, 160)) for _ in range(25)])
    people[rng.uniform(size=people.shape[:2]) < 0.2, 2] = 0
    ref, _ = CODEC.encode(people)
    got = encode_pafs_tf(people, CODEC.input_size, CODEC.heatmap_size, CODEC.limbs)[0].numpy()
    assert np.mean(np.abs(got - ref) > 1e-5) < 1e-4 and (np.abs(ref) > 0).mean() > 0.01
    hm_ref, _ = CODEC.encode_heatmaps(people)
    hm = encode_multi_heatmaps_tf(people, CODEC.input_size, CODEC.heatmap_size, CODEC.sigma)
    assert np.abs(hm[0].numpy() - hm_ref).max() < 1e-5
    np.testing.assert_array_equal(hm[1].numpy(), np.ones(17))
    assert not encode_multi_heatmaps_tf(np.zeros((0, 17, 3)), CODEC.input_size, (64, 64))[0].numpy().any()

    spec = tf.TensorSpec([25, 17, 3], tf.float32)
    h, w = CODEC.heatmap_size
    assert _largest_tensor(lambda k: encode_pafs_tf(k, CODEC.input_size, (h, w), CODEC.limbs)[0],
                           spec) == h * w * 19 * 2
    assert _largest_tensor(lambda k: encode_multi_heatmaps_tf(k, CODEC.input_size, (h, w))[0],
                           spec) <= h * w * 17
