"""Heatmap codec: unbiased encode / DARK decode round trips, real COCO AP, TF ports."""
import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest

from kpose.codecs.heatmap import HeatmapCodec
from kpose.transforms import affine_matrix, apply_affine, box_to_center_scale, invert_affine

COCO = Path("/work/shared/data/coco_mini/annotations")
CODEC = HeatmapCodec(input_size=(256, 192), heatmap_size=(64, 48), sigma=2.0)


def _random_keypoints(rng, n, k, size, margin=0.0):
    h, w = size
    xy = np.stack([rng.uniform(-0.5 + margin, w - 0.5 - margin, (n, k)),
                   rng.uniform(-0.5 + margin, h - 0.5 - margin, (n, k))], -1)
    return np.concatenate([xy, np.full((n, k, 1), 2.0)], -1)


def test_encode_target_properties():
    codec = HeatmapCodec((64, 64), (16, 16), sigma=1.5)
    # Input pixel x maps to heatmap u = (x + 0.5) / 4 - 0.5; x = 21.5 -> u = 5.0 exactly.
    kps = np.array([[21.5, 9.5, 2], [0, 0, 0], [100.0, 10.0, 2], [-0.5, -0.5, 1], [30.0, 30.0, 1]], float)
    hm, wt = codec.encode(kps)
    assert hm.shape == (16, 16, 5) and hm.dtype == np.float32
    np.testing.assert_array_equal(wt, [1, 0, 0, 1, 1])
    assert hm[2, 5, 0] == 1.0 and hm[..., 0].max() == 1.0  # peak 1 on the grid point
    assert not hm[..., 1].any() and not hm[..., 2].any()  # unlabelled / outside: empty
    # Centre of mass of a fully contained blob is its sub-pixel position.
    yy, xx = np.mgrid[0:16, 0:16]
    m = hm[..., 4]
    np.testing.assert_allclose([(m * xx).sum() / m.sum(), (m * yy).sum() / m.sum()],
                               codec.to_heatmap([30.0, 30.0]), atol=1e-4)
    np.testing.assert_allclose(codec.to_input(codec.to_heatmap([[-0.5, 63.5], [3.3, 7.7]])),
                               [[-0.5, 63.5], [3.3, 7.7]])
    np.testing.assert_allclose(codec.to_heatmap([[-0.5, -0.5], [63.5, 63.5]]), [[-0.5, -0.5], [15.5, 15.5]])


def test_round_trip_synthetic_including_borders():
    rng = np.random.default_rng(0)
    kps = _random_keypoints(rng, 64, 17, CODEC.input_size)
    # Force some keypoints onto the outermost half pixel of the crop.
    kps[:8, :4, 0] = rng.uniform(-0.5, 1.0, (8, 4))
    kps[8:16, :4, 1] = rng.uniform(254.0, 255.5, (8, 4))
    hm, wt = CODEC.batch_encode(kps)
    assert hm.shape == (64, 64, 48, 17) and wt.all()
    dec = CODEC.batch_decode(hm)
    err = np.linalg.norm(dec[..., :2] - kps[..., :2], axis=-1)
    assert err.max() < 1e-3
    assert np.all(dec[..., 2] > 0.8) and np.all(dec[..., 2] <= 1.0)


@pytest.mark.parametrize("input_size,heatmap_size,sigma", [
    ((224, 224), (224, 224), 6.0),   # full resolution, stride 1
    ((256, 256), (64, 64), 1.0),     # small sigma
    ((200, 150), (64, 48), 2.0),     # non-integer strides
])
def test_round_trip_other_geometries(input_size, heatmap_size, sigma):
    codec = HeatmapCodec(input_size, heatmap_size, sigma)
    kps = _random_keypoints(np.random.default_rng(1), 8, 17, input_size)
    dec = codec.decode(codec.encode(kps)[0])
    assert np.abs(dec[..., :2] - kps[..., :2]).max() < 2e-3


def test_decode_is_robust_to_prediction_like_heatmaps():
    # Predictions are blurred, scaled and noisy. The log of any Gaussian is
    # quadratic, so a wider blob of lower amplitude still decodes exactly.
    rng = np.random.default_rng(2)
    kps = _random_keypoints(rng, 200, 1, CODEC.input_size, margin=16)
    wide = HeatmapCodec(CODEC.input_size, CODEC.heatmap_size, sigma=2.7)
    hm = 0.6 * wide.encode(kps)[0]
    np.testing.assert_allclose(CODEC.decode(hm)[..., :2], kps[..., :2], atol=1e-3)
    noisy = hm + rng.normal(0, 0.02, hm.shape).astype(np.float32)
    err_dark = np.linalg.norm(CODEC.decode(noisy)[..., :2] - kps[..., :2], axis=-1).mean()
    err_argmax = np.linalg.norm(CODEC.decode(noisy, refine="none")[..., :2] - kps[..., :2], axis=-1).mean()
    assert err_dark < 0.5 * err_argmax
    # Degenerate maps fall back to the argmax instead of producing NaNs.
    flat = CODEC.decode(np.zeros((64, 48, 2), np.float32))
    assert np.isfinite(flat).all() and (flat[:, 2] == 0).all()


def test_encode_multi_and_metadata():
    kps = np.array([[[10.0, 10.0, 2], [50.0, 60.0, 2]], [[100.0, 200.0, 2], [0, 0, 0]]])
    hm, wt = CODEC.encode_multi(kps)
    assert hm.shape == (64, 48, 2) and wt.tolist() == [1, 1]
    single = [CODEC.encode(p)[0] for p in kps]
    np.testing.assert_array_equal(hm, np.maximum(*single))
    assert CODEC.encode_multi(np.zeros((0, 2, 3)))[0].shape == (64, 48, 2)
    d = json.loads(json.dumps(CODEC.to_dict()))
    assert HeatmapCodec.from_dict(d) == CODEC
    with pytest.raises(AttributeError):
        CODEC.sigma = 3.0


# ------------------------------------------------------------------ real COCO annotations

def _load_split(split):
    return json.loads((COCO / f"person_keypoints_{split}2017.json").read_text())


def _coco_ap(gt_json, dets):
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = CocoApi()
        gt.dataset = gt_json
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0]


@pytest.fixture(scope="module")
def coco_round_trip():
    """Crop every annotated person, encode, decode and map back to the image."""
    if not COCO.exists():
        pytest.skip("coco_mini not available")
    h, w = CODEC.input_size
    results = {}
    for split in ("train", "val"):
        data = _load_split(split)
        anns = [a for a in data["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
        kps = np.array([a["keypoints"] for a in anns], np.float64).reshape(-1, 17, 3)
        center, scale = box_to_center_scale(np.array([a["bbox"] for a in anns]), w / h)
        M = affine_matrix(center, scale, CODEC.input_size)
        crop_kps = apply_affine(kps, M)
        hm, weight = CODEC.batch_encode(crop_kps)
        labelled = kps[..., 2] > 0
        inside = weight > 0  # labelled and within the crop
        decoded = {}
        for refine in ("dark", "none"):
            dec = CODEC.batch_decode(hm, refine=refine)
            img = apply_affine(dec, invert_affine(M))
            decoded[refine] = (dec, img)
        results[split] = dict(data=data, anns=anns, kps=kps, crop_kps=crop_kps, labelled=labelled,
                              inside=inside, decoded=decoded)
    return results


def test_coco_round_trip_error(coco_round_trip):
    errs = {}
    for refine in ("dark", "none"):
        e_in, e_img = [], []
        for r in coco_round_trip.values():
            dec, img = r["decoded"][refine]
            e_in.append(np.linalg.norm(dec[..., :2] - r["crop_kps"][..., :2], axis=-1)[r["inside"]])
            e_img.append(np.linalg.norm(img[..., :2] - r["kps"][..., :2], axis=-1)[r["inside"]])
        errs[refine] = np.concatenate(e_in).mean(), np.concatenate(e_img).mean()
    n = sum(r["inside"].sum() for r in coco_round_trip.values())
    assert n > 1000
    assert errs["dark"][0] <= 0.05 and errs["dark"][1] <= 0.05
    # Plain argmax is off by up to half a heatmap pixel per axis: about 1.5 input px at stride 4.
    assert 1.2 < errs["none"][0] < 1.8
    assert errs["none"][0] > 100 * errs["dark"][0]


def test_coco_round_trip_ap(coco_round_trip):
    """COCO keypoint AP of decoded targets against the ground truth.

    A labelled keypoint outside its person's crop has no target (weight 0), so
    the model could never predict it. COCOeval ignores per-keypoint scores, so
    giving such a keypoint score 0 would not exclude it from OKS; instead it is
    removed from the evaluated ground truth (v = 0, num_keypoints updated), and
    gets score 0 in the prediction. People left with no keypoint get no prediction
    (COCOeval ignores ground truth with num_keypoints == 0).
    """
    aps = {}
    for refine in ("dark", "none"):
        ap = []
        for r in coco_round_trip.values():
            gt = copy.deepcopy(r["data"])
            by_id = {a["id"]: a for a in gt["annotations"]}
            dets = []
            for i, ann in enumerate(r["anns"]):
                g = by_id[ann["id"]]
                gk = np.array(g["keypoints"], np.float64).reshape(17, 3)
                gk[~r["inside"][i]] = 0
                g["keypoints"] = gk.ravel().tolist()
                g["num_keypoints"] = int(r["inside"][i].sum())
                if g["num_keypoints"] == 0:
                    continue
                img = r["decoded"][refine][1][i].copy()
                img[:, 2] = np.where(r["inside"][i], img[:, 2], 0.0)
                dets.append({"image_id": ann["image_id"], "category_id": 1,
                             "keypoints": img.ravel().tolist(), "score": 1.0})
            ap.append(_coco_ap(gt, dets))
        aps[refine] = ap
    assert min(aps["dark"]) >= 0.999
    assert max(aps["none"]) < min(aps["dark"])


# ------------------------------------------------------------------ TF ports

tf = pytest.importorskip("kpose._tf").tf
from kpose.codecs.heatmap_tf import (decode_heatmaps_tf, encode_heatmaps_tf,  # noqa: E402
                                     encode_multi_heatmaps_tf)


def _tf_case(rng):
    kps = _random_keypoints(rng, 16, 17, CODEC.input_size)
    kps[:, :3, 0] = rng.uniform(-30, 0.3, (16, 3))  # some outside or on the border
    kps[:, 3, 2] = 0
    return kps


def test_tf_encode_equals_numpy():
    kps = _tf_case(np.random.default_rng(3))
    hm_np, wt_np = CODEC.batch_encode(kps)
    hm_tf, wt_tf = encode_heatmaps_tf(kps, CODEC.input_size, CODEC.heatmap_size, CODEC.sigma)
    assert np.abs(hm_tf.numpy() - hm_np).max() < 1e-5
    np.testing.assert_array_equal(wt_tf.numpy(), wt_np)
    # Inside Dataset.map (graph mode), one sample at a time.
    ds = tf.data.Dataset.from_tensor_slices(kps.astype(np.float32)).map(
        lambda k: encode_heatmaps_tf(k, CODEC.input_size, CODEC.heatmap_size, CODEC.sigma))
    for i, (hm, wt) in enumerate(ds.take(4)):
        assert np.abs(hm.numpy() - hm_np[i]).max() < 1e-5
    # Full resolution, and the multi-person max-combine.
    full = HeatmapCodec((224, 224), (224, 224), 6.0)
    k2 = _random_keypoints(np.random.default_rng(4), 2, 5, full.input_size)
    assert np.abs(encode_heatmaps_tf(k2, full.input_size, full.heatmap_size, 6.0)[0].numpy()
                  - full.encode(k2)[0]).max() < 1e-5
    assert np.abs(encode_multi_heatmaps_tf(k2, full.input_size, full.heatmap_size, 6.0)[0].numpy()
                  - full.encode_multi(k2)[0]).max() < 1e-5


def test_tf_decode_equals_numpy():
    rng = np.random.default_rng(5)
    kps = _tf_case(rng)
    hm = CODEC.batch_encode(kps)[0]
    hm = hm + rng.normal(0, 0.01, hm.shape).astype(np.float32)  # not only exact targets
    decode = tf.function(lambda x: decode_heatmaps_tf(x, CODEC.input_size, CODEC.sigma),
                         input_signature=[tf.TensorSpec([None, 64, 48, None], tf.float32)])
    for refine in ("dark", "none"):
        ref = CODEC.batch_decode(hm, refine=refine)
        got = (decode(hm) if refine == "dark" else
               decode_heatmaps_tf(hm, CODEC.input_size, CODEC.sigma, refine=False)).numpy()
        assert np.abs(got[..., :2] - ref[..., :2]).max() < 1e-3
        np.testing.assert_allclose(got[..., 2], ref[..., 2], atol=1e-6)
    # Extra leading dims and a single unbatched map.
    got = decode_heatmaps_tf(hm.reshape(4, 4, 64, 48, 17), CODEC.input_size, CODEC.sigma).numpy()
    assert got.shape == (4, 4, 17, 3)
    assert np.abs(got.reshape(16, 17, 3) - CODEC.batch_decode(hm)).max() < 1e-3
    assert decode_heatmaps_tf(hm[0], CODEC.input_size, CODEC.sigma).shape == (17, 3)
