import json

import numpy as np

from kpose.metrics import coco_keypoint_ap, pck, pckh
from kpose.skeletons import COCO17


def test_pckh_counts_labelled_joints_only():
    gt = np.zeros((2, 3, 3))
    gt[..., 2] = 1
    gt[1, 2, 2] = 0  # unlabelled: not counted
    pred = gt.copy()
    pred[0, 0, 0] += 4.0   # 0.4 head sizes off: correct at 0.5, wrong at 0.1
    pred[1, 1, 0] += 6.0   # 0.6 off: wrong at both
    pred[1, 2, 0] += 100   # unlabelled, ignored
    m = pckh(pred, gt, np.array([10.0, 10.0]))
    assert m["PCKh@0.5"] == 4 / 5 and m["PCKh@0.1"] == 3 / 5


def test_coco_ap_of_ground_truth_is_one_and_of_noise_is_low(tmp_path):
    rng = np.random.default_rng(0)
    images, anns, perfect, noisy = [], [], [], []
    for i in range(6):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 400, "height": 400})
        kp = np.concatenate([rng.uniform(50, 350, (17, 2)), np.full((17, 1), 2)], 1)
        anns.append({"id": i + 1, "image_id": i, "category_id": 1, "iscrowd": 0, "area": 20000.0,
                     "bbox": [40, 40, 320, 320], "num_keypoints": 17,
                     "keypoints": kp.reshape(-1).tolist()})
        perfect.append({"image_id": i, "category_id": 1, "score": 1.0,
                        "keypoints": kp.reshape(-1).tolist()})
        kp2 = kp.copy()
        kp2[:, :2] += rng.normal(0, 40, (17, 2))
        noisy.append({"image_id": i, "category_id": 1, "score": 1.0,
                      "keypoints": kp2.reshape(-1).tolist()})
    ann = tmp_path / "gt.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "person", "keypoints": list(COCO17.keypoints), "skeleton": []}]}))
    result = coco_keypoint_ap(ann, perfect, COCO17.sigmas_array())
    assert result["AP"] > 0.999 and result["APl"] > 0.999
    # Every person is large: COCOeval has no medium one to score (its -1), so APm and ARm
    # are missing, not 0.
    assert "APm" not in result and "ARm" not in result
    assert coco_keypoint_ap(ann, noisy, COCO17.sigmas_array())["AP"] < 0.3


def test_pck_is_relative_to_the_box_and_counts_labelled_keypoints_only():
    gt = np.array([[[10, 10, 2], [50, 50, 2], [0, 0, 0]],
                   [[100, 100, 1], [130, 100, 2], [5, 5, 2]]], np.float64)
    boxes = np.array([[0, 0, 100, 40], [90, 90, 50, 200]], np.float64)  # longer sides 100 and 200
    pred = gt.copy()
    pred[0, 0, 0] += 4.0    # 0.04 of 100: within 0.05
    pred[0, 1, 1] += 8.0    # 0.08 of 100: within 0.1, not 0.05
    pred[0, 2, :2] = 999.0  # unlabelled: not counted
    pred[1, 1, 0] += 30.0   # 0.15 of 200: within 0.2 only
    pred[1, 2, 0] += 50.0   # 0.25 of 200: never
    got = pck(pred, gt, boxes)
    assert got == {"PCK@0.05": 2 / 5, "PCK@0.1": 3 / 5, "PCK@0.2": 4 / 5}
    assert pck(pred, gt, boxes * [1, 1, 0, 0])["PCK@0.2"] == 0.0  # boxes without size: nothing valid
