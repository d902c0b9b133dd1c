"""Crop geometry: NumPy reference properties and the TF ports against it."""
import numpy as np
import pytest

from kpose.skeletons import COCO17
from kpose.transforms import (affine_matrix, apply_affine, box_to_center_scale, flip_keypoints,
                              invert_affine, warp_image)

OUT = (256, 192)  # (H, W)


def _random_params(rng, n):
    center = rng.uniform(50, 400, (n, 2))
    scale = rng.uniform(40, 300, (n, 2))
    rotation = rng.uniform(-45, 45, n)
    flip = rng.random(n) < 0.5
    return center, scale, rotation, flip


def test_round_trip_forward_inverse():
    rng = np.random.default_rng(0)
    center, scale, rot, flip = _random_params(rng, 32)
    M = affine_matrix(center, scale, OUT, rot, flip)
    assert M.shape == (32, 2, 3)
    pts = rng.uniform(0, 500, (32, 17, 2))
    back = apply_affine(apply_affine(pts, M), invert_affine(M))
    np.testing.assert_allclose(back, pts, atol=1e-9)
    # Batched matrices agree with building them one by one.
    for i in range(3):
        np.testing.assert_allclose(M[i], affine_matrix(center[i], scale[i], OUT, rot[i], flip[i]))


def test_box_edges_map_to_crop_edges():
    h, w = OUT
    bbox = np.array([[10.0, 20.0, 96.0, 128.0], [3.0, 7.0, 50.0, 50.0], [0.0, 0.0, 90.0, 30.0]])
    center, scale = box_to_center_scale(bbox, aspect_ratio=w / h, padding=1.0)
    np.testing.assert_allclose(scale[:, 0] / scale[:, 1], w / h)
    assert np.all(scale >= bbox[:, 2:] - 1e-9)  # grown, never shrunk
    M = affine_matrix(center, scale, OUT)
    # First box already has the crop's aspect ratio: its pixel edges are the crop's.
    x, y, bw, bh = bbox[0]
    corners = np.array([[x - 0.5, y - 0.5], [x + bw - 0.5, y + bh - 0.5]])
    np.testing.assert_allclose(apply_affine(corners, M[0]), [[-0.5, -0.5], [w - 0.5, h - 0.5]], atol=1e-9)
    # Box centre -> crop centre; the other boxes touch the crop edges along their long side.
    np.testing.assert_allclose(apply_affine(center[:, None], M)[:, 0], [[(w - 1) / 2, (h - 1) / 2]] * 3)
    x, y, bw, bh = bbox[1]  # square box: fills the width
    np.testing.assert_allclose(apply_affine(np.array([[x - 0.5, y], [x + bw - 0.5, y]]), M[1])[:, 0],
                               [-0.5, w - 0.5], atol=1e-9)
    x, y, bw, bh = bbox[2]  # wide box: fills the width too
    np.testing.assert_allclose(apply_affine(np.array([[x - 0.5, y], [x + bw - 0.5, y]]), M[2])[:, 0],
                               [-0.5, w - 0.5], atol=1e-9)
    # Padding grows the crop about the same centre.
    c2, s2 = box_to_center_scale(bbox, w / h, padding=1.25)
    np.testing.assert_allclose(c2, center)
    np.testing.assert_allclose(s2, 1.25 * scale)


def test_rotation_is_counter_clockwise_on_screen():
    M = affine_matrix([100.0, 100.0], [64.0, 64.0], (64, 64), rotation=90.0)
    right_of_centre = apply_affine(np.array([[110.0, 100.0]]), M)[0]
    c = 31.5
    # Content to the right of the centre appears above it (smaller y) after a CCW turn.
    np.testing.assert_allclose(right_of_centre, [c, c - 10.0], atol=1e-9)


def test_flip_twice_is_identity_image_and_keypoints():
    rng = np.random.default_rng(1)
    h, w = 40, 30
    image = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
    # The pure flip of a crop onto itself.
    F = affine_matrix([(w - 1) / 2, (h - 1) / 2], [w, h], (h, w), flip=True)
    once = warp_image(image, F, (h, w))
    np.testing.assert_array_equal(once, image[:, ::-1])
    np.testing.assert_array_equal(warp_image(once, F, (h, w)), image)

    kps = np.concatenate([rng.uniform(0, 30, (17, 2)), rng.integers(0, 3, (17, 1))], -1)
    flip_index = COCO17.flip_index()
    np.testing.assert_allclose(flip_keypoints(flip_keypoints(kps, flip_index, w), flip_index, w), kps)
    # A flip inside affine_matrix equals flipping the unflipped crop's keypoints.
    center, scale = np.array([120.0, 90.0]), np.array([150.0, 200.0])
    M = affine_matrix(center, scale, OUT, rotation=20.0)
    Mf = affine_matrix(center, scale, OUT, rotation=20.0, flip=True)
    via_matrix = apply_affine(kps, Mf)[flip_index]
    np.testing.assert_allclose(via_matrix, flip_keypoints(apply_affine(kps, M), flip_index, OUT[1]), atol=1e-9)
    # Left and right actually swapped: channel 1 (left_eye) now holds right_eye's point.
    np.testing.assert_allclose(via_matrix[1, :2], apply_affine(kps[2:3, :2], Mf)[0], atol=1e-9)


def _gaussian_image(h, w, p, sigma):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * sigma ** 2))[..., None].astype(np.float32)


def test_dot_lands_at_apply_affine_numpy():
    # An integer dot with an integer-preserving crop lands exactly on its pixel.
    image = np.zeros((100, 120, 1), np.float32)
    image[37, 81] = 1.0
    M = affine_matrix([60.5, 50.5], [48.0, 64.0], (64, 48), flip=True)
    crop = warp_image(image, M, (64, 48))
    q = apply_affine(np.array([[81.0, 37.0]]), M)[0]
    assert np.allclose(q, np.round(q))
    assert np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2]) == (int(q[1]), int(q[0]))
    # A sub-pixel blob under rotation and scaling: its centroid follows apply_affine.
    p = np.array([71.3, 44.8])
    image = _gaussian_image(100, 120, p, 4.0)
    M = affine_matrix([65.0, 52.0], [60.0, 80.0], (96, 72), rotation=33.0)
    crop = warp_image(image, M, (96, 72))[..., 0]
    yy, xx = np.mgrid[0:96, 0:72]
    centroid = np.array([(crop * xx).sum(), (crop * yy).sum()]) / crop.sum()
    np.testing.assert_allclose(centroid, apply_affine(p[None], M)[0], atol=0.02)


# ----------------------------------------------------------------------------- TF ports

tf = pytest.importorskip("kpose._tf").tf
from kpose.transforms_tf import (affine_matrix_tf, apply_affine_tf, box_to_center_scale_tf,  # noqa: E402
                                 flip_keypoints_tf, invert_affine_tf, warp_image_tf)


def test_tf_matrix_equals_numpy():
    rng = np.random.default_rng(2)
    center, scale, rot, flip = _random_params(rng, 16)
    M_np = affine_matrix(center, scale, OUT, rot, flip)
    M_tf = affine_matrix_tf(center, scale, OUT, rot, flip).numpy()
    np.testing.assert_allclose(M_tf, M_np, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(invert_affine_tf(M_np).numpy(), invert_affine(M_np), rtol=1e-5, atol=1e-3)
    pts = rng.uniform(0, 400, (16, 17, 3))
    np.testing.assert_allclose(apply_affine_tf(pts, M_np).numpy(), apply_affine(pts, M_np), atol=2e-3)
    # Scalar (unbatched) arguments, as inside a per-sample Dataset.map.
    np.testing.assert_allclose(affine_matrix_tf(center[0], scale[0], OUT, rot[0], flip[0]).numpy(),
                               M_np[0], rtol=1e-5, atol=1e-4)
    # One crop, several rotations: arguments broadcast.
    np.testing.assert_allclose(affine_matrix_tf(center[0], scale[0], OUT, rot[:5]).numpy(),
                               affine_matrix(center[0], scale[0], OUT, rot[:5]), rtol=1e-5, atol=1e-4)
    bbox = np.array([[10.0, 20.0, 50.0, 100.0], [5.0, 5.0, 80.0, 10.0]])
    for a, b in zip(box_to_center_scale_tf(bbox, 0.75), box_to_center_scale(bbox, 0.75)):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-6)
    kps = rng.uniform(0, 40, (17, 3))
    np.testing.assert_allclose(flip_keypoints_tf(kps, COCO17.flip_index(), 48).numpy(),
                               flip_keypoints(kps, COCO17.flip_index(), 48), atol=1e-5)


def test_tf_matrix_in_graph_mode_with_random_augmentation():
    @tf.function
    def make(center, scale):
        rot = tf.random.uniform([], -30.0, 30.0, seed=1)
        flip = tf.random.uniform([], seed=2) < 0.5
        return affine_matrix_tf(center, scale, OUT, rot, flip), rot, flip

    M, rot, flip = make(tf.constant([100.0, 80.0]), tf.constant([90.0, 120.0]))
    expected = affine_matrix([100.0, 80.0], [90.0, 120.0], OUT, float(rot), bool(flip))
    np.testing.assert_allclose(M.numpy(), expected, rtol=1e-5, atol=1e-4)


def test_tf_warp_equals_numpy_warp():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 1, (90, 110, 3)).astype(np.float32)
    center, scale, rot, flip = _random_params(rng, 4)
    center = rng.uniform(20, 90, (4, 2))
    out = (64, 48)
    for i in range(4):
        M = affine_matrix(center[i], scale[i], out, rot[i], flip[i])
        ref = warp_image(image, M, out)
        got = warp_image_tf(image, M, out).numpy()
        # Same sampling rule; differences are float32 rounding of the sample positions.
        assert np.abs(got - ref).max() < 1e-3
        ref_n = warp_image(image, M, out, interpolation="nearest")
        got_n = warp_image_tf(image, M, out, interpolation="nearest").numpy()
        assert np.mean(got_n != ref_n) < 0.01  # ties at exact half-pixels may round apart
    # uint8 batch with per-sample matrices.
    images = rng.integers(0, 256, (2, 90, 110, 3)).astype(np.uint8)
    Ms = affine_matrix(center[:2], scale[:2], out, rot[:2], flip[:2])
    got = warp_image_tf(images, Ms, out).numpy()
    assert got.dtype == np.uint8
    for i in range(2):
        assert np.abs(got[i].astype(int) - warp_image(images[i], Ms[i], out).astype(int)).max() <= 1


def test_tf_dot_lands_at_apply_affine():
    p = np.array([71.3, 44.8])
    image = _gaussian_image(100, 120, p, 4.0)
    M = affine_matrix([65.0, 52.0], [60.0, 80.0], (96, 72), rotation=-25.0, flip=True)
    crop = warp_image_tf(image, M, (96, 72)).numpy()[..., 0]
    yy, xx = np.mgrid[0:96, 0:72]
    centroid = np.array([(crop * xx).sum(), (crop * yy).sum()]) / crop.sum()
    np.testing.assert_allclose(centroid, apply_affine(p[None], M)[0], atol=0.02)
    image = np.zeros((100, 120, 1), np.float32)
    image[37, 81] = 1.0
    M = affine_matrix([60.5, 50.5], [48.0, 64.0], (64, 48))
    crop = warp_image_tf(image, M, (64, 48)).numpy()
    q = apply_affine(np.array([[81.0, 37.0]]), M)[0]
    assert np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2]) == (int(q[1]), int(q[0]))
    assert crop.max() == 1.0


def test_tf_crop_inside_dataset_map():
    """Box -> random augmentation matrix -> warp, per sample in graph mode."""
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 1, (120, 100, 3)).astype(np.float32)
    boxes = np.array([[10.0, 15.0, 40.0, 70.0], [30.0, 20.0, 50.0, 60.0]], np.float32)
    out = (64, 48)

    def crop(box):
        center, scale = box_to_center_scale_tf(box, out[1] / out[0])
        scale = scale * tf.random.uniform([], 0.8, 1.2)
        M = affine_matrix_tf(center, scale, out, tf.random.uniform([], -40.0, 40.0),
                             tf.random.uniform([]) < 0.5)
        return warp_image_tf(image, M, out), M

    ds = tf.data.Dataset.from_tensor_slices(boxes).map(crop)
    for patch, M in ds:
        assert patch.shape == (64, 48, 3)
        assert np.abs(patch.numpy() - warp_image(image, M.numpy(), out)).max() < 1e-3


def test_antialiased_resize_is_tf_antialiased_bilinear():
    from kpose._tf import tf
    from kpose.transforms import antialiased_resize

    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (97, 131, 3)).astype(np.float32)
    for size in [(40, 50), (97, 131), (200, 150), (13, 77)]:
        ours = antialiased_resize(img, size)
        ref = tf.image.resize(img, size, "bilinear", antialias=True).numpy()
        np.testing.assert_allclose(ours, ref, atol=3e-3)
    flat = np.full((64, 64), 77, np.uint8)
    assert (antialiased_resize(flat, (10, 13)) == 77).all()  # weights sum to 1, dtype kept


def test_antialias_prefilter_keeps_the_geometry_and_removes_aliasing():
    from kpose.transforms import antialias_prefilter, fit_matrix

    # Stripes one pixel wide alias into a false pattern when sampled at a quarter of the
    # resolution; the prefiltered warp sees their mean grey.
    stripes = np.tile(np.array([0, 255], np.uint8), (256, 165))[..., None].repeat(3, -1)  # 256 x 330
    m = fit_matrix(stripes.shape[:2], (64, 80))
    plain = warp_image(stripes, m, (64, 80)).astype(np.float64)
    small, m2 = antialias_prefilter(stripes, m)
    assert small.shape[:2] == (62, 80)
    smooth = warp_image(small, m2, (64, 80)).astype(np.float64)
    assert plain[8:-8, 8:-8].std() > 60 and smooth[8:-8, 8:-8].std() < 3
    assert abs(smooth[8:-8, 8:-8].mean() - 127.5) < 2
    # The composed matrix maps image points where the original does (pixel-centre frame).
    pts = np.array([[10.0, 20.0], [300.5, 200.25]])
    small_pts = (pts + 0.5) * np.array([80 / 330, 62 / 256]) - 0.5
    np.testing.assert_allclose(apply_affine(small_pts, m2), apply_affine(pts, m), atol=1e-9)
    # A warp that does not shrink is left alone.
    img, same = antialias_prefilter(stripes, fit_matrix(stripes.shape[:2], (512, 640)))
    assert img is stripes and np.array_equal(same, fit_matrix(stripes.shape[:2], (512, 640)))


def test_unrotated_warps_take_the_separable_path_with_identical_output():
    """Fits and unrotated crops (flipped or not, partly outside the image) sample one axis at a
    time: bit-identical to the general per-pixel path."""
    from kpose.transforms import _cast_like, _sample_bilinear, fit_matrix

    def general(image, M, size, fill=0.0):
        inv = invert_affine(M)
        yy, xx = np.mgrid[0:size[0], 0:size[1]]
        src = apply_affine(np.stack([xx.ravel(), yy.ravel()], -1), inv)
        image = image if image.ndim == 3 else image[..., None]
        vals = _sample_bilinear(image, src[:, 0], src[:, 1], fill)
        return _cast_like(vals.reshape(*size, image.shape[-1]), image, False)

    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    center, scale = box_to_center_scale(np.array([[-30.0, 40.0, 90.0, 120.0]]), 0.75, 1.25)
    for M, size in [(fit_matrix((120, 160), (92, 108)), (92, 108)), (fit_matrix((120, 160), (250, 230)), (250, 230)),
                    (affine_matrix(center[0], scale[0], (64, 48)), (64, 48)),
                    (affine_matrix(center[0], scale[0], (64, 48), flip=True), (64, 48))]:
        assert np.array_equal(warp_image(img, M, size), general(img, M, size))
        assert np.array_equal(warp_image(img.astype(np.float32), M, size, fill=9.0),
                              general(img.astype(np.float32), M, size, fill=9.0))
        assert np.array_equal(warp_image(img[..., 0], M, size), general(img[..., :1], M, size)[..., 0])
