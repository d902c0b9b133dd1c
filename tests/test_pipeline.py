"""The tf.data pipeline must compute exactly what the NumPy reference path computes."""
import numpy as np
import pytest

from kpose.codecs.heatmap import HeatmapCodec
from kpose.data.coco import read_coco
from kpose.data.images import load_image
from kpose.data.pipeline import eval_dataset
from kpose.training.targets import TargetSpec
from kpose.training.targets import training_batches as train_dataset
from kpose.data.synthetic import generate
from kpose.transforms import affine_matrix, apply_affine, box_to_center_scale, flip_keypoints, warp_image

SIZE = (64, 48)
NO_AUG = {"flip": 0.0, "rotation": 0.0, "rotation_prob": 0.0, "scale": [1.0, 1.0], "shift": 0.0,
          "color": 0.0, "box_padding": 1.25}


@pytest.fixture(scope="module")
def person(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    ann = generate(root, 3, seed=5, split="train", progress=False)
    inst = read_coco(ann, root / "train", cache_dir=root / "cache", progress=False)
    # The instance with most visible keypoints makes a strong test.
    best = int(np.argmax((inst.keypoints[..., 2] == 2).sum(-1)))
    return inst.select(np.array([best]))


def _reference(person, flip: bool):
    center, scale = box_to_center_scale(person.bboxes[0].astype(np.float64), SIZE[1] / SIZE[0], 1.25)
    m = affine_matrix(center, scale, SIZE, 0.0, flip)
    crop = warp_image(load_image(person.image_paths[0], apply_exif=False).astype(np.float32), m, SIZE)
    kps = apply_affine(person.keypoints[0].astype(np.float64), m)
    if flip:  # affine_matrix mirrored the points; the channels still need swapping
        kps = kps[person.skeleton.flip_index()]
    return crop, kps


@pytest.mark.parametrize("flip", [False, True])
def test_training_sample_equals_numpy_reference(person, flip):
    specs = [TargetSpec("coarse", "heatmaps", (16, 12), 1.0), TargetSpec("fine", "heatmaps", SIZE, 2.0)]
    aug = dict(NO_AUG, flip=1.0 if flip else 0.0)
    img, targets, weights = next(iter(train_dataset(person, SIZE, specs, aug, batch_size=1)))
    crop, kps = _reference(person, flip)
    assert np.abs(img[0].numpy() - crop).max() < 0.05
    for spec in specs:
        want, want_w = HeatmapCodec(SIZE, spec.size, spec.sigma).encode(kps)
        assert np.abs(targets[spec.name][0].numpy() - want).max() < 1e-4
        np.testing.assert_array_equal(weights[spec.name][0].numpy(), want_w)


def test_same_seed_same_batches_other_seed_other_batches(tmp_path):
    """Augmentation is keyed by (seed, position): a run does not depend on thread timing."""
    ann = generate(tmp_path, 4, seed=7, split="train", progress=False)
    inst = read_coco(ann, tmp_path / "train", cache_dir=tmp_path / "cache", progress=False)
    spec = [TargetSpec("coarse", "heatmaps", (16, 12), 1.0)]
    aug = dict(NO_AUG, flip=0.5, rotation=30.0, rotation_prob=0.6, scale=[0.75, 1.25], shift=0.1, color=0.25)

    def batches(seed):
        it = iter(train_dataset(inst, SIZE, spec, aug, batch_size=4, seed=seed))
        return [next(it) for _ in range(3)]

    a, b, c = batches(3), batches(3), batches(4)
    for (xa, ta, _), (xb, tb, _) in zip(a, b):
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ta["coarse"].numpy(), tb["coarse"].numpy())
    assert np.abs(a[0][0].numpy() - c[0][0].numpy()).max() > 1.0
    # Samples differ within a batch and across epochs of the same people.
    x = np.concatenate([xa.numpy() for xa, _, _ in a])
    assert len({hash(v.tobytes()) for v in x}) == len(x)


def test_flip_swaps_left_and_right(person):
    """A flipped sample's left-wrist map is the mirror image of the unflipped right-wrist map."""
    sk = person.skeleton
    spec = [TargetSpec("fine", "heatmaps", SIZE, 2.0)]
    _, plain, _ = next(iter(train_dataset(person, SIZE, spec, NO_AUG, 1)))
    _, flipped, _ = next(iter(train_dataset(person, SIZE, spec, dict(NO_AUG, flip=1.0), 1)))
    lw, rw = sk.index("left_wrist"), sk.index("right_wrist")
    a, b = plain["fine"][0].numpy(), flipped["fine"][0].numpy()
    np.testing.assert_allclose(b[:, :, lw], a[:, ::-1, rw], atol=1e-4)
    # and flipping twice is the identity on keypoints
    _, kps = _reference(person, False)
    twice = flip_keypoints(flip_keypoints(kps, sk.flip_index(), SIZE[1]), sk.flip_index(), SIZE[1])
    np.testing.assert_allclose(twice, kps, atol=1e-9)


def test_eval_dataset_matrices_map_keypoints_into_crop(person):
    crops, mats, idx = next(iter(eval_dataset(person, SIZE, batch_size=4)))
    center, scale = box_to_center_scale(person.bboxes[0].astype(np.float64), SIZE[1] / SIZE[0], 1.25)
    np.testing.assert_allclose(mats[0].numpy(), affine_matrix(center, scale, SIZE), atol=1e-3)
    assert crops.shape == (1, *SIZE, 3) and int(idx[0]) == 0


def test_perfect_heatmaps_score_ap_one_through_the_eval_path(tmp_path):
    """Eval crops -> encoded ground truth -> PoseModel.decode_crops -> COCO AP = 1."""
    from kpose.metrics import coco_keypoint_ap, coco_results
    from kpose.pose_model import PoseModel, model_config

    ann = generate(tmp_path, 4, seed=9, split="val", progress=False)
    inst = read_coco(ann, tmp_path / "val", cache_dir=tmp_path / "cache", progress=False)
    size, hm = (96, 72), (24, 18)
    codec = HeatmapCodec(size, hm, 2.0)
    model = PoseModel(None, model_config("efficientpose", "rt", size, inst.skeleton, codec))
    pred = np.zeros_like(inst.keypoints)
    for crops, mats, idx in eval_dataset(inst, size, batch_size=8):
        idx, mats = idx.numpy(), mats.numpy()
        kps = np.stack([apply_affine(inst.keypoints[i].astype(np.float64), m) for i, m in zip(idx, mats)])
        maps = codec.batch_encode(kps)[0]
        pred[idx] = model.decode_crops(maps, mats)
    seen = inst.keypoints[..., 2] > 0
    inside = np.isfinite(pred[..., 0]) & (pred[..., 2] > 0.5)
    err = np.linalg.norm(pred[..., :2] - inst.keypoints[..., :2], axis=-1)[seen & inside]
    assert err.max() < 0.05
    ap = coco_keypoint_ap(inst.ann_file, coco_results(inst, pred), inst.skeleton.sigmas_array(),
                          image_ids=list(inst.image_ids))["AP"]
    assert ap > 0.97  # keypoints outside the padded crop cannot be recovered
